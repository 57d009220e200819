"""Time-to-image, whole process: `nodegraph run graphs/stable_diffusion.yaml` vs diffusers' StableDiffusionPipeline.

    .venv/bin/python benchmarks/bench_time_to_image.py [--threads 2] [--repeats 5] [--only tiny|sd15]
        [--dtypes fp32,bf16] [--cold] [--fast] [--step] [--size PX] [--steps N]

The GPU check of issue 20 (SD1.5 size, 512², 25 steps, fp16 on CUDA only), on a machine with a GPU:
    .venv/bin/python benchmarks/bench_time_to_image.py --only sd15 --dtypes "" --size 512 --steps 25

Each run is a fresh Python process, timed from its start until the PNG is written (import + load + sample +
decode + save), with its own peak RSS (the kernel's ru_maxrss of that child, from os.wait4). The two libraries
run alternately (who goes first alternates too) on the same checkpoint, prompt, seed, size and step count; the
table gives medians with their spread (min–max) and the largest pixel difference between the two PNGs.
Checkpoints (random weights, cached outside the repo):
- sd15: the full-size SD1.5-architecture pipeline folder of bench_models.py (tokenizer added here);
- tiny: the tiny SD pipeline of tests/graphs (where fixed costs dominate).
Cases: fp32 and bf16 on the CPU, fp16 on CUDA when a GPU is present. Goal (issue 20): ratio ≤ 0.75, max px Δ 0.
`--cold` drops the page cache before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`: root only; without
the permission it says so and measures nothing; NODEGRAPH_PREFETCH=0 in the environment measures nodegraph
without its read-ahead of the weights). `--fast` runs nodegraph with `--fast` (the pixel difference is
then fast mode's against diffusers' = the default image). `--step` instead times one UNet call (batch 2, 4×32×32,
77×768 text) of nodegraph's default and fast modes against diffusers' UNet, in one process, alternated, median
of --repeats (goal: fast ≤ 0.75× diffusers in bf16; default bit-equal). The load average is printed with each
table: quote it with the figures.
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


def diffusers_worker(model: str, dtype_name: str, device: str, size: int, out: str, threads: int,
                     steps: int = STEPS) -> None:
    """The diffusers side, as a user would write it (runs as the timed child process)."""
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=steps, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def command(lib: str, model: Path, dtype: str, device: str, size: int, out: Path, threads: int,
            fast: bool = False, steps: int = STEPS) -> list[str]:
    if lib == "diffusers":
        return [sys.executable, __file__, "--diffusers-worker", str(model), dtype, device, str(size),
                str(out / "image.png"), str(threads), str(steps)]
    sets = dict(model=model, prompt=PROMPT, steps=steps, height=size, width=size, seed=SEED)
    return [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "stable_diffusion.yaml"),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], "--dtype", dtype, "--device", device,
            "--out", str(out), "-q", *(["--fast"] if fast else [])]


def drop_page_cache() -> None:
    """Empty the kernel's page cache (root only), so the next run reads its weights from the disk."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def can_drop_page_cache() -> bool:
    try:
        drop_page_cache()
        return True
    except OSError as exc:
        print(f"--cold: cannot drop the page cache here ({exc}); cold runs need root (or a writable "
              f"/proc/sys/vm/drop_caches). Nothing measured cold.", flush=True)
        return False


def step_worker(model: str, dtype_name: str, threads: int, repeats: int) -> None:
    """One UNet call of nodegraph (default and fast) and diffusers on the same inputs, alternated; prints JSON."""
    import json

    import diffusers
    import torch

    from nodegraph.exec.heap import reuse_freed_heap
    from nodegraph.fast import prepare
    from nodegraph.models.loading import load_component

    reuse_freed_heap()  # as `nodegraph run` does (diffusers gets it too: the same process)
    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    unets = {"diffusers": diffusers.UNet2DConditionModel.from_pretrained(model, subfolder="unet",
                                                                        torch_dtype=dtype).eval(),
             "default": load_component(model, "unet", dtype=dtype),
             "fast": prepare(load_component(model, "unet", dtype=dtype))}
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=generator).to(dtype)
    text = torch.randn(2, 77, 768, generator=generator).to(dtype)
    t = torch.tensor(500)
    call = {"diffusers": lambda: unets["diffusers"](x, t, text).sample, "default": lambda: unets["default"](x, t, text),
            "fast": lambda: unets["fast"](x, t, text)}
    times = {name: [] for name in call}
    with torch.no_grad():  # as both pipelines run (the text's k/v are then computed once, as in a run)
        out = {name: f() for name, f in call.items()}  # warm-up: packing, first-touch of the weights
        names = list(call)
        for r in range(repeats):
            for name in names[r % 3:] + names[:r % 3]:  # rotate who goes first
                start = time.perf_counter()
                call[name]()
                times[name].append(time.perf_counter() - start)
    diff = {name: (out[name].float() - out["diffusers"].float()).abs().max().item() for name in ("default", "fast")}
    print(json.dumps({"times": times, "diff": diff}))


def measure_step(root: Path, dtype: str, threads: int, repeats: int) -> dict:
    import json

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=CHILD_PYTHONPATH, HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", DIFFUSERS_VERBOSITY="error")
    done = subprocess.run([sys.executable, __file__, "--step-worker", str(root), dtype, str(threads), str(repeats)],
                          env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the UNet step worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_step_table(rows: dict, threads: int, repeats: int) -> None:
    print(f"\nUNet call, SD1.5 size, batch 2, 4×32×32 latents, 77×768 text, {threads} thread(s), "
          f"median of {repeats} alternated (min–max); load average {load_average()}")
    head = f"{'dtype':<7}{'mode':<10}{'seconds':>9}{'min–max':>15}{'× diffusers':>13}{'max |Δ| vs diffusers':>22}"
    print(head + "\n" + "-" * len(head))
    for dtype, result in rows.items():
        base = statistics.median(result["times"]["diffusers"])
        for mode in ("diffusers", "default", "fast"):
            ts = result["times"][mode]
            diff = "" if mode == "diffusers" else f"{result['diff'][mode]:.3g}"
            print(f"{dtype:<7}{mode:<10}{statistics.median(ts):>9.3f}{f'{min(ts):.2f}–{max(ts):.2f}':>15}"
                  f"{statistics.median(ts) / base:>13.2f}{diff:>22}")
    print("goal (issue 20): fast ≤ 0.75× diffusers in bf16; default max |Δ| 0")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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


def alternate_runs(command, repeats: int, threads: int, prefix: str, report=None, before_each=None) -> dict:
    """Run `command(lib, out_dir)` for lib in nodegraph/diffusers, `repeats` times, alternating who goes first.

    Returns the medians {"nodegraph_s", "nodegraph_rss", "diffusers_s", "diffusers_rss"}, the spread of the times
    ("nodegraph_min", "nodegraph_max", "diffusers_min", "diffusers_max") and "diff", the largest pixel difference
    between the first runs' image.png; `report(lib, r, seconds, rss)` is called after each run and
    `before_each()` before each (e.g. dropping the page cache).
    """
    runs = {"nodegraph": [], "diffusers": []}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for r in range(repeats):
            for lib in sorted(runs, reverse=bool(r % 2)):
                if before_each:
                    before_each()
                seconds, rss = timed_run(command(lib, Path(tmp) / f"{lib}-{r}"), threads)
                runs[lib].append((seconds, rss))
                if report:
                    report(lib, r, seconds, rss)
        diff = pixel_diff(Path(tmp) / "nodegraph-0" / "image.png", Path(tmp) / "diffusers-0" / "image.png")
    medians = {f"{lib}_{key}": statistics.median(run[k] for run in rs)
               for lib, rs in runs.items() for k, key in ((0, "s"), (1, "rss"))}
    spread = {f"{lib}_{name}": pick(run[0] for run in rs) for lib, rs in runs.items()
              for name, pick in (("min", min), ("max", max))}
    return {**medians, **spread, "diff": diff}


def measure(name: str, model: Path, dtype: str, device: str, threads: int, repeats: int, cold: bool = False,
            fast: bool = False, size: int | None = None, steps: int = STEPS) -> dict:
    size = size or SIZES[name]
    result = alternate_runs(lambda lib, out: command(lib, model, dtype, device, size, out, threads, fast, steps),
                            repeats, threads, "ng-tti-", before_each=drop_page_cache if cold else None)
    row = {"case": name, "size": size, "dtype": dtype, "device": device, **result}
    print(f"  measured {name} {dtype} {device}: nodegraph {row['nodegraph_s']:.1f} s, diffusers "
          f"{row['diffusers_s']:.1f} s (load average {load_average()})", flush=True)
    return row


def print_table(rows: list[dict], threads: int, repeats: int, cold: bool = False, fast: bool = False,
                steps: int = STEPS) -> None:
    import diffusers
    import torch

    print(f"\ntime-to-image, whole process (import + load + {steps} steps + decode + PNG), "
          f"nodegraph CLI{' --fast' if fast else ''}"
          f"{' (read-ahead off: NODEGRAPH_PREFETCH=0)' if os.environ.get('NODEGRAPH_PREFETCH') == '0' else ''} "
          f"vs diffusers {diffusers.__version__}; torch {torch.__version__}, "
          f"{threads} thread(s), {os.cpu_count()} CPUs; median of {repeats} (min–max); "
          f"{'cold (page cache dropped before each run)' if cold else 'warm page cache'}; "
          f"load average {load_average()}")
    head = (f"{'checkpoint':<11}{'size':<6}{'dtype':<6}{'device':<7}{'nodegraph s':>12}{'min–max':>13}"
            f"{'diffusers s':>12}{'min–max':>13}{'ratio':>7}{'ng RSS GB':>11}{'df RSS GB':>11}{'ratio':>7}"
            f"{'max px Δ':>10}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['case']:<11}{r['size']:<6}{r['dtype']:<6}{r['device']:<7}{r['nodegraph_s']:>12.2f}"
              f"{spread(r, 'nodegraph'):>13}{r['diffusers_s']:>12.2f}{spread(r, 'diffusers'):>13}"
              f"{r['nodegraph_s'] / r['diffusers_s']:>7.2f}{r['nodegraph_rss'] / GB:>11.2f}"
              f"{r['diffusers_rss'] / GB:>11.2f}{r['nodegraph_rss'] / r['diffusers_rss']:>7.2f}{r['diff']:>10}")
    print("goal (issue 20): time ratio ≤ 0.75 at the same dtype, max px Δ 0 (0–255 units) on the default path")


def spread(row: dict, lib: str) -> str:
    return f"{row[lib + '_min']:.1f}–{row[lib + '_max']:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=["tiny", "sd15"], default=None)
    parser.add_argument("--dtypes", default="fp32,bf16", help="CPU dtypes, comma-separated ('' for none: CUDA only)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every run (root only)")
    parser.add_argument("--fast", action="store_true", help="run nodegraph with --fast")
    parser.add_argument("--size", type=int, default=None, help="image size in pixels (default: sd15 256, tiny 64; "
                                                               "issue 20's GPU check: 512)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"denoising steps (default {STEPS}; the GPU "
                                                                 f"check: 25)")
    parser.add_argument("--step", action="store_true", help="time one UNet call instead (sd15; default, fast and "
                                                            "diffusers in one process)")
    args = parser.parse_args()
    import torch

    if args.step:
        root = sd15_checkpoint(args.cache, args.threads)
        warm_page_cache(root)
        rows = {d: measure_step(root, d, args.threads, args.repeats) for d in args.dtypes.split(",") if d}
        print_step_table(rows, args.threads, args.repeats)
        return
    if args.cold and not can_drop_page_cache():
        return
    checkpoints = {}
    if args.only in (None, "tiny"):
        checkpoints["tiny"] = tiny_checkpoint(args.cache)
    if args.only in (None, "sd15"):
        checkpoints["sd15"] = sd15_checkpoint(args.cache, args.threads)
    cases = [(d, "cpu") for d in args.dtypes.split(",") if d]
    cases += [("fp16", "cuda")] if torch.cuda.is_available() else []
    rows = []
    for name, root in checkpoints.items():
        if not args.cold:
            warm_page_cache(root)
        rows += [measure(name, root, dtype, device, args.threads, args.repeats, args.cold, args.fast, args.size,
                         args.steps) for dtype, device in cases]
    print_table(rows, args.threads, args.repeats, args.cold, args.fast, args.steps)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--diffusers-worker":
        model, dtype, device, size, out, threads, steps = sys.argv[2:9]
        diffusers_worker(model, dtype, device, int(size), out, int(threads), int(steps))
    elif len(sys.argv) > 1 and sys.argv[1] == "--step-worker":
        model, dtype, threads, repeats = sys.argv[2:6]
        step_worker(model, dtype, int(threads), int(repeats))
    else:
        main()
