"""Time-to-image, whole process: `nodegraph run graphs/stable_diffusion.yaml` vs diffusers' StableDiffusionPipeline.

    .venv/bin/python benchmarks/bench_time_to_image.py [--threads 1] [--repeats 2] [--only tiny|sd15]

Each run is a fresh Python process, timed from its start until the PNG is written (import + load + sample +
decode + save), with its own peak RSS (the kernel's ru_maxrss of that child, from os.wait4). The two libraries
run alternately on the same checkpoint, prompt, seed, size and step count; the table gives medians and the
largest pixel difference between the two PNGs. Checkpoints (random weights, cached outside the repo):
- sd15: the full-size SD1.5-architecture pipeline folder of bench_models.py (tokenizer added here);
- tiny: the tiny SD pipeline of tests/graphs (where fixed costs dominate).
Cases: fp32 and bf16 on the CPU, fp16 on CUDA when a GPU is present. Goal (issue 7): ratio ≤ 0.85.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# children import nodegraph from this checkout, and whatever the caller's PYTHONPATH adds
CHILD_PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
PROMPT = "a photograph of an astronaut riding a horse"
STEPS, SEED = 4, 0
SIZES = {"sd15": 256, "tiny": 64}  # tiny: a VAE factor of 2, so 64 px are 32×32 latents as for sd15
GB = 1e9


def sd15_checkpoint(cache: Path, threads: int) -> Path:
    """bench_models.py's SD1.5-architecture folder, completed into a full pipeline folder (tokenizer)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_models import run_worker

    root = cache / "sd15-random"
    if not (root / ".complete").exists():
        print(f"writing the SD1.5-architecture checkpoint to {root} (once) …", flush=True)
        root.mkdir(parents=True, exist_ok=True)
        run_worker("make", str(root), threads=threads)
    if not (root / "tokenizer" / "vocab.json").exists():  # bench_models.py writes no tokenizer
        shutil.copytree(REPO / "nodegraph" / "builtin" / "clip_tokenizer", root / "tokenizer", dirs_exist_ok=True)
    return root


def tiny_checkpoint(cache: Path) -> Path:
    root = cache / "tiny-sd"
    if not (root / ".complete").exists():
        sys.path.insert(0, str(REPO))
        from tests.graphs.tiny_pipelines import save_tiny_sd

        root.mkdir(parents=True, exist_ok=True)
        save_tiny_sd(root)
        (root / ".complete").touch()
    return root


def diffusers_worker(model: str, dtype_name: str, device: str, size: int, out: str, threads: int) -> None:
    """The diffusers side, as a user would write it (runs as the timed child process)."""
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=STEPS, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def command(lib: str, model: Path, dtype: str, device: str, size: int, out: Path, threads: int) -> list[str]:
    if lib == "diffusers":
        return [sys.executable, __file__, "--diffusers-worker", str(model), dtype, device, str(size),
                str(out / "image.png"), str(threads)]
    sets = dict(model=model, prompt=PROMPT, steps=STEPS, height=size, width=size, seed=SEED)
    return [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "stable_diffusion.yaml"),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], "--dtype", dtype, "--device", device,
            "--out", str(out), "-q"]


def timed_run(argv: list[str], threads: int) -> tuple[float, int]:
    """Wall seconds from process start to exit, and the child's peak RSS in bytes."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=CHILD_PYTHONPATH, HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", DIFFUSERS_VERBOSITY="error")
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{stderr.decode()[-3000:]}")
    return seconds, usage.ru_maxrss * 1024  # kilobytes on Linux


def pixel_diff(a: Path, b: Path) -> int:
    import numpy as np
    from PIL import Image

    pa, pb = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (a, b))
    return int(np.abs(pa - pb).max())


def warm_page_cache(root: Path) -> None:
    for path in root.rglob("*.safetensors"):  # both sides then read from memory, not from disk
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def alternate_runs(command, repeats: int, threads: int, prefix: str, report=None) -> dict:
    """Run `command(lib, out_dir)` for lib in nodegraph/diffusers, `repeats` times, alternating who goes first.

    Returns the medians {"nodegraph_s", "nodegraph_rss", "diffusers_s", "diffusers_rss"} and "diff", the largest
    pixel difference between the first runs' image.png; `report(lib, r, seconds, rss)` is called after each run.
    """
    runs = {"nodegraph": [], "diffusers": []}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for r in range(repeats):
            for lib in sorted(runs, reverse=bool(r % 2)):
                seconds, rss = timed_run(command(lib, Path(tmp) / f"{lib}-{r}"), threads)
                runs[lib].append((seconds, rss))
                if report:
                    report(lib, r, seconds, rss)
        diff = pixel_diff(Path(tmp) / "nodegraph-0" / "image.png", Path(tmp) / "diffusers-0" / "image.png")
    medians = {f"{lib}_{key}": statistics.median(run[k] for run in rs)
               for lib, rs in runs.items() for k, key in ((0, "s"), (1, "rss"))}
    return {**medians, "diff": diff}


def measure(name: str, model: Path, dtype: str, device: str, threads: int, repeats: int) -> dict:
    result = alternate_runs(lambda lib, out: command(lib, model, dtype, device, SIZES[name], out, threads),
                            repeats, threads, "ng-tti-")
    row = {"case": name, "size": SIZES[name], "dtype": dtype, "device": device, **result}
    print(f"  measured {name} {dtype} {device}: nodegraph {row['nodegraph_s']:.1f} s, diffusers "
          f"{row['diffusers_s']:.1f} s", flush=True)
    return row


def print_table(rows: list[dict], threads: int, repeats: int) -> None:
    import diffusers
    import torch

    print(f"\ntime-to-image, whole process (import + load + {STEPS} steps + decode + PNG), "
          f"nodegraph CLI vs diffusers {diffusers.__version__}; torch {torch.__version__}, {threads} thread(s), "
          f"{os.cpu_count()} CPUs; median of {repeats}")
    head = (f"{'checkpoint':<11}{'size':<6}{'dtype':<6}{'device':<7}{'nodegraph s':>12}{'diffusers s':>12}{'ratio':>7}"
            f"{'ng RSS GB':>11}{'df RSS GB':>11}{'ratio':>7}{'max px Δ':>10}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['case']:<11}{r['size']:<6}{r['dtype']:<6}{r['device']:<7}{r['nodegraph_s']:>12.2f}"
              f"{r['diffusers_s']:>12.2f}"
              f"{r['nodegraph_s'] / r['diffusers_s']:>7.2f}{r['nodegraph_rss'] / GB:>11.2f}"
              f"{r['diffusers_rss'] / GB:>11.2f}{r['nodegraph_rss'] / r['diffusers_rss']:>7.2f}{r['diff']:>10}")
    print("goal: time ratio ≤ 0.85 at the same dtype; max px Δ in 0–255 units (random weights amplify bf16 noise)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=["tiny", "sd15"], default=None)
    parser.add_argument("--dtypes", default="fp32,bf16", help="CPU dtypes, comma-separated ('' for none: CUDA only)")
    args = parser.parse_args()
    import torch

    checkpoints = {}
    if args.only in (None, "tiny"):
        checkpoints["tiny"] = tiny_checkpoint(args.cache)
    if args.only in (None, "sd15"):
        checkpoints["sd15"] = sd15_checkpoint(args.cache, args.threads)
    cases = [(d, "cpu") for d in args.dtypes.split(",") if d] + ([("fp16", "cuda")] if torch.cuda.is_available() else [])
    rows = []
    for name, root in checkpoints.items():
        warm_page_cache(root)
        rows += [measure(name, root, dtype, device, args.threads, args.repeats) for dtype, device in cases]
    print_table(rows, args.threads, args.repeats)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--diffusers-worker":
        model, dtype, device, size, out, threads = sys.argv[2:8]
        diffusers_worker(model, dtype, device, int(size), out, int(threads))
    else:
        main()
