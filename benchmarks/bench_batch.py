"""Many images from one graph: `.venv/bin/python benchmarks/bench_batch.py [--images 64] [--steps 10]`

Makes the same builtin:digits images (seeds 0..N-1) three ways, each timed from process start to exit:
1. `nodegraph batch` in one process (models loaded once);
2. `nodegraph batch --ray --workers 2` (a local Ray cluster started by the command, one torch thread per actor);
3. N separate `nodegraph run` processes, one after another (the baseline: imports and model loads per image).
It prints images/s for each, the ratios to the baseline, and the largest pixel difference from the one-process
batch's images. `--separate K` times only the first K separate runs (their images/s is what N would give).

    .venv/bin/python benchmarks/bench_batch.py --lora-grid [--images 16] [--steps 2] [--size 64] [--model digits|sd15]

A seed grid with a LoRA (issue 29): the same `run_batch` (one process each, fresh, alternated, models loaded once
either way) without the node-output cache (each item reads and fuses the LoRA and encodes the prompts again, as
batches did before nodegraph/runner) and with it (the default now: once per batch); images/s of both, the ratio,
and the largest pixel difference between their images (0: the cache changes no pixel). `--model sd15` uses the
SD1.5-size random pipeline of bench_time_to_image.py and a random rank-32 LoRA (built once, ~4 GB of RAM);
`digits` (default) builtin:digits and a random kohya LoRA over its UNet and text encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parents[1]
GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
NODEGRAPH = [sys.executable, "-m", "nodegraph.cli"]


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return seconds


def pixels(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as img:
        return np.asarray(img).astype(np.int16)


def lora_worker(mode: str, model: str, lora: str, images: int, steps: int, size: int, out: str) -> None:
    """One fresh process: `run_batch` over seeds 0..images-1 with the LoRA; prints the seconds it took."""
    import nodegraph.batch.local as local
    from nodegraph.batch import run_batch
    from nodegraph.runner import Runner, RunMode

    if mode == "before":  # a runner without the node cache: every item runs every node, as before the runner
        local.item_runner = lambda device, dtype, fast: Runner(RunMode(device, dtype, fast))
    sets = {"model": model, "lora": lora, "steps": steps, "height": size, "width": size,
            "prompt": "a photo of a cat", "negative_prompt": "blurry"}
    start = time.perf_counter()
    run_batch(GRAPH, {"seed": list(range(images))}, sets=sets, out=out)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def lora_grid(args, env: dict) -> None:
    cache = Path.home() / ".cache" / "nodegraph-bench"
    cache.mkdir(parents=True, exist_ok=True)
    if args.model == "sd15":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from bench_lora import pipeline_lora
        from bench_time_to_image import sd15_checkpoint

        model = sd15_checkpoint(cache, args.threads)
        lora = pipeline_lora(model, 32, cache)
    else:
        sys.path.insert(0, str(REPO))
        from tests.models.adapters.lora_files import lora_targets, write_kohya

        model = REPO / "nodegraph" / "builtin" / "digits"
        lora = cache / "digits-lora.safetensors"
        if not lora.exists():
            write_kohya(lora, lora_targets(model), seed=3)
        model = "builtin:digits"
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-batch-lora-") as tmp:
        for r in range(args.repeats):
            for mode in ("before", "after") if r % 2 == 0 else ("after", "before"):
                out = Path(tmp) / f"{mode}-{r}"
                result = subprocess.run([sys.executable, __file__, "--lora-worker", mode, str(model), str(lora),
                                         str(args.images), str(args.steps), str(args.size), str(out)],
                                        env=env, capture_output=True, text=True)
                if result.returncode != 0:
                    sys.exit(f"{mode} failed:\n{result.stderr[-2000:]}")
                seconds[mode].append(json.loads(result.stdout.strip().splitlines()[-1])["seconds"])
                print(f"  {mode} run {r}: {seconds[mode][-1]:.1f} s", flush=True)
        diff = max(int(np.abs(pixels(Path(tmp) / "before-0" / f"{k:05d}-image.png")
                              - pixels(Path(tmp) / "after-0" / f"{k:05d}-image.png")).max()) for k in range(args.images))
    rate = {mode: args.images / statistics.median(values) for mode, values in seconds.items()}
    print(f"{args.images}-item seed grid with a LoRA, {args.model}, {args.steps} steps, {args.size}px, "
          f"{args.threads} torch threads, median of {args.repeats} fresh processes each")
    for mode, label in (("before", "without the node cache (before)"), ("after", "with the node cache (now)")):
        print(f"  {label:34s} {statistics.median(seconds[mode]):7.1f} s  {rate[mode]:6.2f} images/s")
    print(f"  speedup {rate['after'] / rate['before']:.2f}x; max pixel difference between the two: {diff}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--lora-worker":
        mode, model, lora, images, steps, size, out = sys.argv[2:9]
        return lora_worker(mode, model, lora, int(images), int(steps), int(size), out)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="default: 64 (16 with --lora-grid)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the one-process runs")
    parser.add_argument("--separate", type=int, default=None, help="separate runs to time (default: all)")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--lora-grid", action="store_true", help="the LoRA seed grid: node cache off vs on")
    parser.add_argument("--model", choices=["digits", "sd15"], default="digits", help="--lora-grid's model")
    parser.add_argument("--size", type=int, default=64, help="--lora-grid's image size")
    parser.add_argument("--repeats", type=int, default=1, help="--lora-grid: fresh processes per mode")
    args = parser.parse_args()
    args.images = args.images or (16 if args.lora_grid else 64)
    n, separate = args.images, min(args.separate or args.images, args.images)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    if args.lora_grid:
        return lora_grid(args, env)
    sets = ["--set", "model=builtin:digits", "--set", f"steps={args.steps}", "--set", "prompt=a handwritten digit 7"]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        rows = []
        seconds = timed([*NODEGRAPH, "batch", str(GRAPH), *sets, "--grid", f"seed=0..{n - 1}", "--out",
                         str(tmp / "batch"), "-q"], env)
        rows.append(("nodegraph batch (1 process)", n, seconds, tmp / "batch"))
        if not args.skip_ray:
            ray_env = {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"}  # Ray gives each actor its CPUs
            seconds = timed([*NODEGRAPH, "batch", str(GRAPH), *sets, "--grid", f"seed=0..{n - 1}", "--out",
                             str(tmp / "ray"), "--ray", "--workers", "2", "-q"], ray_env)
            rows.append(("nodegraph batch --ray --workers 2", n, seconds, tmp / "ray"))
        start = time.perf_counter()
        for seed in range(separate):
            timed([*NODEGRAPH, "run", str(GRAPH), *sets, "--set", f"seed={seed}", "--out",
                   str(tmp / "run" / f"{seed:05d}"), "-q"], env)
        rows.append((f"{separate} x nodegraph run", separate, time.perf_counter() - start, tmp / "run"))

        reference = {k: pixels(tmp / "batch" / f"{k:05d}-image.png") for k in range(n)}
        baseline = rows[-1][1] / rows[-1][2]
        print(f"{n} builtin:digits images, {args.steps} steps, 32x32, {args.threads} torch threads per process")
        print(f"{'method':38s} {'images':>6s} {'seconds':>8s} {'images/s':>9s} {'vs run':>7s} {'max px diff':>11s}")
        for name, count, seconds, folder in rows:
            if folder.name == "run":
                files = {k: folder / f"{k:05d}" / "image.png" for k in range(count)}
            else:
                files = {k: folder / f"{k:05d}-image.png" for k in range(count)}
            diff = max(int(np.abs(pixels(p) - reference[k]).max()) for k, p in files.items())
            rate = count / seconds
            print(f"{name:38s} {count:6d} {seconds:8.1f} {rate:9.2f} {rate / baseline:6.1f}x {diff:11d}")


if __name__ == "__main__":
    main()
