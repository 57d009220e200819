"""Loading a full-size SD1.5 single file, and time-to-image from it: nodegraph against diffusers' from_single_file.

    .venv/bin/python benchmarks/bench_single_file.py [--cache ~/.cache/nodegraph-bench] [--repeats 3]
        [--threads N] [--size 512] [--steps 20] [--skip-image]

The benchmark writes, once, an SD1.5-architecture single file (random fp32 weights, original LDM layout, about
4.3 GB: UNet + VAE + CLIP-L) next to the diffusers folder bench_models.py writes, plus a local config folder for
diffusers (`from_single_file(file, config=folder, local_files_only=True)`, offline). Reported:
- load: every component (UNet, VAE, text encoder, tokenizer, scheduler) in fp32 on CPU, the load calls alone
  (imports done before, as bench_models.py does), each side in a fresh subprocess, median of --repeats, files in the page cache; then the time until every weight
  is paged in (both map the file lazily);
- peak RSS of that subprocess once every weight is paged in, above the RSS after imports, ÷ the weight bytes;
- time-to-image: the whole process, `nodegraph run graphs/stable_diffusion.yaml --set model=FILE` against a
  Python script that does `from_single_file` and the pipeline call, same size/steps/seed, PNG written by both.
Goals (issue 12): load ≤ 0.5× diffusers, peak RSS above imports ≤ 1.1× the weights, time-to-image ≤ 0.85×.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD_PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
GB = 1e9
DIFFUSERS_SCRIPT = """
import sys, torch, diffusers
file, config, size, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pipe = diffusers.StableDiffusionPipeline.from_single_file(file, config=config, local_files_only=True,
                                                          safety_checker=None)
pipe.set_progress_bar_config(disable=True)
image = pipe("a photograph of an astronaut riding a horse", num_inference_steps=steps, height=size, width=size,
             generator=torch.Generator("cpu").manual_seed(0)).images[0]
image.save(out)
"""


def make_single_file(root: Path) -> None:
    """The bench_models.py folder (written by diffusers/transformers), as one LDM-layout file + a config folder."""
    import shutil

    sys.path.insert(0, str(REPO / "tests" / "models" / "single_file"))
    from bench_models import make_checkpoint
    from ldm_layout import write_sd_file

    folder = root / "sd15-random"
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        make_checkpoint(folder)
    write_sd_file(folder, root / "sd15-random.safetensors")
    config = root / "sd15-config"  # what diffusers reads instead of the hub: configs, tokenizer, scheduler
    for part in ("unet", "vae", "text_encoder"):
        (config / part).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / part / "config.json", config / part / "config.json")
    shutil.copytree(REPO / "nodegraph" / "builtin" / "clip_tokenizer", config / "tokenizer", dirs_exist_ok=True)
    shutil.copytree(folder / "scheduler", config / "scheduler", dirs_exist_ok=True)
    shutil.copy(folder / "model_index.json", config / "model_index.json")
    (root / ".single-file-complete").touch()


def measure_load(lib: str, file: Path, config: Path, threads: int) -> dict:
    import gc
    import resource

    import psutil
    import torch

    torch.set_num_threads(threads)
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401  imports are not part of a load

    if lib == "nodegraph":
        from nodegraph.models.loading import load_component

        def load():
            return [load_component(file, name) for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")]
    else:
        import diffusers
        from diffusers import StableDiffusionPipeline  # noqa: F401  (lazy module: import it before timing)

        def load():
            pipe = diffusers.StableDiffusionPipeline.from_single_file(str(file), config=str(config),
                                                                      local_files_only=True, safety_checker=None)
            return [pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler]
    torch.ones(1 << 20).sum()
    gc.collect()
    base = psutil.Process().memory_info().rss
    start = time.perf_counter()
    parts = load()
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        for model in parts[:3]:
            for p in model.parameters():
                p.sum()
    ready = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights = sum(p.numel() * p.element_size() for m in parts[:3] for p in m.parameters())
    return {"seconds": seconds, "ready": ready, "base": base, "peak": peak, "weights": weights}


def env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=CHILD_PYTHONPATH, HF_HUB_OFFLINE="1",
                TRANSFORMERS_VERBOSITY="error", DIFFUSERS_VERBOSITY="error")


def run_worker(*args: str, threads: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], env=env(threads), capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"worker {args} failed:\n{done.stderr[-3000:]}")
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def time_process(command: list[str], threads: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env(threads), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-image", action="store_true")
    args = parser.parse_args()
    root = args.cache
    file, config = root / "sd15-random.safetensors", root / "sd15-config"
    if not (root / ".single-file-complete").exists():
        print(f"writing the SD1.5-architecture single file to {file} (once) …", flush=True)
        root.mkdir(parents=True, exist_ok=True)
        run_worker("make", str(root), threads=args.threads)
    with open(file, "rb") as f:  # the page cache holds the file for both sides alike
        while f.read(1 << 24):
            pass

    loads = {lib: [run_worker("load", lib, str(file), str(config), str(args.threads), threads=args.threads)
                   for _ in range(args.repeats)] for lib in ("nodegraph", "diffusers")}
    med = {lib: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for lib, rs in loads.items()}
    images = {}
    if not args.skip_image:
        out = root / "bench-out"
        common = ["--set", f"height={args.size}", "--set", f"width={args.size}", "--set", f"steps={args.steps}"]
        for _ in range(args.repeats):
            images.setdefault("nodegraph", []).append(time_process(
                [str(Path(sys.executable).parent / "nodegraph"), "run", str(REPO / "graphs" / "stable_diffusion.yaml"),
                 "--set", f"model={file}", *common, "-q", "--out", str(out / f"ng-{time.time_ns()}")], args.threads))
            images.setdefault("diffusers", []).append(time_process(
                [sys.executable, "-c", DIFFUSERS_SCRIPT, str(file), str(config), str(args.size), str(args.steps),
                 str(root / "bench-out-diffusers.png")], args.threads))

    import diffusers
    import torch

    print(f"\nnodegraph vs diffusers {diffusers.__version__} from_single_file (torch {torch.__version__}, "
          f"{args.threads} threads, {os.cpu_count()} CPUs): SD1.5 single file, random fp32 weights, "
          f"{file.stat().st_size / GB:.2f} GB; median of {args.repeats} fresh processes")
    ng, df = med["nodegraph"], med["diffusers"]
    print(f"\nload, s          nodegraph {ng['seconds']:.2f}   diffusers {df['seconds']:.2f}   "
          f"ratio {ng['seconds'] / df['seconds']:.2f}   (goal ≤ 0.5)")
    print(f"+ page in all    nodegraph {ng['ready']:.2f}   diffusers {df['ready']:.2f}   "
          f"ratio {ng['ready'] / df['ready']:.2f}")
    for lib, m in med.items():
        above = m["peak"] - m["base"]
        print(f"peak RSS {lib:<10} {m['peak'] / GB:.2f} GB, above imports {above / GB:.2f} GB = "
              f"{above / m['weights']:.2f}× the {m['weights'] / GB:.2f} GB of weights" +
              ("   (goal ≤ 1.1)" if lib == "nodegraph" else ""))
    if images:
        n, d = statistics.median(images["nodegraph"]), statistics.median(images["diffusers"])
        print(f"time-to-image ({args.size}², {args.steps} steps, whole process), s   nodegraph {n:.1f}   "
              f"diffusers {d:.1f}   ratio {n / d:.2f}   (goal ≤ 0.85)")


def worker(args: list[str]) -> None:
    if args[0] == "make":
        make_single_file(Path(args[1]))
        result = {}
    else:
        result = measure_load(args[1], Path(args[2]), Path(args[3]), int(args[4]))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(REPO))
        sys.path.insert(0, str(REPO / "benchmarks"))
        worker(sys.argv[2:])
    else:
        main()
