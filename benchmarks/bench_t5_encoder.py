"""Flux/SD3's T5 encoding, whole process: nodegraph's T5 encoder (models/t5_text.py) vs transformers'
T5EncoderModel, each loading the same folder in bf16 and encoding one batch of token ids padded to the sequence
length, without an attention mask (as FluxPipeline and StableDiffusion3Pipeline call it).

    flock /tmp/nodegraph-heavy.lock .venv/bin/python benchmarks/bench_t5_encoder.py [--layers 4] [--length 256]

Each run is a fresh Python process that imports its code, loads the encoder (`load_component(folder,
"text_encoder_2")` for nodegraph, `T5EncoderModel.from_pretrained` for transformers) and encodes; it reports its
phases and peak RSS. Runs alternate between the libraries (median of `--repeats`); the hidden states are compared.
Checkpoint: T5-XXL v1.1's widths (d_model 4096, 64 heads of 64, d_ff 10240, gated-gelu, vocabulary 32128) with
`--layers` blocks of random bf16 weights, cached outside the repo. Tokenization is not measured (the same
`tokenizers` library does it for both).
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
CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
folder, lib, out, length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ids = torch.randint(1, 32000, (1, length), generator=torch.Generator().manual_seed(0))
ids[0, length // 4:] = 0  # a short prompt, then padding (pad id 0) as max_length padding leaves it
if lib == "transformers":
    from transformers import T5EncoderModel
    t2 = time.perf_counter()
    te = T5EncoderModel.from_pretrained(folder + "/text_encoder_2", dtype=torch.bfloat16).eval()
    t3 = time.perf_counter()
    with torch.no_grad():
        hidden = te(input_ids=ids).last_hidden_state
else:
    from nodegraph.models.loading import load_component
    t2 = time.perf_counter()
    te = load_component(folder, "text_encoder_2", dtype=torch.bfloat16)
    t3 = time.perf_counter()
    with torch.no_grad():
        hidden = te(ids)
t4 = time.perf_counter()
torch.save(hidden, out)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps(dict(torch=t1 - t0, code=t2 - t1, load=t3 - t2, encode=t4 - t3, total=t4 - t0, rss_gib=rss)))
"""


def build(folder: Path, layers: int) -> None:
    """T5-XXL v1.1 widths with `layers` random bf16 blocks in `text_encoder_2/`, unless already there."""
    if (folder / "text_encoder_2" / "model.safetensors").exists():
        return
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=layers, num_heads=64,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    config.architectures = ["T5EncoderModel"]
    with torch.device("meta"):
        model = T5EncoderModel(config)
    g = torch.Generator().manual_seed(0)
    state = {k: (1 + 0.1 * torch.randn(v.shape, generator=g) if "norm" in k else
                 torch.randn(v.shape, generator=g) * 0.05).bfloat16()
             for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}  # tied to `shared`
    config.save_pretrained(folder / "text_encoder_2")
    save_file(state, folder / "text_encoder_2" / "model.safetensors")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline",
                                                         "text_encoder_2": ["transformers", "T5EncoderModel"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--length", type=int, default=256, help="max_sequence_length (Flux dev 512, schnell 256)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nodegraph-bench-t5")
    args = parser.parse_args()
    folder = args.cache / f"layers-{args.layers}"
    build(folder, args.layers)
    libs = ["transformers", "nodegraph"]
    runs: dict[str, list[dict]] = {lib: [] for lib in libs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for lib in (libs if r % 2 == 0 else libs[::-1]):
                out = Path(tmp) / f"{lib}-{r}.pt"
                done = subprocess.run([sys.executable, "-c", CHILD, str(folder), lib, str(out), str(args.length)],
                                      capture_output=True, text=True, check=True, cwd=REPO)
                runs[lib].append(json.loads(done.stdout.strip().splitlines()[-1]))
        import torch

        hidden = {lib: torch.load(Path(tmp) / f"{lib}-0.pt") for lib in libs}
    base = {k: statistics.median(run[k] for run in runs["transformers"]) for k in ("total", "rss_gib")}
    print(f"T5-XXL v1.1 widths, {args.layers} blocks, bf16, 1 x {args.length} tokens, median of {args.repeats}:")
    for lib in libs:
        med = {k: statistics.median(run[k] for run in runs[lib]) for k in runs[lib][0]}
        exact = torch.equal(hidden[lib], hidden["transformers"])
        print(f"  {lib:12s} total {med['total']:6.2f} s ({med['total'] / base['total']:.2f}x)  import torch "
              f"{med['torch']:.2f}  encoder code {med['code']:.2f}  load {med['load']:.2f}  encode "
              f"{med['encode']:.2f}  peak RSS {med['rss_gib']:.2f} GiB ({med['rss_gib'] / base['rss_gib']:.2f}x)"
              f"  | vs transformers: {'bit-equal' if exact else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
