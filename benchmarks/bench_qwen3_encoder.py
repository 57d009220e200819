"""Z-Image's prompt encoding, whole process: nodegraph's Qwen3 encoder and tokenizer vs transformers' Qwen3Model and
Qwen2Tokenizer driven through the steps of diffusers' `ZImagePipeline._encode_prompt` (diffusers not imported).

    flock /tmp/nodegraph-heavy.lock .venv/bin/python benchmarks/bench_qwen3_encoder.py [--layers 4] [--repeats 3]

Each run is a fresh Python process that imports its code, loads the encoder (bf16) and tokenizer, and encodes one
prompt padded to 512 tokens; it reports its phases (import torch, import the encoder code, load, encode). Runs
alternate between the libraries (median of `--repeats`). `nodegraph-trim` is `encode_prompts(trim_padding=True)`
(the encoder runs on the prompt's tokens only; equal to the last bits). Checkpoint: Qwen3-4B's widths (hidden 2560,
32 heads of 128, 8 key/value heads, vocabulary 151936) with `--layers` decoder layers of random bf16 weights,
cached outside the repo, and the tiny test tokenizer (its ids are a subset of the real vocabulary).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a red fox in fresh snow, morning light, photograph"
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
folder, lib, out = sys.argv[1], sys.argv[2], sys.argv[3]
prompt = {prompt!r}
if lib == "transformers":  # the steps of diffusers' ZImagePipeline._encode_prompt, without importing diffusers
    from transformers import AutoTokenizer, Qwen3Model
    t2 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder + "/tokenizer")
    te = Qwen3Model.from_pretrained(folder + "/text_encoder", dtype=torch.bfloat16).eval()
    t3 = time.perf_counter()
    text = tok.apply_chat_template([{{"role": "user", "content": prompt}}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=True)
    ids = tok([text], padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    mask = ids.attention_mask.bool()
    with torch.no_grad():
        states = te(input_ids=ids.input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
    hidden = states[0][mask[0]]
else:
    from nodegraph.models.loading import load_component
    from nodegraph.models.qwen3_text import encode_prompts
    t2 = time.perf_counter()
    tok, te = load_component(folder, "tokenizer"), load_component(folder, "text_encoder", dtype=torch.bfloat16)
    t3 = time.perf_counter()
    (hidden,) = encode_prompts(te, tok, [prompt], 512, trim_padding=lib == "nodegraph-trim")
t4 = time.perf_counter()
torch.save(hidden, out)
print(json.dumps(dict(torch=t1 - t0, code=t2 - t1, load=t3 - t2, encode=t4 - t3, total=t4 - t0)))
"""


def build(folder: Path, layers: int) -> None:
    """Qwen3-4B widths with `layers` random bf16 layers, and the tiny test tokenizer, unless already there."""
    if (folder / "text_encoder" / "model.safetensors").exists():
        return
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3Model

    sys.path.insert(0, str(REPO / "tests" / "flow"))
    from tiny_z_image import build_tokenizer

    build_tokenizer().save_pretrained(folder / "tokenizer")
    config = Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=layers,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True)
    config.architectures, config.torch_dtype = ["Qwen3Model"], "bfloat16"
    with torch.device("meta"):
        model = Qwen3Model(config)
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.ones(v.shape) if "norm" in k else torch.randn(v.shape, generator=g) * 0.02).bfloat16()
             for k, v in model.state_dict().items()}
    config.save_pretrained(folder / "text_encoder")
    save_file(state, folder / "text_encoder" / "model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nodegraph-bench-qwen3")
    args = parser.parse_args()
    folder = args.cache / f"layers-{args.layers}"
    build(folder, args.layers)
    libs = ["transformers", "nodegraph", "nodegraph-trim"]
    runs: dict[str, list[dict]] = {lib: [] for lib in libs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for lib in (libs if r % 2 == 0 else libs[::-1]):
                out = Path(tmp) / f"{lib}-{r}.pt"
                done = subprocess.run([sys.executable, "-c", CHILD.format(prompt=PROMPT), str(folder), lib, str(out)],
                                      capture_output=True, text=True, check=True, cwd=REPO)
                runs[lib].append(json.loads(done.stdout.strip().splitlines()[-1]))
        import torch

        hidden = {lib: torch.load(Path(tmp) / f"{lib}-0.pt") for lib in libs}
    base = statistics.median(run["total"] for run in runs["transformers"])
    print(f"Qwen3-4B widths, {args.layers} layers, bf16, one prompt padded to 512, median of {args.repeats}:")
    for lib in libs:
        med = {k: statistics.median(run[k] for run in runs[lib]) for k in runs[lib][0]}
        exact = torch.equal(hidden[lib], hidden["transformers"])
        diff = (hidden[lib].float() - hidden["transformers"].float()).abs().max().item()
        print(f"  {lib:15s} total {med['total']:6.2f} s ({med['total'] / base:.2f}x)  import torch {med['torch']:.2f}"
              f"  encoder code {med['code']:.2f}  load {med['load']:.2f}  encode {med['encode']:.2f}"
              f"  | vs transformers: {'bit-equal' if exact else f'max |diff| {diff:.3g}'}")


if __name__ == "__main__":
    main()
