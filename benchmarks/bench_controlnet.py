"""ControlNet time-to-image, whole process: `nodegraph run graphs/controlnet.yaml` vs diffusers'
StableDiffusionControlNetPipeline.

    .venv/bin/python benchmarks/bench_controlnet.py [--only tiny|sd15] [--dtypes bf16] [--repeats 5] [--threads N]

Each run is a fresh Python process timed from start to PNG (import + load UNet, ControlNet, VAE, text encoder +
sample + decode + save), with its peak RSS; the two libraries alternate on the same checkpoints, control image,
prompt, seed, size, steps, scale 0.8 and range [0.1, 0.9). Checkpoints (random weights, cached outside the repo):
- sd15: bench_time_to_image.py's SD1.5-architecture pipeline, plus `ControlNetModel.from_unet` of its UNet
  with the zero convolutions perturbed (so the control changes the pixels);
- tiny: the tiny SD pipeline and tiny ControlNet of tests/graphs (fixed costs dominate).
Goal (issue 14): SD1.5 bf16 on CPU, time ratio ≤ 0.85, same pixels (max px Δ printed). The table gives medians
with each side's spread (min–max over the repeats) and the load averages before and after the runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
from bench_time_to_image import (GB, PROMPT, SEED, STEPS, alternate_runs, sd15_checkpoint,  # noqa: E402
                                 tiny_checkpoint, warm_page_cache)

SIZES = {"sd15": 256, "tiny": 64}
SCALE, START, END = 0.8, 0.1, 0.9


def controlnet_for(model: Path, cache: Path, name: str) -> Path:
    """A random ControlNet built from `model`'s UNet (once); its image embedding matches the VAE's factor."""
    folder = cache / f"{name}-controlnet"
    if not (folder / ".complete").exists():
        import torch
        from diffusers import ControlNetModel, UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
        embedding = (16, 32, 96, 256) if name == "sd15" else (8, 16)  # 8× for SD's VAE, 2× for the tiny one
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=embedding)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in controlnet.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=generator))
        controlnet.save_pretrained(folder)
        (folder / ".complete").touch()
    return folder


def control_image(cache: Path, size: int) -> Path:
    import numpy as np
    import PIL.Image

    path = cache / f"control-{size}.png"
    if not path.exists():
        edges = np.zeros((size, size), dtype=np.uint8)
        edges[size // 4:3 * size // 4, size // 4] = edges[size // 4, size // 4:3 * size // 4] = 255
        edges[::7, :] = 255
        PIL.Image.fromarray(np.stack([edges] * 3, axis=-1)).save(path)
    return path


def diffusers_worker(model: str, controlnet: str, image: str, dtype_name: str, out: str, threads: int) -> None:
    """The diffusers side, as a user would write it (runs as the timed child process)."""
    import PIL.Image
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        model, controlnet=ControlNetModel.from_pretrained(controlnet, torch_dtype=dtype), torch_dtype=dtype,
        safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    result = pipe(PROMPT, image=PIL.Image.open(image), num_inference_steps=STEPS, controlnet_conditioning_scale=SCALE,
                  control_guidance_start=START, control_guidance_end=END,
                  generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    result.save(out)


def command(lib: str, model: Path, controlnet: Path, image: Path, dtype: str, out: Path, threads: int) -> list[str]:
    if lib == "diffusers":
        return [sys.executable, __file__, "--diffusers-worker", str(model), str(controlnet), str(image), dtype,
                str(out / "image.png"), str(threads)]
    sets = dict(model=model, controlnet=controlnet, image=image, prompt=PROMPT, steps=STEPS, seed=SEED,
                controlnet_scale=SCALE, control_start=START, control_end=END)
    return [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "controlnet.yaml"),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], "--dtype", dtype, "--device", "cpu",
            "--out", str(out), "-q"]


def measure(name: str, model: Path, controlnet: Path, image: Path, dtype: str, threads: int, repeats: int) -> dict:
    seconds = {"nodegraph": [], "diffusers": []}

    def report(lib, r, s, rss):
        seconds[lib].append(s)
        print(f"  {name} {dtype} run {r + 1}/{repeats} {lib}: {s:.1f} s, {rss / GB:.2f} GB", flush=True)

    load_before = os.getloadavg()
    result = alternate_runs(lambda lib, out: command(lib, model, controlnet, image, dtype, out, threads),
                            repeats, threads, "ng-cn-", report)
    spread = {f"{lib}_spread": (min(s), max(s)) for lib, s in seconds.items()}
    return {"case": name, "dtype": dtype, **result, **spread, "load": (load_before, os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=["tiny", "sd15"], default=None)
    parser.add_argument("--dtypes", default="bf16", help="CPU dtypes, comma-separated (fp32, bf16)")
    args = parser.parse_args()
    rows = []
    for name in [n for n in ("tiny", "sd15") if args.only in (None, n)]:
        model = tiny_checkpoint(args.cache) if name == "tiny" else sd15_checkpoint(args.cache, args.threads)
        controlnet = controlnet_for(model, args.cache, name)
        image = control_image(args.cache, SIZES[name])
        warm_page_cache(model)
        warm_page_cache(controlnet)
        rows += [measure(name, model, controlnet, image, d, args.threads, args.repeats) for d in args.dtypes.split(",")]
    print(f"\nControlNet time-to-image, whole process ({STEPS} steps, scale {SCALE}, range [{START}, {END})), "
          f"nodegraph CLI vs diffusers; {args.threads} thread(s), median of {args.repeats}")
    head = (f"{'checkpoint':<11}{'dtype':<6}{'nodegraph s (min–max)':>24}{'diffusers s (min–max)':>24}{'ratio':>7}"
            f"{'ng GB':>7}{'df GB':>7}{'max px Δ':>10}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        ng, df = (f"{r[lib + '_s']:.2f} ({r[lib + '_spread'][0]:.1f}–{r[lib + '_spread'][1]:.1f})"
                  for lib in ("nodegraph", "diffusers"))
        print(f"{r['case']:<11}{r['dtype']:<6}{ng:>24}{df:>24}{r['nodegraph_s'] / r['diffusers_s']:>7.2f}"
              f"{r['nodegraph_rss'] / GB:>7.2f}{r['diffusers_rss'] / GB:>7.2f}{r['diff']:>10}")
        before, after = (" ".join(f"{x:.2f}" for x in load) for load in r["load"])
        print(f"{'':<17}load averages before: {before}; after: {after}")
    print("goal: sd15 bf16 time ratio ≤ 0.85; max px Δ in 0–255 units")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--diffusers-worker":
        model, controlnet, image, dtype, out, threads = sys.argv[2:8]
        diffusers_worker(model, controlnet, image, dtype, out, int(threads))
    else:
        main()
