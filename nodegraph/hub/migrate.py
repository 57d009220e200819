"""`nodegraph upgrade GRAPH`: rewrite a graph file for the installed versions of its node types.

Each node written for an older version (pinned `Blur@1`, or unpinned with the old input names) gets the
migrations its node type declares (core/migration.py) applied to the file itself. ruamel.yaml's round-trip
mode keeps comments, key order, quoting and flow/block style, so the diff shows only what the migrations
changed. Included files are separate documents: upgrade each one.
"""

from __future__ import annotations

import difflib
import io
import os
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional

from nodegraph.core.registry import Registry, UnknownNodeType


class UpgradeError(ValueError):
    """The file cannot be upgraded automatically (unreadable, or a migration needs a human)."""


@dataclass
class Upgrade:
    text: str  # the upgraded document (the original text when nothing changed)
    changes: list[str] = field(default_factory=list)  # one line per migrated node

    def diff(self, original: str, name: str) -> str:
        return "".join(difflib.unified_diff(original.splitlines(True), self.text.splitlines(True),
                                            f"{name} (before)", f"{name} (upgraded)"))


def _yaml(text: str):
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the author wrote
    _, indent, block_seq_indent = load_yaml_guess_indent(text)
    offset = block_seq_indent or 0
    yaml.indent(mapping=indent or 2, sequence=(indent or 2) + offset, offset=offset)
    return yaml


def _rename(mapping, old: str, new: str) -> None:
    """Rename a key in place: same position, same comment."""
    position = list(mapping).index(old)
    comment = mapping.ca.items.pop(old, None)
    value = mapping.pop(old)
    mapping.insert(position, new, value)
    if comment is not None:
        mapping.ca.items[new] = comment


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$") and not value.startswith("$$")


def _upgrade_node(node_id: str, node, registry: Registry, changes: list[str]) -> None:
    node_type = node.get("type")
    if not isinstance(node_type, str) or node_type == "repeat" or "/" in node_type or node_type.endswith(
            (".yaml", ".yml")):
        return
    try:
        info, migrations = registry.resolve(node_type, [k for k in node if k != "type"])
    except UnknownNodeType:
        return  # validation reports it; upgrading leaves what it does not understand alone
    for migration in migrations:
        for name in migration.remove:
            if name in node:
                node.ca.items.pop(name, None)
                del node[name]
        for old, new in migration.rename.items():
            if old in node:
                _rename(node, old, new)
        written_as = {new: old for old, new in migration.rename.items()}
        for name, convert in migration.convert.items():
            if name in node:
                if _is_reference(node[name]):
                    raise UpgradeError(f"node `{node_id}`: `{written_as.get(name, name)}` is connected to "
                                       f"`{node[name]}`, but "
                                       f"{info.name}@{migration.to_version} takes it converted "
                                       f"({migration.describe()}); change it by hand")
                node[name] = convert(node[name])
    if migrations:
        if "@" in node_type:
            node["type"] = f"{info.name}@{info.version}"
        changes.append(f"{node_id}: {info.name}@{migrations[0].from_version} -> {info.label} "
                       f"({'; '.join(m.describe() for m in migrations)})")


def _walk(nodes, registry: Registry, changes: list[str]) -> None:
    if not hasattr(nodes, "items"):
        return
    for node_id, node in nodes.items():
        if not hasattr(node, "get"):
            continue
        if node.get("type") == "repeat":
            _walk(node.get("nodes"), registry, changes)
        else:
            _upgrade_node(node_id, node, registry, changes)


def upgrade_text(text: str, registry: Optional[Registry] = None) -> Upgrade:
    """The document with every node migrated to the installed version of its type."""
    from ruamel.yaml.error import YAMLError

    from nodegraph.core.registry import REGISTRY

    registry = registry or REGISTRY
    yaml = _yaml(text)
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        raise UpgradeError(f"not readable YAML: {exc}") from None
    changes: list[str] = []
    if hasattr(data, "get"):
        _walk(data.get("nodes"), registry, changes)
    if not changes:
        return Upgrade(text)
    out = io.StringIO()
    yaml.dump(data, out)
    return Upgrade(out.getvalue(), changes)


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Write `path` in one step (never a half-written file), keeping the permission bits of the file it
    replaces (a new file gets the user's umask, like any other output)."""
    from nodegraph.exec.writers import _umask

    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
