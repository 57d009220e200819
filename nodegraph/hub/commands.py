"""The sharing subcommands of `nodegraph`: upgrade, schema, pack (cli.py only registers them)."""

from __future__ import annotations

import pathlib
import sys

from nodegraph.hub.schema import cmd_schema  # noqa: F401  (registered by cli.py)

EXIT_INVALID = 2


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID


def cmd_upgrade(args) -> int:
    from nodegraph.hub.migrate import UpgradeError, upgrade_text, write_atomically
    from nodegraph.hub.resolve import is_hub_address
    from nodegraph.spec.errors import ValidationFailed
    from nodegraph.spec.limits import DEFAULT_LIMITS
    from nodegraph.spec.loader import loads_graph

    if is_hub_address(args.graph):
        return _fail(f"{args.graph}: upgrade rewrites a local file; download it first "
                     "(`hf download OWNER/REPO PATH.yaml --local-dir .`) and upgrade that copy")
    path = pathlib.Path(args.graph)
    try:
        if path.stat().st_size > DEFAULT_LIMITS.max_document_bytes:
            return _fail(f"{path} is larger than a graph file can be ({DEFAULT_LIMITS.max_document_bytes:,} bytes)")
        original = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"cannot read {path}: {exc}")
    try:
        result = upgrade_text(original)
    except UpgradeError as exc:
        return _fail(f"{path}: {exc}")
    if not result.changes:
        print(f"{path}: already up to date")
        return 0
    print(result.diff(original, str(path)), end="")
    for change in result.changes:
        print(f"  {change}", file=sys.stderr)
    if args.dry_run:
        print(f"{path}: {len(result.changes)} node(s) would be upgraded (dry run: file unchanged)")
        return 0
    try:  # never replace a graph with one that does not validate
        loads_graph(result.text, file=str(path), base_dir=path.resolve().parent)
    except ValidationFailed as exc:
        print(exc.report(), file=sys.stderr)
        return _fail(f"{path} was not changed: fix the problems above first")
    write_atomically(path, result.text)
    print(f"{path}: upgraded {len(result.changes)} node(s)")
    return 0


def cmd_pack(args) -> int:
    from nodegraph.hub.pack import PackError, pack

    try:
        written = pack(args.graph, args.dir, image=args.image, repo=args.repo)
    except PackError as exc:
        return _fail(str(exc))
    for path in written:
        print(path)
    print(f"upload it with: hf upload {args.repo} {args.dir} .", file=sys.stderr)
    return 0
