"""A LoRA on a UNet streamed from its file (the `--max-memory` path): time and peak RSS with and without it.

    .venv/bin/python benchmarks/bench_lora_streamed.py --prepare            # bf16 UNet file + LoRA file, once
    .venv/bin/python benchmarks/bench_lora_streamed.py --only PROCESS       # streamed | resident | held
    .venv/bin/python benchmarks/bench_lora_streamed.py --summarize          # ratios and pixel differences
    .venv/bin/python benchmarks/bench_lora_streamed.py                      # all of it, one process each

The model is the SD1.5-size random UNet of ~/.cache/nodegraph-bench/sd15-random (fp32) rewritten as a bf16 file
(how models ship), run in fp32 (the CPU's compute dtype), streamed from the file as `--max-memory` makes it
(`load_component(stream=True)`). The LoRA is bench_lora.py's random rank-`--rank` diffusers-format file over every
attention projection, feed-forward, proj_in/out, resnet conv/shortcut/time projection and down/upsampler.
`--calls` rounds of UNet calls (batch 2, `--latent`² latents, 77×768 text), in three fresh processes:
- `streamed`: one streamed UNet called in turns plain (`none`) and patched with the LoRA `fused` and `unfused`
  (`LoadLoRA` fuse true / false; fused at each call, models/adapters/streamed_lora.py): taken in turns, the
  machine's load moves the three alike, so their ratio is the LoRA's cost;
- `held`: streamed with the LoRA fused the way it was before this file (copies of every touched weight held, in
  the file's bf16): the memory that cost, and its pixels;
- `resident`: the whole UNet loaded in fp32 with the LoRA fused: the reference the streamed pixels must equal.
Each result line: seconds per call (median of the calls after the first), the peak RSS during the calls (VmHWM reset before each; the held
copies and the resident weights count, a streamed model's released pages do not), and the output saved beside the
files so `--summarize` compares every variant's output with `resident`'s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SOURCE = Path.home() / ".cache" / "nodegraph-bench" / "sd15-random" / "unet"
WORK = Path("/tmp/nodegraph-bench-lora-streamed")
VARIANTS = ("none", "fused", "unfused", "held", "resident")
PROCESSES = ("streamed", "resident", "held")


def prepare(rank: int) -> None:
    """The bf16 copy of the fp32 UNet file (one tensor at a time) and the LoRA file."""
    import shutil

    import torch
    from safetensors import safe_open

    from benchmarks.bench_lora import write_lora
    from benchmarks.random_safetensors import write_streamed
    from nodegraph.models.loading import load_component

    unet = WORK / "unet"
    unet.mkdir(parents=True, exist_ok=True)
    shutil.copy(SOURCE / "config.json", unet / "config.json")
    target = unet / "diffusion_pytorch_model.safetensors"
    if not target.exists():
        with safe_open(SOURCE / "diffusion_pytorch_model.safetensors", framework="pt") as f:
            layout = {k: ("BF16", tuple(f.get_slice(k).get_shape())) for k in f.keys()}
            write_streamed(target, layout, lambda name, kind, shape: f.get_tensor(name).to(torch.bfloat16))
    lora = WORK / f"lora-r{rank}.safetensors"
    if not lora.exists():
        model = load_component(unet, "unet", dtype=torch.float32, stream=True)  # shapes only are read
        print(f"LoRA over {write_lora(model, rank, lora)} layers: {lora}")


def peak_rss(reset: bool = False) -> int:
    """The process's high-water RSS (VmHWM); `reset` starts a new one (clear_refs 5) and returns 0."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
        return 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _models(variant: str, rank: int) -> dict:
    """{variant: model} for one process: `streamed` gives none/fused/unfused on one streamed UNet (timed in
    turns, so the machine's load moves them alike); `held` and `resident` one each."""
    import torch

    from nodegraph.models.adapters.lora import apply_lora, match_layers, read_lora
    from nodegraph.models.loading import load_component

    model = load_component(WORK / "unet", "unet", dtype=torch.float32, stream=variant != "resident")
    lora = read_lora(str(WORK / f"lora-r{rank}.safetensors"))
    if variant == "held":  # the fuse as it was: no streamed marks, so copies in the layers' bf16
        for layer in model.modules():
            for name in ("streamed_weight", "compute_dtype"):
                layer.__dict__.pop(name, None)
    patched = {fuse: apply_lora(model, match_layers(lora, "unet", model, "the UNet"), 1.0, fuse)
               for fuse in (True, False)}
    if variant == "streamed":
        return {"none": model, "fused": patched[True], "unfused": patched[False]}
    return {variant: patched[True]}


def run_variant(variant: str, rank: int, latent: int, calls: int, results: Path) -> None:
    import torch

    models = _models(variant, rank)
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 4, latent, latent, generator=g), torch.randn(2, 77, 768, generator=g)
    seconds, peaks = {name: [] for name in models}, {name: 0 for name in models}
    with torch.no_grad():
        for _ in range(calls):
            for name, model in models.items():
                peak_rss(reset=True)
                start = time.perf_counter()
                out = model(x, torch.tensor(500), text)
                seconds[name].append(time.perf_counter() - start)
                peaks[name] = max(peaks[name], peak_rss())
                torch.save(out, WORK / f"out-{name}.pt")
    for name in models:
        line = dict(variant=name, rank=rank, latent=latent, seconds=seconds[name],
                    median=_warm(seconds[name]), peak_rss=peaks[name], threads=torch.get_num_threads(),
                    at=time.strftime("%H:%M:%S"))
        with open(results, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line))


def _warm(seconds: list[float]) -> float:
    """The median of the calls after the first (which reads the file in from disk and warms oneDNN)."""
    return statistics.median(seconds[1:] or seconds)


def summarize(results: Path) -> None:
    import torch

    rows = {}
    for text in results.read_text().splitlines():
        row = json.loads(text)
        rows[row["variant"]] = row  # the latest of each
    reference = torch.load(WORK / "out-resident.pt") if (WORK / "out-resident.pt").exists() else None
    base = _warm(rows["none"]["seconds"]) if "none" in rows else None
    print(f"{'variant':10} {'s/call':>8} {'x none':>7} {'peak RSS':>9}  max |out - resident|")
    for name in VARIANTS:
        if name not in rows:
            print(f"{name:10} not measured")
            continue
        row, diff = rows[name], "-"
        if reference is not None and name not in ("none", "resident"):
            diff = f"{(torch.load(WORK / f'out-{name}.pt') - reference).abs().max().item():.3g}"
        ratio = f"{_warm(row['seconds']) / base:.2f}" if base else "-"
        print(f"{name:10} {_warm(row['seconds']):8.2f} {ratio:>7} {row['peak_rss'] / 2**30:7.2f} GB  {diff}  "
              f"(calls {', '.join(f'{s:.1f}' for s in row['seconds'])}; {row['at']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--only", choices=PROCESSES)
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--results", type=Path, default=WORK / "results.jsonl")
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.rank)
    if args.only:
        return run_variant(args.only, args.rank, args.latent, args.calls, args.results)
    if args.summarize:
        return summarize(args.results)
    prepare(args.rank)
    for variant in PROCESSES:
        subprocess.run([sys.executable, __file__, "--only", variant, "--rank", str(args.rank), "--latent",
                        str(args.latent), "--calls", str(args.calls), "--results", str(args.results)], check=True)
    summarize(args.results)


if __name__ == "__main__":
    main()
