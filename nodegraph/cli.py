"""The `nodegraph` command: run, validate, nodes, show.

Exit codes: 0 success, 1 a node failed or an output could not be written, 2 invalid graph / input /
usage, 130 cancelled (Ctrl-C). Bad input never shows a Python traceback; NODEGRAPH_DEBUG=1 shows one for
internal errors.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import warnings
from typing import Any, Optional

EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED = 1, 2, 130


def _bind(graph, sets: list[str], require_all: bool, base: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Input values from `--set` over `base` (the values recorded in a PNG being re-run)."""
    from nodegraph.spec.values import bind_sets

    return bind_sets(graph, sets, require_all=require_all, base=base)


def _print_warnings(graph) -> None:
    for warning in graph.warnings:
        print(warning, file=sys.stderr)



def run_mode(args, recorded_fast: bool = False, recorded_weights: Optional[str] = None):
    """The run's mode from the command line (a PNG made in fast mode or with fp8 weights re-runs so;
    `--weights file` overrides the recorded fp8)."""
    from nodegraph.core.mode import RunMode

    weights = getattr(args, "weights", None) or recorded_weights
    return RunMode(args.device, args.dtype, fast=bool(args.fast or recorded_fast),
                   max_memory=getattr(args, "max_memory", None), weights=None if weights == "file" else weights)


def _size(text: str) -> int:
    """`--max-memory`'s value in bytes; a malformed size is argparse's error (exit 2, nothing loaded)."""
    from nodegraph.memory.sizes import SizeError, parse_size

    try:
        return parse_size(text)
    except SizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_run(args) -> int:
    import tempfile

    if args.server:  # run on a `nodegraph serve` server instead (nodegraph/serve/remote.py)
        from nodegraph.serve.remote import run_remote

        return run_remote(args)
    with tempfile.TemporaryDirectory(prefix="nodegraph-") as scratch:
        return _run(args, pathlib.Path(scratch))


def _run(args, scratch: pathlib.Path) -> int:
    """GRAPH: a graph file, an hf:// address, a PNG written by `nodegraph run`, or a ComfyUI workflow
    (nodegraph/comfy); all run through nodegraph.runner."""
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.exec.hooks import LogHook, ProgressHook
    from nodegraph.exec.run_scoped import RunScopedComponents  # one run: free each model after its last use
    from nodegraph.exec.step_cache_report import StepCacheReport  # -v: how many steps each step cache reused
    from nodegraph.runner import Runner, interactive, is_comfy_target, open_target, prepare_process

    comfy = is_comfy_target(args.graph)
    prepare_process(heap_reuse=not args.no_heap_reuse, memory_budget=bool(args.max_memory))
    try:
        target = open_target(args.graph, scratch, allow_includes_outside=args.allow_includes_outside,
                             comfy_options=args)
    except ComfyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not comfy:
        _print_warnings(target.graph)
    values = target.bind(args.set)
    out_dir = pathlib.Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"error: --out {args.out} exists and is not a folder", file=sys.stderr)
        return EXIT_INVALID
    runner = Runner(run_mode(args, target.recorded_fast, target.recorded_weights), components=RunScopedComponents())
    memory = _memory_hook(runner, target.graph, values) if args.verbose or args.max_memory else None
    if memory is False:
        return EXIT_INVALID
    verbose = [LogHook(), StepCacheReport()] if args.verbose else []
    hooks = [ProgressHook(disable=True if args.quiet else None)] + verbose
    with interactive() as cancel:
        outputs = runner.run(target.graph, values, hooks=hooks + ([memory] if args.verbose else []), cancel=cancel,
                             prefetch=not args.no_prefetch)
        if args.verbose:
            print("\n".join(memory.report.lines()), file=sys.stderr)
        try:
            written = runner.write(target, values, outputs, out_dir)
        except ComfyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    report = {w.name: [str(p) for p in w.files] if w.files is not None else w.summary for w in written}
    print(json.dumps(report, indent=2, default=repr))
    return 0


def _memory_hook(runner, graph, values):
    """The -v memory report's hook, with the plan's estimate; False (after the message) when `--max-memory` is
    below the least this run can use (checked before anything loads)."""
    from nodegraph.exec.memory_plan import BudgetError, check_budget, planned_peak
    from nodegraph.exec.memory_report import MemoryHook

    device = runner.context().device
    try:
        check_budget(graph, values, runner.mode, device)
    except BudgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    hook = MemoryHook(device)
    hook.estimate = planned_peak(graph, values, runner.mode, device)  # as the budget makes the run go
    return hook


def _load(args):
    """GRAPH of validate/show: a graph file (or `graphs/<name>.yaml`, the shipped copy from any folder)."""
    from nodegraph.shipped_graphs import shipped_graph
    from nodegraph.spec.loader import load_graph

    return load_graph(shipped_graph(args.graph) or args.graph, allow_includes_outside=args.allow_includes_outside)


def cmd_validate(args) -> int:
    graph = _load(args)
    values = _bind(graph, args.set, require_all=False)
    _print_warnings(graph)
    if args.memory:  # sizes from the weight files' headers; nothing loads (nodegraph/exec/memory_plan.py)
        from nodegraph.exec.memory_plan import estimate_run
        from nodegraph.memory.budget import compute_size

        print("\n".join(estimate_run(graph, values, compute_size(args.dtype)).lines()))
    details = [f"{len(graph.spec.nodes)} nodes", f"outputs: {', '.join(graph.spec.outputs) or 'none'}"]
    if graph.warnings:
        details.append(f"{len(graph.warnings)} warning{'s' if len(graph.warnings) > 1 else ''}")
    print(f"{args.graph}: valid ({', '.join(details)})")
    return 0


def cmd_nodes(args) -> int:
    from nodegraph.core.registry import REGISTRY

    types = [t for t in REGISTRY.all() if not args.names or t.name in args.names or t.label in args.names]
    if args.names and not types and "repeat" not in args.names:
        print(f"error: no node type named {', '.join(args.names)} (`nodegraph nodes` lists them all)",
              file=sys.stderr)
        return EXIT_INVALID
    blocks = []
    for t in types:
        lines = [t.label, *(f"  {line}".rstrip() for line in t.doc.splitlines())]
        lines += [f"  migrates graphs written for {t.name}@{m.from_version}: {m.describe()}" for m in t.migrations]
        lines.append("  inputs:" if t.inputs else "  inputs: none")
        for port in t.inputs.values():
            extra = f"  — {port.description}" if port.description else ""
            lines.append(f"    {port.name}: {port.describe()}{'' if not port.required else '  (required)'}{extra}")
        lines.append("  outputs:")
        for port, ptype in t.outputs.items():
            doc = t.output_docs.get(port)
            lines.append(f"    {port}: {ptype}{f'  — {doc}' if doc else ''}")
        blocks.append("\n".join(lines))
    if not args.names or "repeat" in args.names:
        blocks.append("repeat\n  Runs a body subgraph once per element of `over`, carrying `state` through `next`\n"
                      "  (see docs/graphs.md). Keys: over, state, nodes, next, collect.")
    print("\n\n".join(blocks))
    return 0


def cmd_show(args) -> int:
    from nodegraph.spec.mermaid import to_mermaid

    print(to_mermaid(_load(args).checked), end="")
    return 0


def _add_validate(sub, sets: dict, outside: dict) -> None:
    validate = sub.add_parser("validate", help="check a graph (and --set values) without running it")
    validate.add_argument("graph", metavar="GRAPH")
    validate.add_argument("--set", **sets)
    validate.add_argument("--allow-includes-outside", **outside)
    validate.add_argument("--memory", action="store_true", help="print the memory the run will need, from the "
                          "weight files' headers (nothing loads)")
    validate.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="for --memory (default fp32)")
    validate.set_defaults(func=cmd_validate)


def _add_run_options(run, sets: dict, outside: dict) -> None:
    """`nodegraph run`'s own options (front-ends add theirs after)."""
    run.add_argument("graph", metavar="GRAPH", help="a graph file, or a PNG written by `nodegraph run` to re-run")
    run.add_argument("--set", **sets)
    run.add_argument("--out", default="out", metavar="DIR", help="folder for image outputs (default: out)")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda when present)")
    run.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="default: fp32")
    run.add_argument("--fast", action="store_true", help="fast mode: faster kernels; in fp32 the image within 2/255 of "
                     "the default (bit-equal to diffusers) one, in bf16 as close to fp32 as the default bf16 image; "
                     "recorded in the PNG (docs/performance.md)")
    run.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                     help="memory budget (e.g. 6GB): models stream from their files and the VAE tiles to fit; "
                          "refused before loading when the run cannot fit (docs/memory.md)")
    run.add_argument("--weights", default=None, choices=["fp8", "fp8_e4m3fn", "fp8_e5m2", "file"],
                     help="hold the UNet's / transformer's Linear and Conv weights as float8 (fp8 = fp8_e4m3fn), "
                          "upcast per layer: about 1/4 of fp32's memory, not the same pixels; recorded in the PNG; "
                          "`file` = as the file stores them (docs/memory.md)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.add_argument("--no-heap-reuse", action="store_true",
                     help="leave the C allocator's defaults (by default freed tensor memory is kept for reuse, "
                          "which avoids page faults on every CPU step)")
    run.add_argument("--no-prefetch", action="store_true",
                     help="do not read the model files into the page cache ahead of their loaders (by default a "
                          "process reads those not yet cached, once torch is imported; see docs/performance.md)")
    run.add_argument("-v", "--verbose", action="store_true", help="log every node as it starts and ends, and "
                     "how many steps each step cache reused")
    run.add_argument("--server", default=None, metavar="URL", help="run on a `nodegraph serve` server")
    run.add_argument("--token", default=None, help="the server's token (default: $NODEGRAPH_TOKEN)")
    run.add_argument("--allow-includes-outside", **outside)


def _add_sharing(sub) -> None:
    """upgrade, schema and pack: sharing graphs (implemented in nodegraph/hub)."""
    from nodegraph.hub import commands as hub  # sharing: upgrade, schema, pack (implemented in nodegraph/hub)

    upgrade = sub.add_parser("upgrade", help="rewrite a graph file for the installed node versions; print a diff")
    upgrade.add_argument("graph", metavar="GRAPH")
    upgrade.add_argument("--dry-run", action="store_true", help="print the diff, leave the file unchanged")
    upgrade.set_defaults(func=hub.cmd_upgrade)
    schema = sub.add_parser("schema", help="print a JSON Schema of graph files, for YAML editors (docs/sharing.md)")
    schema.add_argument("--out", metavar="FILE", help="write it to FILE instead")
    schema.set_defaults(func=hub.cmd_schema)
    pack = sub.add_parser("pack", help="write a folder ready to upload as a Hub repo: graph, includes, README card")
    pack.add_argument("graph", metavar="GRAPH")
    pack.add_argument("dir", metavar="DIR", help="a new (or empty) folder")
    pack.add_argument("--image", metavar="PNG", help="an example image to show in the README")
    pack.add_argument("--repo", default="OWNER/REPO", help="the Hub repo it will live in (for the run command)")
    pack.set_defaults(func=hub.cmd_pack)


def build_parser() -> argparse.ArgumentParser:
    from nodegraph import __version__

    parser = argparse.ArgumentParser(prog="nodegraph", description="Run and inspect nodegraph YAML graphs.")
    parser.add_argument("--version", action="version", version=f"nodegraph {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sets = dict(action="append", default=[], metavar="NAME=VALUE",
                help="set a graph input (repeatable); lists are YAML, e.g. --set sizes=[1,2]")
    outside = dict(action="store_true", help="let local includes point outside the graph's folder (absolute "
                   "paths, `..`); only for graphs you trust")

    run = sub.add_parser("run", help="run a graph and write its outputs")
    _add_run_options(run, sets, outside)
    from nodegraph.comfy import command as comfy  # ComfyUI workflows: run options and import-comfy (nodegraph/comfy)

    comfy.add_run_options(run)
    run.set_defaults(func=cmd_run)

    _add_validate(sub, sets, outside)

    nodes = sub.add_parser("nodes", help="list node types with their ports, parameters and help")
    nodes.add_argument("names", nargs="*", metavar="NAME", help="only these types")
    nodes.set_defaults(func=cmd_nodes)

    show = sub.add_parser("show", help="print the graph as Mermaid flowchart text")
    show.add_argument("graph", metavar="GRAPH")
    show.add_argument("--allow-includes-outside", **outside)
    show.set_defaults(func=cmd_show)

    _add_sharing(sub)

    from nodegraph.serve.main import add_parser as add_serve_parser

    add_serve_parser(sub)

    from nodegraph.batch.command import add_batch_parser  # implementation: nodegraph/batch/

    add_batch_parser(sub, sets)

    from nodegraph.models.single_file.inspect import add_inspect_parser  # implementation: models/single_file/

    add_inspect_parser(sub)
    comfy.add_import_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    from nodegraph.core.context import DeviceError
    from nodegraph.exec.hooks import RunCancelledError
    from nodegraph.exec.steps import NodeExecutionError
    from nodegraph.exec.png_metadata import RecipeError
    from nodegraph.exec.writers import OutputError
    from nodegraph.runner import describe_failure
    from nodegraph.spec.errors import ValidationFailed
    from nodegraph.spec.limits import InputRefused  # BundleError, LocationError, JsonProblem... (spec/limits.py)

    warnings.showwarning = _show_warning
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationFailed as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_INVALID
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except NodeExecutionError as exc:
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (RecipeError, InputRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (RunCancelledError, KeyboardInterrupt):
        print("cancelled; no outputs were written", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:
        if os.environ.get("NODEGRAPH_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n  this is a bug in nodegraph; rerun with "
              "NODEGRAPH_DEBUG=1 to see the traceback and report it", file=sys.stderr)
        return EXIT_FAILED


def entry() -> None:
    """The console script: `main()`, then leave without tearing the interpreter down.

    Why: destroying torch's and transformers' modules object by object takes about a second (measured 1.1 s,
    5% of a 256 px SD run) and serves nothing once outputs are written and closed. Exit handlers still run
    and stdio is flushed; in-process callers of `main()` are unaffected.
    """
    import atexit

    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to save
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
