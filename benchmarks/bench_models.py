"""nodegraph's model loading and UNet step against diffusers', on a full-size SD1.5-architecture checkpoint.

    .venv/bin/python benchmarks/bench_models.py [--cache ~/.cache/nodegraph-bench] [--repeats 3] [--threads N]

The checkpoint (UNet + VAE + CLIP-L text encoder, random fp32 weights, safetensors, about 4.3 GB) is written
once into the cache folder by diffusers and transformers themselves. Reported, side by side:
- load time: the load call alone (imports excluded), each in a fresh subprocess, median of --repeats; the files
  are read once beforehand so that both libraries read from the page cache. Both libraries map fp32 CPU weights
  lazily, so the time until every weight is paged in (one pass over all parameters) is reported too;
- peak RSS of that subprocess (ru_maxrss) once every weight is paged in, and the part of it above the RSS after
  imports, against the bytes of the weights loaded;
- one UNet step, batch 2, 4×32×32 latents, 77×768 text, fp32 and bf16: both models in one process, run
  alternately, median of 7, with the largest difference between their outputs.
Goals (issue 3): load ≤ 0.5× diffusers, peak RSS ≤ 1.1× the weights, step time ≤ diffusers'.
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
# children import nodegraph from this checkout, and whatever the caller's PYTHONPATH adds
CHILD_PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
CONFIGS = REPO / "tests" / "models" / "data" / "reference" / "real-configs.json"  # SD1.4 = SD1.5 architecture
COMPONENTS = ("unet", "vae", "text_encoder")
GB = 1e9


def make_checkpoint(root: Path) -> None:
    """Random-weight SD1.5-architecture pipeline folder, saved by diffusers/transformers (runs in a subprocess)."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = json.loads(CONFIGS.read_text())
    clean = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(**clean(configs["SD14_UNET"])).save_pretrained(root / "unet")
    diffusers.AutoencoderKL(**clean(configs["SD14_VAE"])).save_pretrained(root / "vae")
    CLIPTextModel(CLIPTextConfig(**configs["SD14_TEXT_ENCODER"])).save_pretrained(root / "text_encoder")
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(configs["SD14_SCHEDULER"]))
    index = {k: v for k, v in configs["SD14_MODEL_INDEX"].items() if k not in ("safety_checker", "feature_extractor")}
    (root / "model_index.json").write_text(json.dumps(index))
    (root / ".complete").touch()


def measure_load(lib: str, root: Path, components: list[str], threads: int) -> dict:
    """Time and peak memory of loading `components` in fp32 on CPU (runs in a fresh subprocess)."""
    import gc
    import resource

    import psutil
    import torch
    from transformers import CLIPTextModel

    torch.set_num_threads(threads)
    if lib == "nodegraph":
        from nodegraph.models.loading import load_component

        def load(name):
            return load_component(root, name)
    else:
        import diffusers

        classes = {"unet": diffusers.UNet2DConditionModel, "vae": diffusers.AutoencoderKL,
                   "text_encoder": CLIPTextModel}

        def load(name):
            return classes[name].from_pretrained(root, subfolder=name)
    torch.ones(1 << 20).sum()  # start torch's thread pool now, not inside whichever load touches a tensor first
    gc.collect()
    base = psutil.Process().memory_info().rss
    start = time.perf_counter()
    models = [load(name) for name in components]
    seconds = time.perf_counter() - start
    peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    with torch.inference_mode():  # both libraries map the files lazily: page every weight in, as a first use would
        for model in models:
            for p in model.parameters():
                p.sum()
    ready = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "ready": ready, "base": base, "peak_load": peak_load, "peak": peak}


def measure_step(dtype_name: str, root: Path, threads: int, runs: int = 7) -> dict:
    """One UNet forward of nodegraph and diffusers on the same inputs, alternately (runs in a subprocess)."""
    import diffusers
    import torch

    from nodegraph.models.loading import load_component

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    theirs = diffusers.UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype)
    models = {"nodegraph": load_component(root, "unet", dtype=dtype), "diffusers": theirs.eval()}
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=generator).to(dtype)
    text = torch.randn(2, 77, 768, generator=generator).to(dtype)
    t = torch.tensor(500)
    calls = {"nodegraph": lambda: models["nodegraph"](x, t, text),
             "diffusers": lambda: models["diffusers"](x, t, text).sample}
    times = {name: [] for name in calls}
    with torch.inference_mode():
        outputs = {name: call() for name, call in calls.items()}  # warm-up
        for i in range(runs):
            for name in sorted(calls, reverse=bool(i % 2)):  # alternate who goes first
                start = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - start)
    diff = (outputs["nodegraph"].float() - outputs["diffusers"].float()).abs().max().item()
    scale = outputs["diffusers"].float().abs().max().item()
    return {name: statistics.median(values) for name, values in times.items()} | {"max_diff": diff, "scale": scale}


def worker(args: list[str]) -> None:
    kind, rest = args[0], args[1:]
    if kind == "make":
        make_checkpoint(Path(rest[0]))
        result = {}
    elif kind == "load":
        result = measure_load(rest[0], Path(rest[1]), rest[2].split(","), int(rest[3]))
    else:
        result = measure_step(rest[0], Path(rest[1]), int(rest[2]))
    print("RESULT " + json.dumps(result))


def run_worker(*args: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=CHILD_PYTHONPATH, HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", DIFFUSERS_VERBOSITY="error")
    done = subprocess.run([sys.executable, __file__, "--worker", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker {args} failed:\n{done.stderr[-3000:]}")
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def weight_bytes(root: Path, components: list[str]) -> int:
    return sum(p.stat().st_size for c in components for p in (root / c).glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip-step", action="store_true")
    args = parser.parse_args()
    root = args.cache / "sd15-random"
    if not (root / ".complete").exists():
        print(f"writing the SD1.5-architecture checkpoint to {root} (once) …", flush=True)
        root.mkdir(parents=True, exist_ok=True)
        run_worker("make", str(root), threads=args.threads)
    for path in root.rglob("*.safetensors"):  # warm the page cache for both libraries alike
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass

    import diffusers
    import torch

    cases = {name: [name] for name in COMPONENTS} | {"all three": list(COMPONENTS)}
    rows = []
    for case, components in cases.items():
        results = {lib: [run_worker("load", lib, str(root), ",".join(components), str(args.threads),
                                    threads=args.threads) for _ in range(args.repeats)]
                   for lib in ("nodegraph", "diffusers")}
        med = {lib: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for lib, rs in results.items()}
        rows.append((case, weight_bytes(root, components), med))
        print(f"  measured {case}", flush=True)
    steps = {} if args.skip_step else {d: run_worker("step", d, str(root), str(args.threads), threads=args.threads)
                                       for d in ("float32", "bfloat16")}

    print(f"\nnodegraph vs diffusers {diffusers.__version__} (torch {torch.__version__}, {args.threads} threads, "
          f"{os.cpu_count()} CPUs): SD1.5 architecture, random fp32 weights; median of {args.repeats} fresh processes")
    print(f"\n{'load (fp32, CPU)':<14}{'weights GB':>11}{'nodegraph s':>13}{'diffusers s':>13}{'ratio':>7}"
          f"{'  |  + page in all weights:':<28}{'nodegraph s':>12}{'diffusers s':>13}{'ratio':>7}")
    for case, nbytes, med in rows:
        ng, df = med["nodegraph"], med["diffusers"]
        print(f"{case:<14}{nbytes / GB:>11.2f}{ng['seconds']:>13.3f}{df['seconds']:>13.3f}"
              f"{ng['seconds'] / df['seconds']:>7.2f}{'':<28}{ng['ready']:>12.2f}{df['ready']:>13.2f}"
              f"{ng['ready'] / df['ready']:>7.2f}")
    print(f"\n{'peak RSS, GB':<14}{'weights GB':>11}{'after import':>14}{'nodegraph':>11}{'÷ weights':>11}"
          f"{'above import':>14}{'÷ weights':>11}{'diffusers':>11}{'÷ weights':>11}   (weights paged in)")
    for case, nbytes, med in rows:
        ng, df = med["nodegraph"], med["diffusers"]
        above = ng["peak"] - ng["base"]
        print(f"{case:<14}{nbytes / GB:>11.2f}{ng['base'] / GB:>14.2f}{ng['peak'] / GB:>11.2f}"
              f"{ng['peak'] / nbytes:>11.2f}"
              f"{above / GB:>14.2f}{above / nbytes:>11.2f}{df['peak'] / GB:>11.2f}{df['peak'] / nbytes:>11.2f}")
    if steps:
        print(f"\n{'UNet step, 2×4×32×32':<22}{'nodegraph s':>13}{'diffusers s':>13}{'ratio':>8}{'max |Δ|':>11}"
              f"{'max |out|':>11}  (goal ratio ≤ 1)")
        for dtype, s in steps.items():
            print(f"{dtype:<22}{s['nodegraph']:>13.3f}{s['diffusers']:>13.3f}{s['nodegraph'] / s['diffusers']:>8.2f}"
                  f"{s['max_diff']:>11.2e}{s['scale']:>11.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(REPO))
        worker(sys.argv[2:])
    else:
        main()
