"""Many images from one graph: `.venv/bin/python benchmarks/bench_batch.py [--images 64] [--steps 10]`

Makes the same builtin:digits images (seeds 0..N-1) three ways, each timed from process start to exit:
1. `nodegraph batch` in one process (models loaded once);
2. `nodegraph batch --ray --workers 2` (a local Ray cluster started by the command, one torch thread per actor);
3. N separate `nodegraph run` processes, one after another (the baseline: imports and model loads per image).
It prints images/s for each, the ratios to the baseline, and the largest pixel difference from the one-process
batch's images. `--separate K` times only the first K separate runs (their images/s is what N would give).
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the one-process runs")
    parser.add_argument("--separate", type=int, default=None, help="separate runs to time (default: all)")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    n, separate = args.images, min(args.separate or args.images, args.images)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
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
