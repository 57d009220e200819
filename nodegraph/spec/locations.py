"""One rule for every text that names a location: a local path, a Hub address's path, a revision, a pin.

A location written by a stranger (a graph file, a PNG recipe, a server request) is checked here, in its final
form: percent-escapes are decoded first, then the decoded text is validated, then a local path is resolved
(symlinks followed) and must lie inside one of its allowed roots. Nothing outside is opened, and no message
quotes a file's content or a path outside those roots.

- A revision is a branch or tag name (git's ref-name rules: no `..`, no component starting with `.`, no
  leading, trailing or doubled `/`, no control characters, no `\\ ~ ^ : ? * [ % @{`) or a 40-hex commit.
  huggingface_hub looks a branch up as the file `refs/<revision>` of its cache, so these rules keep that
  lookup inside `refs/`.
- A pin (the commit a PNG recipe recorded) is a 40-hex commit and nothing else.
- A path inside a repo is relative, `/`-separated, without `.`, `..` or empty components.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Iterable, Optional
from urllib.parse import unquote

from nodegraph.spec.limits import InputRefused

COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\~^:?*\[%]|@\{|\.\.|//")
MAX_LOCATION_CHARS = 1024


class LocationError(InputRefused):
    """A location that breaks the rule; `code`, `message` and `hint` become a located error or an HTTP 422."""


def shown(text: str, limit: int = 80) -> str:
    """`text` safe to quote in a message: control characters escaped, long text cut."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]",
                  lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def decoded(text: str) -> str:
    """`text` with percent-escapes decoded once; a text still holding an escape after that is refused (no
    double encoding hides a `/` or a `..`)."""
    if len(text) > MAX_LOCATION_CHARS:
        raise LocationError("invalid_location", f"a location of {len(text):,} characters is too long",
                            f"at most {MAX_LOCATION_CHARS} characters")
    result = unquote(text, errors="strict") if "%" in text else text
    if re.search(r"%[0-9A-Fa-f]{2}", result):
        raise LocationError("invalid_location", f"`{shown(text)}` is percent-encoded twice",
                            "write each character once, encoded at most once")
    return result


def check_revision(text: str) -> str:
    """The decoded revision, if it is a branch or tag name or a commit hash; else LocationError."""
    if not isinstance(text, str) or not text:
        raise LocationError("invalid_revision", "a revision must be a non-empty text",
                            "name a branch, a tag or a 40-hex commit hash")
    value = decoded(text)
    parts = value.split("/")
    bad = (COMMIT.match(value) is None and (
        _REF_FORBIDDEN.search(value) or value.startswith("/") or value.endswith(("/", ".", ".lock"))
        or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts) or value == "@"))
    if bad:
        raise LocationError("invalid_revision", f"`{shown(text)}` is not a branch, tag or commit",
                            "a revision is a branch or tag name (letters, digits, `-`, `_`, `.`, `/` between "
                            "names; no `..`) or a 40-hex commit hash")
    return value


def check_commit(text) -> str:
    """A pin: exactly 40 lowercase hex digits."""
    if not isinstance(text, str) or not COMMIT.match(text):
        raise LocationError("invalid_pin", f"`{shown(str(text))}` is not a commit hash",
                            "a pin is the 40-hex commit a graph was read at")
    return text


def check_repo_path(text: str) -> str:
    """A file's path inside a repo (decoded): relative, `/`-separated, no `.`/`..`/empty parts, no control
    characters or backslashes."""
    value = decoded(text)
    parts = value.split("/")
    if (not value or value.startswith("/") or re.search(r"[\x00-\x1f\x7f\\]", value)
            or any(p in ("", ".", "..") for p in parts) or re.match(r"^[A-Za-z]:", value)):
        raise LocationError("invalid_location", f"`{shown(text)}` is not a path inside a repo",
                            "write the path from the repo's root, e.g. graphs/sd.yaml")
    return value


def inside(path: pathlib.Path, roots: Iterable[pathlib.Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def confine(text: str, base: pathlib.Path, roots: Optional[Iterable[pathlib.Path]], what: str = "path",
            hint: str = "") -> pathlib.Path:
    """`text` (relative to `base`) resolved, symlinks followed; LocationError unless inside one of `roots`
    (None: anywhere, for a user who allowed it). The error names the path as written (escaped), never where
    it resolved to, and says nothing of whether it exists."""
    if not isinstance(text, str) or not text or "\x00" in text or len(text) > MAX_LOCATION_CHARS:
        raise LocationError("invalid_location", f"`{shown(str(text))}` is not a {what} (empty, too long or "
                            "holding a NUL byte)", hint)
    try:
        target = (base / os.path.expanduser(text) if text.startswith("~") else base / text).resolve()
    except (OSError, RuntimeError, ValueError):  # a name too long for the file system, a symlink loop
        raise LocationError("invalid_location", f"`{shown(text)}` is not a usable {what}", hint) from None
    if roots is not None and not inside(target, [pathlib.Path(r).resolve() for r in roots]):
        raise LocationError("location_outside", f"`{shown(text)}` points outside the folders this {what} may "
                            "use", hint)
    return target


def is_file(path: pathlib.Path) -> bool:
    """Path.is_file, False also for a name the file system refuses (too long)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def summarise(exc: BaseException, what: str) -> str:
    """A library's error said without its text (which may quote a path or a file's content): its kind only."""
    reason: Optional[str] = getattr(exc, "strerror", None) if isinstance(exc, OSError) else None
    return f"{what} failed ({type(exc).__name__}{': ' + reason.lower() if reason else ''})"


HUB_POLICIES = ("any", "pinned", "none")
"""Who may name a Hub graph inside a graph (`type: hf://…`), like the include rule for local files:
"any" — a graph the user runs directly; "pinned" — a PNG recipe: only the commits the recipe recorded
(its `hub_pins`, or an address @<40-hex commit>); "none" — a document from the network (the server) unless
its operator allows Hub graphs."""


def check_hub_reference(policy: str, written: str, revision: Optional[str], pin: Optional[object]) -> None:
    """LocationError unless `policy` lets a graph name the Hub graph `written` (its revision, its recorded pin)."""
    if pin is not None:
        check_commit(pin)
    if policy == "any":
        return
    if policy == "none":
        raise LocationError("hub_refused", f"`{shown(written)}`: graphs from this source may not read graphs "
                            "from the Hub", "the operator allows it (nodegraph serve --allow-hub-graphs)")
    if policy != "pinned":
        raise ValueError(f"unknown Hub policy {policy!r}; one of {HUB_POLICIES}")
    if pin is None and not (isinstance(revision, str) and COMMIT.match(revision)):
        raise LocationError("hub_refused", f"`{shown(written)}`: a recipe may read a Hub graph only at the commit "
                            "it recorded", "re-run the graph file itself, or pass --allow-includes-outside to "
                            "let this recipe read the Hub")
