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


def _set_value(raw: str, ptype) -> Any:
    """Parse one `--set` value by the input's declared type (lists and Any: YAML, e.g. `[1, 2]`)."""
    import yaml

    if ptype.name == "int":
        return int(raw)
    if ptype.name == "float":
        return float(raw)
    if ptype.name == "bool":
        words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
        if raw.lower() not in words:
            raise ValueError("expected true or false")
        return words[raw.lower()]
    if ptype.name == "str":
        return raw
    if ptype.name in ("list", "Any"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML ({str(exc).splitlines()[0]})") from None
    raise ValueError(f"an input of type {ptype} cannot be given on the command line")


def parse_sets(graph, sets: list[str]) -> tuple[dict[str, Any], list]:
    """`NAME=VALUE` strings -> values by declared type, plus the problems found (all of them)."""
    from nodegraph.spec.errors import GraphError

    values: dict[str, Any] = {}
    issues: list[GraphError] = []
    for item in sets:
        name, eq, raw = item.partition("=")
        name = name.strip()
        if not eq or not name:
            issues.append(GraphError("bad_set", f"--set {item}", f"`--set {item}` is not NAME=VALUE",
                                     "e.g. `--set steps=20`", "<command line>"))
            continue
        ptype = graph.input_types.get(name)
        if ptype is None:
            values[name] = raw  # reported as an unknown input, with a did-you-mean, by the value check
            continue
        try:
            values[name] = _set_value(raw, ptype)
        except ValueError as exc:
            message = str(exc) if "command line" in str(exc) or "expected" in str(exc) else f"expected {ptype}"
            issues.append(GraphError("invalid_value", f"--set {name}", f"`--set {name}={raw}`: {message}",
                                     f"`{name}` is declared as {ptype}", "<command line>"))
    return values, issues


def _bind(graph, sets: list[str], require_all: bool, base: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Input values from `--set` over `base` (the values recorded in a PNG being re-run)."""
    from nodegraph.spec.values import bind_input_values

    values, issues = parse_sets(graph, sets)
    values = {**(base or {}), **values}
    return bind_input_values(graph.checked, values, origin="--set", require_all=require_all, issues=issues)


def _load_run_target(target: str, scratch: pathlib.Path, args=None):
    """GRAPH is a graph file, or a PNG written by `nodegraph run` (its embedded graph and input values)."""
    from nodegraph.spec.loader import load_graph

    allow = getattr(args, "allow_includes_outside", False)
    if not target.lower().endswith(".png"):
        return load_graph(target, allow_includes_outside=allow), None
    from nodegraph.exec.png_metadata import read_recipe
    from nodegraph.spec.bundle import unbundle

    recipe = read_recipe(target)
    pins = recipe.get("hub_pins") if isinstance(recipe.get("hub_pins"), dict) else None
    if str(recipe.get("source", "")).startswith("hf://"):  # a Hub graph, pinned to the commit that ran
        return load_graph(recipe["source"], hub_pins=pins), recipe["inputs"]
    main = unbundle(recipe["graph"], scratch)
    return load_graph(main, include_root=scratch, hub_pins=pins), recipe["inputs"]


def _inputs_feeding(graph, node_id: str, values: dict[str, Any]) -> str:
    """`name = value` of the graph inputs wired into a (top-level) node: what the user may need to change."""
    from nodegraph.spec.document import Ref

    spec = graph.spec.nodes.get(node_id.split("/")[0])
    if spec is None:
        return ""
    wired = spec.inputs if hasattr(spec, "inputs") else {}
    names = [v.name for v in wired.values() if isinstance(v, Ref) and v.scope == "inputs"]
    return ", ".join(f"{n} = {values.get(n)!r}" for n in names)


def _print_warnings(graph) -> None:
    for warning in graph.warnings:
        print(warning, file=sys.stderr)



def cmd_run(args) -> int:
    import tempfile

    if args.server:  # run on a `nodegraph serve` server instead (nodegraph/serve/remote.py)
        from nodegraph.serve.remote import run_remote

        return run_remote(args)
    from nodegraph.comfy.reader import is_comfy_file  # ComfyUI workflows (.json, ComfyUI PNGs): nodegraph/comfy/

    if is_comfy_file(args.graph):
        from nodegraph.comfy.command import run_workflow

        return run_workflow(args)

    with tempfile.TemporaryDirectory(prefix="nodegraph-") as scratch:
        return _run(args, pathlib.Path(scratch))


def _run(args, scratch: pathlib.Path) -> int:
    from nodegraph.exec import png_metadata
    from nodegraph.exec.executor import run_graph
    from nodegraph.exec.hooks import CancelToken, LogHook, ProgressHook, cancel_on_ctrl_c
    from nodegraph.exec.steps import NodeExecutionError
    from nodegraph.exec.writers import OutputInfo, summarize, writer_for

    png_metadata.install()
    if not args.no_heap_reuse:
        from nodegraph.exec.heap import reuse_freed_heap

        reuse_freed_heap()
    graph, recorded = _load_run_target(args.graph, scratch, args)
    fast = args.fast or png_metadata.recorded_fast(args.graph)  # a PNG made in fast mode re-runs in fast mode
    _print_warnings(graph)
    values = _bind(graph, args.set, require_all=True, base=recorded)
    out_dir = pathlib.Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"error: --out {args.out} exists and is not a folder", file=sys.stderr)
        return EXIT_INVALID
    if not args.no_prefetch:  # the disk reads the weights ahead of the loaders (nodegraph/exec/prefetch.py)
        from nodegraph.exec.prefetch import start_prefetch

        start_prefetch(graph, values)
    cancel = CancelToken()
    hooks = [ProgressHook(disable=True if args.quiet else None)] + ([LogHook()] if args.verbose else [])
    with cancel_on_ctrl_c(cancel):
        try:
            from nodegraph.exec.run_scoped import RunScopedComponents  # one run: free each model after its last use

            outputs = run_graph(graph, values, device=args.device, dtype=args.dtype, hooks=hooks, cancel=cancel,
                                components=RunScopedComponents(), fast=fast)
        except NodeExecutionError as exc:
            exc.fed_by = _inputs_feeding(graph, exc.node_id, values)
            raise
        if cancel.cancelled:
            raise KeyboardInterrupt
        report: dict[str, Any] = {}
        for name, value in outputs.items():
            ptype = graph.output_types[name]
            writer = writer_for(ptype, value)
            if writer is None:
                report[name] = summarize(value)
                continue
            out_dir.mkdir(parents=True, exist_ok=True)
            info = OutputInfo(name, ptype, graph, values, args.device, args.dtype, fast=fast)
            report[name] = [str(p) for p in writer.write(value, out_dir, info)]
    print(json.dumps(report, indent=2, default=repr))
    return 0


def cmd_validate(args) -> int:
    from nodegraph.spec.loader import load_graph

    graph = load_graph(args.graph, allow_includes_outside=args.allow_includes_outside)
    _bind(graph, args.set, require_all=False)
    _print_warnings(graph)
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
    from nodegraph.spec.loader import load_graph
    from nodegraph.spec.mermaid import to_mermaid

    print(to_mermaid(load_graph(args.graph, allow_includes_outside=args.allow_includes_outside).checked), end="")
    return 0


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
    run.add_argument("graph", metavar="GRAPH", help="a graph file, or a PNG written by `nodegraph run` to re-run")
    run.add_argument("--set", **sets)
    run.add_argument("--out", default="out", metavar="DIR", help="folder for image outputs (default: out)")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda when present)")
    run.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="default: fp32")
    run.add_argument("--fast", action="store_true", help="fast mode: faster kernels; in fp32 the image within 2/255 of "
                     "the default (bit-equal to diffusers) one, in bf16 as close to fp32 as the default bf16 image; "
                     "recorded in the PNG (docs/performance.md)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.add_argument("--no-heap-reuse", action="store_true",
                     help="leave the C allocator's defaults (by default freed tensor memory is kept for reuse, "
                          "which avoids page faults on every CPU step)")
    run.add_argument("--no-prefetch", action="store_true",
                     help="do not read the model files into the page cache ahead of their loaders (by default a "
                          "process reads those not yet cached, once torch is imported; see docs/performance.md)")
    run.add_argument("-v", "--verbose", action="store_true", help="log every node as it starts and ends")
    run.add_argument("--server", default=None, metavar="URL", help="run on a `nodegraph serve` server")
    run.add_argument("--token", default=None, help="the server's token (default: $NODEGRAPH_TOKEN)")
    run.add_argument("--allow-includes-outside", **outside)
    from nodegraph.comfy import command as comfy  # ComfyUI workflows: run options and import-comfy (nodegraph/comfy)

    comfy.add_run_options(run)
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check a graph (and --set values) without running it")
    validate.add_argument("graph", metavar="GRAPH")
    validate.add_argument("--set", **sets)
    validate.add_argument("--allow-includes-outside", **outside)
    validate.set_defaults(func=cmd_validate)

    nodes = sub.add_parser("nodes", help="list node types with their ports, parameters and help")
    nodes.add_argument("names", nargs="*", metavar="NAME", help="only these types")
    nodes.set_defaults(func=cmd_nodes)

    show = sub.add_parser("show", help="print the graph as Mermaid flowchart text")
    show.add_argument("graph", metavar="GRAPH")
    show.add_argument("--allow-includes-outside", **outside)
    show.set_defaults(func=cmd_show)

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
    from nodegraph.spec.bundle import BundleError
    from nodegraph.spec.errors import ValidationFailed

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
        fed_by = getattr(exc, "fed_by", "")
        print(f"error: {exc}" + (f"\n  the node's graph inputs: {fed_by}" if fed_by else ""), file=sys.stderr)
        return EXIT_FAILED
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (RecipeError, BundleError) as exc:
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
