"""The `nodegraph serve` command: options, then uvicorn on the app (imported only when it runs)."""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys

TOKEN_ENV = "NODEGRAPH_TOKEN"
from nodegraph.serve.run_limits import RunLimits

UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def memory_size(text: str) -> int:
    """`8G`, `512M`, `1048576` -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 8G, 512M or a number of bytes")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def positive(kind, zero: bool = False):
    """An argparse type: a number of `kind` above 0 (or 0 too, with `zero`)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value >= 0 if zero else value > 0) or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0{' (or 0 for no limit)' if zero else ''}")
        return value

    return parse


def is_loopback(host: str) -> bool:
    """Whether `--host` keeps the server on this machine: localhost, 127.0.0.0/8 or ::1 (not 0.0.0.0 or ::)."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False


def default_data_dir() -> pathlib.Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return pathlib.Path(base) / "nodegraph" / "serve"


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="run the HTTP server: a persistent queue, live progress, cached re-runs",
                           description="Serve graphs over HTTP (see docs/server.md). Binds 127.0.0.1 unless "
                                       "--host says otherwise.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8188, help="default: 8188")
    serve.add_argument("--data", type=pathlib.Path, default=None, metavar="DIR",
                       help=f"queue database and outputs (default: {default_data_dir()})")
    serve.add_argument("--graphs", type=pathlib.Path, action="append", default=[], metavar="DIR",
                       help="folder of graphs runs may name (repeatable; default: the shipped graphs)")
    serve.add_argument("--models", type=pathlib.Path, action="append", default=[], metavar="DIR",
                       help="folder local models may be loaded from (repeatable; hub ids and builtin: always work)")
    serve.add_argument("--token", default=None,
                       help=f"require `Authorization: Bearer TOKEN` on every route (default: ${TOKEN_ENV} if set); "
                            "needed to bind beyond loopback")
    serve.add_argument("--insecure", action="store_true",
                       help="bind beyond loopback without a token: anyone who reaches the port may run graphs "
                            "(a warning is printed)")
    serve.add_argument("--allow-hub-graphs", action="store_true",
                       help="let documents name graphs on the Hub (`type: hf://…`); refused by default: a lookup "
                            "reaches the network on a stranger's behalf")
    serve.add_argument("--max-model-memory", type=memory_size, default=None, metavar="SIZE",
                       help="loaded models kept, least recently used dropped first (default: half the memory)")
    serve.add_argument("--max-cache-memory", type=memory_size, default=memory_size("1G"), metavar="SIZE",
                       help="node outputs kept for re-runs (default: 1G)")
    serve.add_argument("--max-request-bytes", type=memory_size, default=memory_size("2M"), metavar="SIZE",
                       help="largest request accepted (default: 2M)")
    serve.add_argument("--max-nodes", type=int, default=500, help="largest graph accepted (default: 500 nodes)")
    limits = RunLimits()
    serve.add_argument("--max-pixels", type=positive(int), default=limits.max_pixels, metavar="N",
                       help="largest image (width × height) a run may ask for "
                            f"(default: {limits.max_pixels:,}, 2048 × 1024)")
    serve.add_argument("--max-pixel-steps", type=positive(int), default=limits.max_pixel_steps, metavar="N",
                       help="largest image's pixels × steps in one run (default: "
                            f"{limits.max_pixel_steps:,}, 1024² × 150)")
    serve.add_argument("--max-batch", type=positive(int), default=limits.max_batch, metavar="N",
                       help=f"largest batch a run may ask for (default: {limits.max_batch})")
    serve.add_argument("--max-run-seconds", type=positive(float, zero=True), default=limits.max_run_seconds,
                       metavar="S", help="a run still going after this is stopped and failed (default: "
                                         f"{limits.max_run_seconds:g}; 0: no limit)")
    serve.add_argument("--lookup-workers", type=positive(int), default=4, metavar="N",
                       help="submissions checked at once, off the request handlers; more wait their turn "
                            "(default: 4)")
    serve.add_argument("--max-pending-lookups", type=positive(int), default=64, metavar="N",
                       help="submissions being checked or waiting to be; one more is a 503 at once (default: 64)")
    serve.add_argument("--lookup-seconds", type=positive(float), default=10.0, metavar="S",
                       help="how long POST /runs waits for a submission's check (a Hub lookup) before a 503 "
                            "(default: 10)")
    serve.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")
    serve.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="default: fp32")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from nodegraph.serve.app import create_app
        from nodegraph.serve.service import ServeConfig
    except ImportError as exc:
        print(f"error: the server needs the `serve` extra ({exc.name} is missing); "
              "install it with: pip install 'nodegraph[serve]'", file=sys.stderr)
        return 2
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host):
        if token is None and not args.insecure:
            print(f"error: --host {args.host} lets other machines reach the server, and it has no token: anyone "
                  f"could run graphs and free its memory; give --token TOKEN (or set ${TOKEN_ENV}), or "
                  "--insecure to serve without one anyway", file=sys.stderr)
            return 2
        if token is None:
            print(f"warning: --insecure: serving {args.host} without a token; anyone who reaches port {args.port} "
                  "may submit runs, cancel them and free the server's memory", file=sys.stderr, flush=True)
    for folder in [*args.graphs, *args.models]:
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 2
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        print(f"error: --data {args.data} exists and is not a folder", file=sys.stderr)
        return 2
    if args.device is not None:
        from nodegraph.core.context import resolve_device

        resolve_device(args.device)  # a bad --device fails now, not in the first run
    from nodegraph.exec.heap import reuse_freed_heap

    reuse_freed_heap()
    limits = RunLimits(args.max_pixels, args.max_pixel_steps, args.max_batch, args.max_run_seconds or None)
    config = ServeConfig(data=(args.data or default_data_dir()).resolve(), graphs=args.graphs, models=args.models,
                         token=token, max_request_bytes=args.max_request_bytes, max_nodes=args.max_nodes,
                         max_model_memory=args.max_model_memory, max_cache_memory=args.max_cache_memory,
                         device=args.device, dtype=args.dtype, allow_hub_graphs=args.allow_hub_graphs,
                         run_limits=limits, lookup_workers=args.lookup_workers, lookup_seconds=args.lookup_seconds,
                         max_pending_lookups=args.max_pending_lookups)
    app = create_app(config)
    print(f"nodegraph serve: http://{args.host}:{args.port} (data in {config.data}; API page /docs)",
          file=sys.stderr, flush=True)
    # open event streams never end by themselves: give them 5 s on shutdown, not forever
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
