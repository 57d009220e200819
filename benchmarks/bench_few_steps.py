"""Few-step and cached sampling, whole process: nodegraph vs diffusers doing the same thing in the same run.

    .venv/bin/python benchmarks/bench_few_steps.py [--only tiny|sd15|sdxl] [--dtypes bf16] [--repeats 5]
        [--threads N] [--size PX] [--case lcm,deepcache,turbo]

Cases (each a fresh process per run, nodegraph and diffusers alternated, who goes first alternating too;
medians of --repeats with min–max, and the largest pixel difference between the two PNGs):
- lcm: graphs/lcm.yaml (LCMScheduler, 4 steps, guidance 1.0: the LCM-LoRA recipe, here without a LoRA file,
  whose fused weights cost nothing per step) vs diffusers' StableDiffusionPipeline with LCMScheduler.
  Goal (issue 31): time ratio ≤ 0.75 in bf16 at 512², same pixels (max px Δ ≤ 1).
- deepcache: graphs/stable_diffusion.yaml with `cache: deepcache, cache_interval: 3` vs the same graph without a
  cache, 25 Euler steps; diffusers has no DeepCache for UNets, so the comparison is with the full computation:
  the time ratio and the largest pixel difference DeepCache costs on the same seed.
- turbo: graphs/sdxl_turbo.yaml (Euler ancestral, trailing, 1 step, guidance 0) vs diffusers'
  StableDiffusionXLPipeline with EulerAncestralDiscreteScheduler.from_config(…, timestep_spacing="trailing"), as
  SDXL-Turbo's card runs it. Goal (issue 31): ratio ≤ 0.75 in bf16 at 512², same pixels.
Checkpoints: bench_time_to_image.py's and bench_sdxl.py's (random weights; sd15 = full SD1.5 architecture for lcm
and deepcache, sdxl = SDXL base's architecture for turbo, tiny = the tests' tiny SD and tiny SDXL).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_time_to_image import (  # noqa: E402
    PROMPT, REPO, SEED, alternate_runs, load_average, sd15_checkpoint, spread, tiny_checkpoint, warm_page_cache,
)

LCM_STEPS, CACHE_STEPS = 4, 25


def diffusers_lcm_worker(model: str, dtype_name: str, size: int, out: str, threads: int) -> None:
    """The diffusers side as a user writes it: the SD pipeline with its scheduler swapped for LCMScheduler."""
    import torch
    from diffusers import LCMScheduler, StableDiffusionPipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=LCM_STEPS, guidance_scale=1.0, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def diffusers_turbo_worker(model: str, dtype_name: str, size: int, out: str, threads: int) -> None:
    """The diffusers side of the turbo case: SDXL-Turbo's card (Euler ancestral, trailing, 1 step, no guidance)."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=dtype, add_watermarker=False)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def turbo_command(model: Path, dtype: str, size: int, threads: int):
    def command(lib: str, out: Path) -> list[str]:
        if lib == "diffusers":
            return [sys.executable, __file__, "--diffusers-turbo-worker", str(model), dtype, str(size),
                    str(out / "image.png"), str(threads)]
        sets = dict(model=model, prompt=PROMPT, steps=1, guidance_scale=0.0, scheduler="euler_a",
                    timestep_spacing="trailing", height=size, width=size, seed=SEED)
        return nodegraph_command("sdxl_turbo.yaml", sets, dtype, out)
    return command


def nodegraph_command(graph: str, sets: dict, dtype: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / graph),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], "--dtype", dtype, "--out", str(out), "-q"]


def lcm_command(model: Path, dtype: str, size: int, threads: int):
    def command(lib: str, out: Path) -> list[str]:
        if lib == "diffusers":
            return [sys.executable, __file__, "--diffusers-lcm-worker", str(model), dtype, str(size),
                    str(out / "image.png"), str(threads)]
        sets = dict(model=model, prompt=PROMPT, steps=LCM_STEPS, guidance_scale=1.0, height=size, width=size, seed=SEED)
        return nodegraph_command("lcm.yaml", sets, dtype, out)
    return command


def deepcache_command(model: Path, dtype: str, size: int):
    """"nodegraph" = with DeepCache, "diffusers" = the full computation (the same graph without a cache)."""
    def command(lib: str, out: Path) -> list[str]:
        sets = dict(model=model, prompt=PROMPT, steps=CACHE_STEPS, scheduler="euler", height=size, width=size,
                    seed=SEED)
        if lib == "nodegraph":
            sets.update(cache="deepcache", cache_interval=3)
        return nodegraph_command("stable_diffusion.yaml", sets, dtype, out)
    return command


def measure(case: str, name: str, model: Path, dtype: str, size: int, threads: int, repeats: int) -> dict:
    commands = {"lcm": lambda: lcm_command(model, dtype, size, threads), "turbo": lambda: turbo_command(model, dtype,
                size, threads), "deepcache": lambda: deepcache_command(model, dtype, size)}
    command = commands[case]()
    result = alternate_runs(command, repeats, threads, f"ng-{case}-")
    row = {"case": case, "checkpoint": name, "size": size, "dtype": dtype, **result}
    print(f"  measured {case} {name} {dtype} {size}px: nodegraph {row['nodegraph_s']:.1f} s, other "
          f"{row['diffusers_s']:.1f} s, max px Δ {row['diff']} (load average {load_average()})", flush=True)
    return row


def print_table(rows: list[dict], threads: int, repeats: int) -> None:
    print(f"\nfew-step / cached sampling, whole process, {threads} thread(s), median of {repeats} (min–max), "
          f"warm page cache; load average {load_average()}")
    head = (f"{'case':<11}{'checkpoint':<11}{'size':<6}{'dtype':<6}{'nodegraph s':>12}{'min–max':>13}"
            f"{'other s':>10}{'min–max':>13}{'ratio':>7}{'max px Δ':>10}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['case']:<11}{r['checkpoint']:<11}{r['size']:<6}{r['dtype']:<6}{r['nodegraph_s']:>12.2f}"
              f"{spread(r, 'nodegraph'):>13}{r['diffusers_s']:>10.2f}{spread(r, 'diffusers'):>13}"
              f"{r['nodegraph_s'] / r['diffusers_s']:>7.2f}{r['diff']:>10}")
    print("other = diffusers' SD pipeline with LCMScheduler (lcm); its SDXL pipeline, Euler ancestral trailing "
          "(turbo); nodegraph without the cache (deepcache)")
    print("goal (issue 31): lcm and turbo ratio ≤ 0.75 in bf16 at 512², max px Δ ≤ 1; deepcache: the time it "
          "saves and the pixel distance it costs")


def checkpoints(args, cases: list[str]) -> list[tuple[str, str, Path]]:
    """(checkpoint name, case, folder) to measure: the SD ones for lcm and deepcache, the SDXL ones for turbo."""
    from bench_sdxl import sdxl_checkpoint, tiny_checkpoint as tiny_sdxl_checkpoint

    sd, sdxl = [c for c in cases if c != "turbo"], [c for c in cases if c == "turbo"]
    found = []
    if args.only in (None, "tiny"):
        found += [("tiny", c, tiny_checkpoint(args.cache)) for c in sd]
        found += [("tiny-sdxl", c, tiny_sdxl_checkpoint(args.cache)) for c in sdxl]
    if args.only in (None, "sd15") and sd:
        found += [("sd15", c, sd15_checkpoint(args.cache, args.threads)) for c in sd]
    if args.only in (None, "sdxl") and sdxl:
        found += [("sdxl", c, sdxl_checkpoint(args.cache, "bf16")) for c in sdxl]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=["tiny", "sd15", "sdxl"], default=None)
    parser.add_argument("--dtypes", default="bf16")
    parser.add_argument("--size", type=int, default=None, help="pixels (default: sd15 512, tiny 64)")
    parser.add_argument("--case", default="lcm,deepcache,turbo")
    args = parser.parse_args()
    cases = [case for case in args.case.split(",") if case]
    rows = []
    for name, case, root in checkpoints(args, cases):
        warm_page_cache(root)
        size = args.size or (64 if name.startswith("tiny") else 512)
        rows += [measure(case, name, root, dtype, size, args.threads, args.repeats)
                 for dtype in args.dtypes.split(",") if dtype]
    print_table(rows, args.threads, args.repeats)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--diffusers-lcm-worker", "--diffusers-turbo-worker"):
        model, dtype, size, out, threads = sys.argv[2:7]
        worker = diffusers_lcm_worker if sys.argv[1] == "--diffusers-lcm-worker" else diffusers_turbo_worker
        worker(model, dtype, int(size), out, int(threads))
    else:
        main()
