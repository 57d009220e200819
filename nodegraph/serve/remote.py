"""`nodegraph run --server URL GRAPH`: the same command, run by a server, with the same progress bars.

GRAPH is a local graph file (sent with its includes), a PNG written by nodegraph (its embedded graph and
inputs), or the name of a graph the server knows. `--set` values are typed by the graph's declared inputs;
outputs are downloaded into `--out` under free names (never overwriting). Ctrl-C cancels the run on the
server. `--fast` asks for fast mode, as a PNG made in fast mode does. Exit codes are `nodegraph run`'s.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
from typing import Any

EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED = 1, 2, 130


class _Declared:
    """A port type by name, as GET /graphs reports it (what `--set` parsing needs)."""

    def __init__(self, name: str):
        self.name = name.split("[")[0] if name.startswith("list") else name

    def __str__(self) -> str:
        return self.name


def _target(client, target: str, sets: list[str]) -> tuple[dict, dict, bool]:
    """(graph payload, input values, recorded fast mode) for GRAPH and its `--set`s; ValidationFailed for bad
    values. A PNG is read once (nodegraph.runner.open_target)."""
    from nodegraph.spec.errors import ValidationFailed
    from nodegraph.spec.values import parse_sets

    base: dict[str, Any] = {}
    fast = False
    if target.lower().endswith(".png") and os.path.isfile(target):
        from nodegraph.runner import open_target

        with tempfile.TemporaryDirectory(prefix="nodegraph-") as scratch:
            opened = open_target(target, scratch)
            types = opened.graph.input_types
        payload, base, fast = {"document": opened.recipe["graph"]}, dict(opened.recorded), opened.recorded_fast
    elif os.path.isfile(target):
        from nodegraph.client import graph_payload
        from nodegraph.spec.loader import load_graph

        types = load_graph(target).input_types
        payload = graph_payload(target)
    else:
        known = {g["name"]: g for g in client.graphs()}
        if target not in known:
            raise ValidationFailed([_problem("unknown_graph", f"`{target}` is neither a graph file nor a graph "
                                             f"on the server", f"server graphs: {', '.join(known) or 'none'}")])
        types = {name: _Declared(item["type"]) for name, item in known[target]["inputs"].items()}
        payload = {"graph": target}

    class View:
        input_types = types

    values, issues = parse_sets(View, sets)
    if issues:
        raise ValidationFailed(issues, "<command line>")
    return payload, {**base, **values}, fast


def _problem(code: str, message: str, hint: str):
    from nodegraph.spec.errors import GraphError

    return GraphError(code, "", message, hint, "<command line>")


def run_remote(args) -> int:
    import signal

    from nodegraph.client import Client, ServerError
    from nodegraph.exec import events as ev
    from nodegraph.exec.hooks import ProgressHook

    client = Client(args.server, token=args.token)
    try:
        payload, inputs, recorded_fast = _target(client, args.graph, args.set)
        body = {**payload, "inputs": inputs}
        if args.fast or recorded_fast:  # a PNG made in fast mode re-runs in fast mode
            body["fast"] = True
        if getattr(args, "weights", None) not in (None, "file"):  # `--weights fp8`: the server holds it as float8
            body["weights"] = args.weights
        try:
            run_id = client.request("POST", "/runs", json=body)["id"]
        except ServerError as exc:
            print(exc if exc.status != 0 else f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID if exc.status in (400, 404, 413, 422) else EXIT_FAILED
        from nodegraph.client import RunHandle

        handle = RunHandle(client, run_id)
        bars = ProgressHook(disable=True if args.quiet else None)
        seen: set[str] = set()

        def on_sigint(signum, frame):
            print("\ncancelling the run on the server", file=sys.stderr, flush=True)
            try:
                handle.cancel()
            except ServerError:
                pass

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            for event in handle.events():
                kind = event["type"]
                if kind == "progress":
                    node, total = event["node"], event["total"]
                    if node not in seen:
                        seen.add(node)
                        bars(ev.RepeatStarted(node, total))
                    bars(ev.RepeatIteration(node, event["index"] - 1, total))
                    if event["index"] == total:
                        seen.discard(node)
                        bars(ev.RepeatFinished(node, total))
                elif args.verbose and kind == "node_started":
                    print(f"started {event['node']} ({event['node_type']})", file=sys.stderr, flush=True)
                elif args.verbose and kind == "node_finished":
                    how = "from the cache" if event["cached"] else f"in {event['seconds']:.3f}s"
                    print(f"finished {event['node']} {how}", file=sys.stderr, flush=True)
            bars(ev.RunFinished("", 0.0, {}))
        finally:
            signal.signal(signal.SIGINT, previous)
        run = handle.status()
        if run["status"] == "cancelled":
            print("cancelled; no outputs were written", file=sys.stderr)
            return EXIT_CANCELLED
        if run["status"] != "finished":
            print(f"error: {run['error']}", file=sys.stderr)
            return EXIT_FAILED
        print(json.dumps(_download(client, run["outputs"], pathlib.Path(args.out)), indent=2))
        return 0
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()


def _download(client, outputs: dict, out_dir: pathlib.Path) -> dict:
    from nodegraph.exec.writers import OutputError, free_names, write_atomic

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} exists and is not a folder")
    report: dict[str, Any] = {}
    for name, files in outputs.items():
        if not isinstance(files, list):
            report[name] = files.get("value") if isinstance(files, dict) else files
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        contents = [client.download(item["url"]) for item in files]
        paths = free_names(out_dir, name, len(contents), ".png")
        for path, data in zip(paths, contents):
            write_atomic(path, lambda f, data=data: f.write(data))
        report[name] = [str(p) for p in paths]
    return report
