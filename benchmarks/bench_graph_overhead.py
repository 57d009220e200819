"""Executor overhead: graphs/stable_diffusion.yaml run by the executor vs the same work written as a plain loop.

    .venv/bin/python benchmarks/bench_graph_overhead.py [--threads 1] [--repeats 3] [--only tiny|sd15]

Both sides use nodegraph's own models, schedulers and loading, so the difference is what being a graph costs
(planning, port binding, the repeat, events). Each side runs in its own fresh process (so each has its own peak
RSS), alternately: once cold (graph file to image, loading included; imports excluded) and then --repeats times
warm (models already loaded: the executor's component cache on the graph side, the loop's own variables on the
other), where fixed costs cannot hide the per-step overhead. Both must produce the same image.
Cases: the tiny SD checkpoint with many steps (overhead dominates) and the SD1.5-architecture one with 4 steps.
A third run puts both sides in one process and alternates them warm (tiny only), so that machine drift hits
both alike; it prints the median of the per-pair ratios. Goal (issue 7): overhead ≤ 1 %.
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

REPO = Path(__file__).resolve().parents[1]
# children import nodegraph from this checkout, and whatever the caller's PYTHONPATH adds
CHILD_PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
PROMPT, NEGATIVE, SEED, GUIDANCE = "a photograph of an astronaut riding a horse", "", 0, 7.5
# sd15 runs take ~30 s each: one process a side there
CASES = {"tiny": dict(steps=50, size=64, processes=2), "sd15": dict(steps=4, size=256, processes=1)}
GB = 1e9


def graph_side(root: Path, steps: int, size: int, dtype: str):
    from nodegraph.exec.executor import run_graph

    values = dict(model=str(root), prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, steps=steps,
                  guidance_scale=GUIDANCE, height=size, width=size)
    return lambda: run_graph(GRAPH, values, device="cpu", dtype=dtype)["image"]


def loop_side(root: Path, steps: int, size: int, dtype_name: str):
    """The pipeline by hand, over the same nodegraph components: what the graph must cost no more than."""
    import torch

    from nodegraph.models.loading import load_component
    from nodegraph.schedulers import create_scheduler

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    models: dict = {}

    def run():
        if not models:  # the first call loads, as the graph's first run does
            # channels_last off, as in the loader nodes' default: both sides run the same kernels
            models.update(unet=load_component(root, "unet", dtype=dtype, channels_last=False),
                          vae=load_component(root, "vae", dtype=dtype, channels_last=False),
                          text_encoder=load_component(root, "text_encoder", dtype=dtype),
                          tokenizer=load_component(root, "tokenizer"), config=load_component(root, "scheduler"))
        unet, vae, te, tok = models["unet"], models["vae"], models["text_encoder"], models["tokenizer"]
        scheduler = create_scheduler(models["config"])

        def encode(prompt):
            ids = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            return te(ids)[0].to(dtype)

        with torch.no_grad():
            embeddings = torch.cat([encode(NEGATIVE), encode(PROMPT)])  # (2, 77, C)
            scheduler.set_timesteps(steps, device="cpu")
            generator = torch.Generator("cpu").manual_seed(SEED)
            factor = 2 ** (len(vae.config.block_out_channels) - 1)
            shape = (1, unet.config.in_channels, size // factor, size // factor)
            latents = torch.randn(shape, generator=generator, dtype=dtype) * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                x = scheduler.scale_model_input(latents, t)
                uncond, cond = unet(torch.cat([x, x]), t, encoder_hidden_states=embeddings).chunk(2)
                noise = uncond + GUIDANCE * (cond - uncond)
                latents = scheduler.step(noise, t, latents, generator=generator, eta=0.0)
            image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor)
        return (image / 2 + 0.5).clamp(0, 1).float()

    return run


def worker(side: str, root: str, steps: int, size: int, dtype: str, repeats: int, out: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    run = (graph_side if side == "graph" else loop_side)(Path(root), steps, size, dtype)
    start = time.perf_counter()
    image = run()
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        warm.append(time.perf_counter() - start)
    torch.save(image, out)
    print("RESULT " + json.dumps({"cold": cold, "warm": statistics.median(warm)}))


def interleaved_worker(root: str, steps: int, size: int, dtype: str, pairs: int, threads: int) -> None:
    """Both sides in one process, warm, run alternately: machine drift hits both alike, and the median of the
    per-pair ratios is what is left of the graph's own cost."""
    import torch

    torch.set_num_threads(threads)
    sides = {"graph": graph_side(Path(root), steps, size, dtype), "loop": loop_side(Path(root), steps, size, dtype)}
    for run in sides.values():
        run()
    ratios, times = [], {"graph": [], "loop": []}
    for i in range(pairs):
        for name in (("graph", "loop") if i % 2 else ("loop", "graph")):
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)
        ratios.append(times["graph"][-1] / times["loop"][-1])
    print("RESULT " + json.dumps({"ratio": statistics.median(ratios), "ratios": ratios,
                                  **{k: statistics.median(v) for k, v in times.items()}}))


def measure(name: str, root: Path, dtype: str, threads: int, repeats: int) -> dict:
    import torch

    steps, size = CASES[name]["steps"], CASES[name]["size"]
    results = {"graph": [], "loop": []}
    with tempfile.TemporaryDirectory(prefix="ng-overhead-") as tmp:
        for r in range(CASES[name]["processes"]):  # fresh processes a side, alternating who goes first
            for side in sorted(results, reverse=bool(r % 2)):
                out = f"{tmp}/{side}-{r}.pt"
                args = [side, str(root), str(steps), str(size), dtype, str(repeats), out]
                results[side].append(timed_worker(args, threads))
        same = (torch.load(f"{tmp}/graph-0.pt") - torch.load(f"{tmp}/loop-0.pt")).abs().max().item()
    med = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in results.items()}
    print(f"  measured {name} {dtype}", flush=True)
    return {"case": name, "steps": steps, "size": size, "dtype": dtype, "diff": same, **med}


def timed_worker(args: list[str], threads: int) -> dict:
    """One worker process; its RESULT plus its own peak RSS (ru_maxrss of that child, from os.wait4)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=CHILD_PYTHONPATH, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", *args, str(threads)], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"worker {args} failed:\n{err.read().decode()[-3000:]}")
    line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):]) | {"rss": usage.ru_maxrss * 1024}  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs a process (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=sorted(CASES), default=None)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--pairs", type=int, default=15, help="alternating warm pairs in the one-process run")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_time_to_image import sd15_checkpoint, tiny_checkpoint, warm_page_cache

    rows = []
    for name in [args.only] if args.only else list(CASES):
        root = tiny_checkpoint(args.cache) if name == "tiny" else sd15_checkpoint(args.cache, args.threads)
        warm_page_cache(root)
        rows.append(measure(name, root, args.dtype, args.threads, args.repeats))
        if name == "tiny":  # sd15 would hold two copies of every model
            steps, size = CASES[name]["steps"], CASES[name]["size"]
            rows[-1]["interleaved"] = timed_worker(["interleaved", str(root), str(steps), str(size), args.dtype,
                                                    str(args.pairs)], args.threads)
    per_side = ", ".join(f"{k}: {v['processes']}" for k, v in CASES.items())
    print(f"\nexecutor overhead: graphs/stable_diffusion.yaml vs the hand-written loop over the same nodegraph models; "
          f"{args.threads} thread(s); cold = first run in a fresh process (load included, imports not), "
          f"warm = median of {args.repeats} further runs; median over {per_side} fresh processes a side")
    head = (f"{'checkpoint':<11}{'steps':>6}{'size':>6}{'dtype':>6}{'graph cold s':>14}{'loop cold s':>13}"
            f"{'overhead':>10}{'graph warm s':>14}{'loop warm s':>13}{'overhead':>10}{'graph RSS GB':>14}"
            f"{'loop RSS GB':>13}{'max |Δ| image':>15}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        g, lp = r["graph"], r["loop"]
        print(f"{r['case']:<11}{r['steps']:>6}{r['size']:>6}{r['dtype']:>6}{g['cold']:>14.3f}{lp['cold']:>13.3f}"
              f"{(g['cold'] - lp['cold']) / lp['cold']:>10.1%}{g['warm']:>14.3f}{lp['warm']:>13.3f}"
              f"{(g['warm'] - lp['warm']) / lp['warm']:>10.1%}{g['rss'] / GB:>14.2f}{lp['rss'] / GB:>13.2f}"
              f"{r['diff']:>15.2e}")
    print("goal: overhead = (graph − loop) / loop ≤ 1 %")
    for r in rows:
        if "interleaved" in r:
            it = r["interleaved"]
            print(f"{r['case']}, warm, both sides in one process, {len(it['ratios'])} alternating pairs: graph "
                  f"{it['graph']:.3f} s, loop {it['loop']:.3f} s; median per-pair overhead {it['ratio'] - 1:+.2%} "
                  f"(pairs from {min(it['ratios']) - 1:+.1%} to {max(it['ratios']) - 1:+.1%})")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1:3] == ["--worker", "interleaved"]:
        root, steps, size, dtype, pairs, threads = sys.argv[3:9]
        interleaved_worker(root, int(steps), int(size), dtype, int(pairs), int(threads))
    elif len(sys.argv) > 1 and sys.argv[1] == "--worker":
        side, root, steps, size, dtype, repeats, out, threads = sys.argv[2:10]
        worker(side, root, int(steps), int(size), dtype, int(repeats), out, int(threads))
    else:
        main()
