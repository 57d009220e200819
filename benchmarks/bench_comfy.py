"""A ComfyUI workflow run through the import against the same graph written by hand in nodegraph.

    .venv/bin/python benchmarks/bench_comfy.py [--cache ~/.cache/nodegraph-bench] [--size 512] [--steps 20]
        [--repeats 3] [--tiny]
    .venv/bin/python benchmarks/bench_comfy.py --whole-process [--size 256] [--steps 4] [--repeats 5] [--tiny]
        [--cold] [--phases]

The workflow is ComfyUI's default txt2img graph (KSampler euler/normal, cfg 8) on an SD1.5-size single file with
random weights (bench_single_file.py writes it once into the cache, about 4.3 GB); `--tiny` uses the tests' tiny
SD1 model instead (seconds, for a quick check). Reported:
- import cost: reading the JSON, translating, writing the YAML + step graph and validating them (`load_graph`),
  median of 20, against `load_graph` of the hand-written graph alone;
- time-to-image in one process, models warm in the component cache, the imported and the hand-written graph run
  alternately, median of --repeats, and the largest pixel difference between their images (must be 0).
`--whole-process` times what a user waits for instead: fresh processes, `nodegraph run workflow.json --models …`
against `nodegraph run hand.yaml` (the same graph written by hand), alternating which goes first, each from
process start to its PNG (import + translate + load + sample + decode + save), with the child's peak RSS;
medians and spread of --repeats, and the largest pixel difference between the two PNGs (must be 0).
`--cold` drops the page cache before every run (root only), so each reads the checkpoint from the disk.
`--whole-process --phases` runs the same children through a small driver (the same entry point, `main()`, with a
hook on the executor's node events) and prints, per side, the median wall and CPU seconds of each phase: start →
nodegraph imported → graph ready (workflow: read + translate + validate) → each model load, the prompts, the
sampling loop, the decode → PNG written; the driver adds one hook call per node.
Goal (issue 19): the import costs nothing measurable — time-to-image ratio 1.00 within noise.

`--sdxl` (with --whole-process) does the same for SDXL (issue 30): ComfyUI's default graph — the base pass of the
`sdxl_simple_example` template: CheckpointLoaderSimple, two CLIPTextEncode, EmptyLatentImage, KSampler euler/normal
cfg 8, VAEDecode — on an SDXL-size single file written once from the cache's random bf16 SDXL base folder
(`sdxl-base-random-bf16`, its configs given to both sides), against its hand-written twin (HAND_WRITTEN_SDXL).
`--sdxl --refiner` runs the whole `sdxl_simple_example` template as shipped (base KSamplerAdvanced to steps // 2 with
leftover noise, the refiner's from there, the refiner's VAE) on the SDXL file and a refiner-size random bf16 file
(written once beside it), against HAND_WRITTEN_SDXL_REFINER. `--dtype bf16` runs both children in bf16. A real-size step fits the heavy lock as one process per command:
`--only workflow|hand --round R --results FILE` runs one child and appends its line to FILE; `--summary FILE`
prints the medians and ratio of the lines gathered there (see docs/comfyui.md for the command sequence).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.comfy.workflows import HAND_WRITTEN, api  # noqa: E402  (the tests' default workflow and its twin)

sys.path.insert(0, str(REPO / "benchmarks"))
from comfy_sdxl_twin import (HAND_WRITTEN_SDXL, HAND_WRITTEN_SDXL_REFINER, refiner_workflow_json,  # noqa: E402
                             sdxl_model_files, sdxl_refiner_file)  # (--sdxl, --refiner)

PROMPT, CFG = "a photograph of an astronaut riding a horse", 8.0  # ComfyUI's default graph's cfg
NEGATIVE = "text, watermark"  # --refiner: sdxl_simple_example's negative prompt


def workflow_json(args) -> str:
    """ComfyUI's default graph at the benchmark's size and steps, on checkpoints/model.safetensors."""
    if args.refiner:
        return refiner_workflow_json(args, PROMPT, NEGATIVE, CFG)
    return json.dumps(api(n3_steps=args.steps, n3_cfg=CFG, n4_ckpt_name="model.safetensors", n5_width=args.size,
                          n5_height=args.size, n6_text=PROMPT))


def hand_inputs(args) -> dict:
    """HAND_WRITTEN's inputs for the same computation as `workflow_json` (model and config come apart)."""
    if args.refiner:
        return {"prompt": PROMPT, "negative": NEGATIVE, "cfg": CFG, "size": args.size, "steps": args.steps,
                "switch": args.steps // 2}
    return {"prompt": PROMPT, "cfg": CFG, "size": args.size, "steps": args.steps}


def model_files(args) -> tuple[Path, str]:
    """(models/ folder holding checkpoints/model.safetensors, config folder or "")."""
    if args.sdxl:
        return sdxl_model_files(args)
    root = Path(args.cache).expanduser()
    if args.tiny:
        from tests.graphs.tiny_pipelines import save_tiny_sd
        from tests.models.single_file.ldm_layout import write_sd_file

        folder = root / "tiny-sd"
        if not (folder / "model_index.json").exists():
            save_tiny_sd(folder)
        models = root / "comfy-tiny-models"
        target = models / "checkpoints" / "model.safetensors"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_sd_file(folder, target)
        return models, str(folder)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_single_file import make_single_file

    if not (root / ".single-file-complete").exists():
        make_single_file(root)
    models = root / "comfy-models"
    target = models / "checkpoints" / "model.safetensors"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(root / "sd15-random.safetensors")
    return models, ""


def whole_process(args, models: Path, config: str) -> None:
    """Alternated fresh `nodegraph run` processes: the ComfyUI workflow vs the hand-written graph."""
    import resource

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_time_to_image import GB, can_drop_page_cache, drop_page_cache, pixel_diff, timed_run

    work = Path(tempfile.mkdtemp(prefix="bench-comfy-process-"))
    (work / "workflow.json").write_text(workflow_json(args))
    (work / "hand.yaml").write_text(HAND_WRITTEN_SDXL_REFINER if args.refiner else HAND_WRITTEN_SDXL if args.sdxl
                                    else HAND_WRITTEN)
    checkpoint = models / "checkpoints" / "model.safetensors"
    refiner = dict(zip(("refiner", "refiner_config"), sdxl_refiner_file(args, Path(config)))) if args.refiner else {}
    config_set = ["--set", f"config={config}"] if config else []
    workflow_config = ["--set", f"config_4={config}", "--set", f"config_12={refiner['refiner_config']}"] \
        if args.refiner else config_set  # two checkpoints
    dtype = ["--dtype", args.dtype] if args.dtype else []
    cli = [sys.executable, "-m", "nodegraph.cli", "run"]
    if args.phases:
        cli = [sys.executable, str(Path(__file__).resolve()), "--child-phases", str(work / "phases-{side}-{r}.json"),
               "run"]

    def command(side: str, out: Path) -> list[str]:
        if side == "workflow":
            return [*cli, str(work / "workflow.json"), "--models", str(models), *workflow_config, *dtype, "--out",
                    str(out), "-q"]
        sets = {"model": checkpoint, **refiner, **hand_inputs(args)}
        return [*cli, str(work / "hand.yaml"), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
                *config_set, *dtype, "--out", str(out), "-q"]

    if args.cold and not can_drop_page_cache():
        return
    if not args.cold:
        for path in (checkpoint, *([refiner["refiner"]] if refiner else [])):  # these only (their folder holds every benchmark's models)
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass
    runs: dict[str, list[tuple[float, int, float]]] = {"workflow": [], "hand": []}
    rounds = [args.round] if args.only else range(args.repeats)
    for r in rounds:
        for side in [args.only] if args.only else sorted(runs, reverse=bool(r % 2)):
            if args.cold:
                drop_page_cache()
            argv = [a.format(side=side, r=r) if "phases-" in a else a for a in command(side, work / f"{side}-{r}")]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            seconds, rss = timed_run(argv, args.threads)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child's CPU: robust to other load
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            runs[side].append((seconds, rss, cpu))
            print(f"  run {r} {side}: {seconds:.2f} s, {cpu:.2f} CPU s, peak RSS {rss / GB:.2f} GB", flush=True)
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps({"side": side, "round": r, "seconds": seconds, "rss": rss, "cpu": cpu,
                                        "png": str(next((work / f"{side}-{r}").glob("*.png")))}) + "\n")
    if args.only:
        return
    first = {side: next((work / f"{side}-0").glob("*.png")) for side in runs}
    report(args, runs, pixel_diff(first["workflow"], first["hand"]))
    if args.phases:
        print_phases({side: [json.loads((work / f"phases-{side}-{r}.json").read_text()) for r in range(args.repeats)]
                      for side in runs})


def report(args, runs: dict[str, list[tuple]], diff: int) -> None:
    """Medians of (wall seconds, peak RSS, CPU seconds) per side; the CPU seconds (user + system of the child) are
    what the ratio is read from on a shared machine, where other processes stretch the wall time."""
    import os

    from bench_time_to_image import GB

    model = ("tiny SDXL (tests)" if args.tiny else "SDXL-size random bf16 single file") if args.sdxl else \
        ("tiny SD1 (tests)" if args.tiny else "SD1.5-size random single file")
    if args.refiner:
        model = f"sdxl_simple_example (base + refiner, {args.steps // 2} + {args.steps - args.steps // 2} steps) on " \
                f"{'tiny SDXL files (tests)' if args.tiny else 'SDXL-size and refiner-size random bf16 single files'}"
    print(f"\nwhole process, {model}, {args.size}px, {args.steps} steps, euler/normal, cfg 8, "
          f"{args.dtype or 'fp32'}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
          f"{min(len(r) for r in runs.values())} alternated runs each, "
          f"{'cold (page cache dropped before each run)' if args.cold else 'warm page cache'}; "
          f"load average {os.getloadavg()}")
    medians, cpus = {}, {}
    for side, rs in runs.items():
        times = sorted(r[0] for r in rs)
        medians[side] = statistics.median(times)
        cpu = sorted(r[2] for r in rs if len(r) > 2)
        cpus[side] = statistics.median(cpu) if cpu else float("nan")
        print(f"  {side:<9} median {medians[side]:.2f} s (min {times[0]:.2f}, max {times[-1]:.2f}), CPU median "
              f"{cpus[side]:.2f} s ({', '.join(f'{c:.1f}' for c in cpu)}), peak RSS median "
              f"{statistics.median(r[1] for r in rs) / GB:.2f} GB")
    print(f"  ratio workflow / hand-written: wall {medians['workflow'] / medians['hand']:.3f}, CPU "
          f"{cpus['workflow'] / cpus['hand']:.3f}; largest pixel difference {diff}")
    best = {side: (min(r[0] for r in rs), min((r[2] for r in rs if len(r) > 2), default=float("nan")))
            for side, rs in runs.items()}  # the runs least disturbed by other load
    print(f"  best of each: wall {best['workflow'][0]:.2f} / {best['hand'][0]:.2f} s = "
          f"{best['workflow'][0] / best['hand'][0]:.3f}, CPU {best['workflow'][1]:.2f} / {best['hand'][1]:.2f} s = "
          f"{best['workflow'][1] / best['hand'][1]:.3f}")


def summary(args) -> None:
    """The report of the runs `--only … --results FILE` gathered in FILE."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_time_to_image import pixel_diff

    lines = [json.loads(line) for line in Path(args.summary).read_text().splitlines() if line.strip()]
    runs = {side: [(x["seconds"], x["rss"], *([x["cpu"]] if "cpu" in x else [])) for x in lines
                   if x["side"] == side] for side in ("workflow", "hand")}
    first = {side: min((x for x in lines if x["side"] == side), key=lambda x: x["round"])["png"] for side in runs}
    report(args, runs, pixel_diff(Path(first["workflow"]), Path(first["hand"])))


# Phases of a run, in order: (name, the mark that ends it). Marks are seconds since the process started.
PHASES = [("start → nodegraph imported", "imported"), ("→ graph ready (read, translate, validate)", "run start"),
          ("→ run finished (nodes below)", "run end"), ("→ PNG written, report printed", "main returned")]
NODE_GROUPS = {"LoadUNet": "load UNet", "LoadCLIP": "load CLIP", "LoadSDXLCLIP": "load CLIP", "LoadVAE": "load VAE",
               "ComfyTextEncode": "encode prompts", "repeat": "sampling loop", "VAEDecode": "decode"}


def child_phases(out: str, argv: list[str]) -> None:
    """Run `nodegraph ARGV` as the console script does, recording phase marks and each top-level node's time."""
    import os
    import resource

    def since_start() -> float:  # the process's age, from the kernel's start time (includes interpreter start)
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - started

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    origin = time.perf_counter() - since_start()
    marks: dict[str, tuple[float, float]] = {}

    def mark(name: str) -> None:
        marks[name] = (time.perf_counter() - origin, cpu())

    nodes: dict[str, list[float]] = {}
    open_nodes: list[float] = []  # CPU seconds at each running node's start; a repeat's body nests inside it

    def hook(event) -> None:  # the executor's public node events (nodegraph/exec/events.py)
        kind = type(event).__name__
        if kind == "NodeStarted":
            open_nodes.append(cpu())
        elif kind == "NodeFinished":
            began = open_nodes.pop()
            if not open_nodes:  # a top-level node: its time includes what ran inside it
                group = NODE_GROUPS.get(event.node_type.partition("@")[0], "other nodes")
                spent = nodes.setdefault(group, [0.0, 0.0])
                spent[0] += event.seconds
                spent[1] += cpu() - began

    from nodegraph.runner.run import Runner  # `nodegraph run` goes through the runner (nodegraph/runner/run.py)

    context, run = Runner.context, Runner.run

    def timed_context(self, hooks=(), cancel=None):
        return context(self, (*hooks, hook), cancel)

    def timed_run(self, *a, **kw):
        mark("run start")
        try:
            return run(self, *a, **kw)
        finally:
            mark("run end")

    Runner.context, Runner.run = timed_context, timed_run
    from nodegraph.cli import main

    mark("imported")
    code = main(argv)
    mark("main returned")
    Path(out).write_text(json.dumps({"marks": marks, "nodes": nodes}))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as `nodegraph` itself leaves (nodegraph/cli.py entry)


def print_phases(records: dict[str, list[dict]]) -> None:
    """Median wall / CPU seconds of each phase per side, and the workflow's difference."""
    def median_of(side: str, pick) -> tuple[float, float]:
        values = [pick(r) for r in records[side]]
        return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)

    rows = []
    previous = None
    for name, mark in PHASES:
        def span(r, mark=mark, previous=previous):
            end, start = r["marks"][mark], r["marks"][previous] if previous else (0.0, 0.0)
            return end[0] - start[0], end[1] - start[1]
        rows.append((name, span))
        previous = mark
    groups = [g for g in dict.fromkeys([*NODE_GROUPS.values(), "other nodes"])
              if any(g in r["nodes"] for rs in records.values() for r in rs)]
    rows[3:3] = [(f"    {g}", lambda r, g=g: tuple(r["nodes"].get(g, (0.0, 0.0)))) for g in groups]
    rows.append(("total (process start → exit of main)", lambda r: tuple(r["marks"]["main returned"])))
    print("\nphases, median seconds (wall / CPU)      workflow           hand-written       workflow − hand (wall)")
    for name, pick in rows:
        w, h = median_of("workflow", pick), median_of("hand", pick)
        print(f"  {name:<42} {w[0]:7.3f} / {w[1]:6.3f}   {h[0]:7.3f} / {h[1]:6.3f}   {w[0] - h[0]:+7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="~/.cache/nodegraph-bench")
    parser.add_argument("--size", type=int, default=None, help="default 512 (--whole-process 256, --tiny 64)")
    parser.add_argument("--steps", type=int, default=None, help="default 20 (--whole-process 4)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (--whole-process 5)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny SD1 model (seconds)")
    parser.add_argument("--whole-process", action="store_true",
                        help="time fresh `nodegraph run` processes (default --size 256 --steps 4 --repeats 5)")
    parser.add_argument("--threads", type=int, default=2, help="--whole-process: threads per child")
    parser.add_argument("--cold", action="store_true",
                        help="--whole-process: drop the page cache before every run (root only)")
    parser.add_argument("--phases", action="store_true",
                        help="--whole-process: also time each phase of the children (through a small driver)")
    parser.add_argument("--sdxl", action="store_true", help="SDXL: the default graph on an SDXL-size single file")
    parser.add_argument("--refiner", action="store_true",
                        help="with --sdxl: the whole sdxl_simple_example template, base then refiner (2 files)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None, help="--whole-process: children's")
    parser.add_argument("--only", choices=["workflow", "hand"], help="--whole-process: run one child only")
    parser.add_argument("--round", type=int, default=0, help="--only: the round number it is")
    parser.add_argument("--results", help="--whole-process: append each child's line to this file")
    parser.add_argument("--summary", help="print the report of the lines in this --results file and exit")
    if sys.argv[1:2] == ["--child-phases"]:
        child_phases(sys.argv[2], sys.argv[3:])
    args = parser.parse_args()
    defaults = {"size": 256, "steps": 4, "repeats": 5} if args.whole_process else {"size": 512, "steps": 20,
                                                                                     "repeats": 3}
    if args.tiny:
        defaults["size"] = 64
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.summary:
        summary(args)
        return
    if args.whole_process:
        whole_process(args, *model_files(args))
        return

    import numpy as np

    from nodegraph.comfy.command import load_translated
    from nodegraph.exec.executor import run_graph
    from nodegraph.exec.writers import to_pil_images
    from nodegraph.spec.loader import load_graph

    models, config = model_files(args)
    work = Path(tempfile.mkdtemp(prefix="bench-comfy-"))
    source = work / "workflow.json"
    source.write_text(workflow_json(args))
    hand = work / "hand.yaml"
    hand.write_text(HAND_WRITTEN)
    options = argparse.Namespace(models=[str(models)], extra_model_paths=None, set=[])

    import_times, load_times = [], []
    for i in range(20):
        folder = work / f"import{i}"
        folder.mkdir()
        start = time.perf_counter()
        imported = load_translated(str(source), options, folder)[0]
        import_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        hand_graph = load_graph(hand)
        load_times.append(time.perf_counter() - start)
    checkpoint = str(models / "checkpoints" / "model.safetensors")
    imported_inputs = {"config": config}
    hand_values = {"model": checkpoint, "config": config, **hand_inputs(args)}

    def image(graph, inputs):
        start = time.perf_counter()
        out = run_graph(graph, inputs, device="cpu")
        seconds = time.perf_counter() - start
        value = out.get("image", out.get("save9"))
        return seconds, np.asarray(to_pil_images(value, "image")[0]).astype(int)

    image(imported, imported_inputs)  # warm the component cache and the allocator
    times = {"imported": [], "hand": []}
    pictures = {}
    for _ in range(args.repeats):
        for name, graph, inputs in (("imported", imported, imported_inputs), ("hand", hand_graph, hand_values)):
            seconds, pictures[name] = image(graph, inputs)
            times[name].append(seconds)
    ms = 1000
    print(f"model: {'tiny SD1 (tests)' if args.tiny else 'SD1.5-size random single file'}, {args.size}px, "
          f"{args.steps} steps, CPU")
    print(f"import (read + translate + write + validate): {statistics.median(import_times) * ms:.1f} ms; "
          f"load_graph of the hand-written graph: {statistics.median(load_times) * ms:.1f} ms")
    imported_s, hand_s = statistics.median(times["imported"]), statistics.median(times["hand"])
    print(f"time-to-image (warm models), median: imported {imported_s:.3f} s, hand-written {hand_s:.3f} s, "
          f"ratio {imported_s / hand_s:.3f}")
    best_imported, best_hand = min(times["imported"]), min(times["hand"])  # least disturbed by other load
    print(f"time-to-image, best of {args.repeats}: imported {best_imported:.3f} s, hand-written {best_hand:.3f} s, "
          f"ratio {best_imported / best_hand:.3f}")
    print(f"largest pixel difference between the two images: {np.abs(pictures['imported'] - pictures['hand']).max()}")


if __name__ == "__main__":
    main()
