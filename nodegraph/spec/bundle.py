"""A graph file and every file it includes, as one self-contained value (stored in PNG metadata).

Re-running from a bundle writes the files into a fresh folder with their relative layout and loads the main
one from there, so includes resolve exactly as they did; the files are data, never executed.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

BUNDLE_FORMAT = 1


class BundleError(ValueError):
    """A bundle that cannot be unpacked safely (missing parts, paths escaping its folder)."""


def bundle_graph(path: str | os.PathLike) -> dict[str, Any]:
    """{"format", "main", "files": {relative path: text}} for `path` and everything it includes."""
    from nodegraph.core.registry import REGISTRY
    from nodegraph.spec.loader import Includes, check_file

    main = pathlib.Path(path).resolve()
    includes = Includes(REGISTRY, allow_outside=True)  # the run already accepted these files
    check_file(main, REGISTRY, includes)
    files = [main, *(p for p, sub in includes.cache.items() if sub.source.hub is None)]  # hf://: by address
    root = pathlib.Path(os.path.commonpath([f.parent for f in files]))
    return {"format": BUNDLE_FORMAT, "main": main.relative_to(root).as_posix(),
            "files": {f.relative_to(root).as_posix(): f.read_text(encoding="utf-8") for f in files}}


def unbundle(bundle: Any, folder: str | os.PathLike) -> pathlib.Path:
    """Write a bundle's files under `folder`; return the main graph's path."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT \
            or not isinstance(bundle.get("files"), dict) or bundle.get("main") not in bundle["files"]:
        raise BundleError("the embedded graph is not a nodegraph bundle this version can read")
    folder = pathlib.Path(folder).resolve()
    for name, text in bundle["files"].items():
        target = (folder / name).resolve()
        if not isinstance(text, str) or folder not in target.parents:
            raise BundleError(f"the embedded graph names a file outside its folder: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder / bundle["main"]
