"""`requires:` — what a graph needs installed: node packages with version ranges, and nodegraph itself.

```yaml
requires:
  - nodegraph>=0.1
  - nodegraph-blur>=1.2,<2     # a package that adds node types through the `nodegraph.nodes` entry points
```
Each item is a PEP 508 requirement (parsed by `packaging`, the library pip uses). Unmet requirements are
reported, with the pip command that fixes them, before any node type is looked up: a missing plugin is
then one clear error instead of an "unknown node type" for each of its nodes.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from nodegraph.spec.errors import Reporter

PATH = ("requires",)


def installed_version(name: str) -> str | None:
    from packaging.utils import canonicalize_name

    if canonicalize_name(name) == "nodegraph":
        from nodegraph import __version__

        return __version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def parse_requires(raw: Any, r: Reporter) -> list[str]:
    """The requirement strings of a `requires:` value, reporting any that is not a PEP 508 requirement."""
    from packaging.requirements import InvalidRequirement, Requirement

    if raw is None:
        return []
    if not isinstance(raw, list):
        r.error("invalid_field", PATH, f"`requires` is a list of requirements, got {raw!r}",
                "write e.g. `requires: [nodegraph>=0.1, nodegraph-blur>=1.2]`")
        return []
    found = []
    for i, item in enumerate(raw):
        try:
            Requirement(item) if isinstance(item, str) else Requirement("")
        except InvalidRequirement as exc:
            r.error("invalid_requirement", PATH + (i,), f"{item!r} is not a requirement: {exc}",
                    "write a package name and an optional version range, e.g. `nodegraph-blur>=1.2,<2`")
            continue
        found.append(item)
    return found


def check_requires(requires: list[str], r: Reporter) -> bool:
    """Report every requirement that the installed packages do not meet; True when all are met."""
    from packaging.requirements import Requirement

    met = True
    for i, text in enumerate(requires):
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue  # e.g. `; sys_platform == "darwin"` on another platform
        have = installed_version(req.name)
        if have is None:
            r.error("missing_requirement", PATH + (i,), f"this graph needs `{text}`, which is not installed",
                    f"install it: pip install '{text}'")
            met = False
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            r.error("requirement_not_met", PATH + (i,), f"this graph needs `{text}`; {req.name} {have} is installed",
                    f"install a matching version: pip install '{text}'")
            met = False
    return met
