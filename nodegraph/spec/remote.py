"""Graph files named by an address instead of a path (`hf://OWNER/REPO@REV/PATH.yaml`).

spec/ imports nothing above it, so it does not know the Hub: the layer that does (nodegraph/hub/graphs.py)
registers a resolver here when `nodegraph` is imported, and the loader asks it through the functions below.
A resolver is any object with
  is_address(text) -> bool            whether `text` is one of its addresses
  parse(text) -> address              the parsed address (RemoteError when malformed)
  at(address, revision) -> address    the same file at another revision
  sibling(file, relative) -> address  a file next to a fetched one, same repo and commit (RemoteError outside)
  fetch(address) -> file              a fetched file: `.local_path`, `.address`, `.pinned`, `.commit`
and raises `RemoteError` (code, message, hint), which the loader turns into a located GraphError.
"""

from __future__ import annotations

from typing import Any


class RemoteError(Exception):
    """An address that cannot be read; `code`, `message` and `hint` become a located GraphError."""

    def __init__(self, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


_RESOLVERS: list[Any] = []


def register_resolver(resolver: Any) -> None:
    """Let the loader read the addresses `resolver` knows (registering the same object twice is a no-op)."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)


def resolver_for(text: Any) -> Any:
    """The registered resolver whose address `text` is, or None (then `text` is a local path)."""
    if not isinstance(text, str):
        return None
    return next((r for r in _RESOLVERS if r.is_address(text)), None)


def is_address(text: Any) -> bool:
    return resolver_for(text) is not None


def parse(text: str) -> Any:
    return _resolver(text).parse(text)


def at(address: Any, revision: str) -> Any:
    return _resolver(str(address)).at(address, revision)


def sibling(file: Any, relative: str) -> Any:
    return _resolver(str(file.address)).sibling(file, relative)


def fetch(address: Any) -> Any:
    return _resolver(str(address)).fetch(address)


def _resolver(text: str) -> Any:
    found = resolver_for(text)
    if found is None:
        raise RemoteError("unknown_address", f"`{text}` is not an address this installation can read",
                          "give a local graph file")
    return found
