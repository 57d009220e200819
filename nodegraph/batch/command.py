"""`nodegraph batch`: the command line of `execute_batch` (registered by nodegraph/cli.py).

Exit codes as for `nodegraph run`: 0 every item done, 1 some item failed, 2 invalid graph / values / usage
(nothing ran), 130 cancelled (finished items are kept; the same command resumes).
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED = 1, 2, 130


def add_batch_parser(sub, sets: dict) -> None:
    batch = sub.add_parser("batch", help="run a graph over a grid of inputs, writing PNGs and manifest.jsonl",
                           description="Run GRAPH once per item of the grid (the product of the --grid axes, "
                                       "or with --zip their zip). Re-running the same command resumes.")
    batch.add_argument("graph", metavar="GRAPH", help="a graph file")
    batch.add_argument("--out", required=True, metavar="DIR", help="folder for the images and manifest.jsonl")
    batch.add_argument("--set", **sets)
    batch.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                       help="an axis of the grid (repeatable): v1,v2,... (escape a comma as \\,), "
                            "A..B (integers, both included) or @FILE (one value a line)")
    batch.add_argument("--zip", action="store_true", help="pair the axes' values in order instead of taking "
                                                          "every combination (axes of one length)")
    batch.add_argument("--repeat", type=int, default=1, metavar="N",
                       help="N items per grid point, the seed advanced by one each")
    batch.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                       help="run on Ray: alone, a new local cluster; ADDRESS (host:port, or auto) an existing one")
    batch.add_argument("--workers", type=int, default=None, metavar="N",
                       help="Ray actors (default: one per GPU, else one per CPU of the cluster)")
    batch.add_argument("--retries", type=int, default=2, metavar="N",
                       help="with --ray, how often an item whose worker died is run again (default 2)")
    batch.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda when present)")
    batch.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="default: fp32")
    batch.add_argument("--fast", action="store_true", help="fast mode for every item, as `nodegraph run --fast`: "
                       "faster kernels instead of bit-equal images (docs/performance.md); recorded in each PNG")
    batch.add_argument("--weights", default=None, choices=["fp8", "fp8_e4m3fn", "fp8_e5m2"],
                       help="every item with the UNet / transformer held as float8, as `nodegraph run --weights` "
                            "(docs/memory.md); recorded in each PNG and the manifest")
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    batch.add_argument("--no-heap-reuse", action="store_true", help="as for `nodegraph run`")
    batch.set_defaults(func=cmd_batch)


def _converter(graph):
    """Text → value by the input's declared type, by the same rules as `--set`."""
    from nodegraph.spec.values import parse_set_value

    def convert(name: str, raw: str):
        ptype = graph.input_types.get(name)
        if ptype is None:
            return raw  # reported as an unknown input by the planner
        try:
            return parse_set_value(raw, ptype)
        except ValueError as exc:
            text = str(exc)
            raise ValueError(text if "command line" in text or "expected" in text else f"expected {ptype}") from None

    return convert


def cmd_batch(args) -> int:
    from nodegraph.batch.grid import GridError, parse_grid_option, plan_items
    from nodegraph.batch.manifest import ManifestError
    from nodegraph.batch.ray_runner import RayBatchError
    from nodegraph.batch.run import execute_batch
    from nodegraph.spec.values import parse_sets
    from nodegraph.exec.hooks import CancelToken, RunCancelledError
    from nodegraph.spec.errors import ValidationFailed
    from nodegraph.spec.loader import load_graph

    if args.workers is not None and not args.ray:
        return _invalid("`--workers` chooses the number of Ray actors; add `--ray`")
    from nodegraph.runner import prepare_process
    from nodegraph.shipped_graphs import shipped_graph

    prepare_process(heap_reuse=not args.no_heap_reuse)  # as `nodegraph run`: before anything is loaded
    graph = load_graph(shipped_graph(args.graph) or args.graph)
    for warning in graph.warnings:
        print(warning, file=sys.stderr)
    values, set_issues = parse_sets(graph, args.set)
    try:
        axes = [parse_grid_option(text, _converter(graph), cwd=os.getcwd()) for text in args.grid]
    except GridError as exc:
        return _invalid(str(exc))
    cancel = CancelToken()

    def on_sigint(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\ncancelling at the next step (Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint) if not args.ray else None
    try:
        if set_issues:  # with the planner's problems, so that one report lists them all
            try:
                plan_items(graph, axes, values, zip_axes=args.zip, repeat=args.repeat, set_origin="--set")
            except ValidationFailed as exc:
                raise ValidationFailed(set_issues + exc.issues, graph.file) from None
            raise ValidationFailed(set_issues, graph.file)
        outcome = execute_batch(graph, axes, out=args.out, sets=values, zip_axes=args.zip, repeat=args.repeat,
                                ray=args.ray, workers=args.workers, retries=args.retries, device=args.device,
                                dtype=args.dtype, fast=args.fast, progress=not args.quiet, cancel=cancel,
                                set_origin="--set", weights=args.weights)
    except (GridError, ManifestError, RayBatchError) as exc:
        return _invalid(str(exc))
    except (RunCancelledError, KeyboardInterrupt):
        print(f"cancelled; items that had finished are kept in {args.out} (see manifest.jsonl); run the same "
              "command again to resume", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    for row in outcome.failures:
        print(f"item {row['item']} failed: {row['error']}", file=sys.stderr)
    print(outcome.summary())
    return EXIT_FAILED if outcome.failed else 0


def _invalid(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID
