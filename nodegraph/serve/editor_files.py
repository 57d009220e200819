"""The page's node editor on the server side: open a graph file, validate a document as it is edited, render
it to YAML and save it.

Saving is a round trip through ruamel.yaml, as `nodegraph upgrade` does (hub/migrate.py): the file on disk is
loaded with its comments and formatting, the edited document is merged into it key by key (a value equal to the
one on disk keeps its node, so its comment, quoting and flow/block style), and only what changed is written. The
rules:
* a graph is written only inside a `--graphs` folder the operator named, never into the shipped graphs of the
  package (or of the checkout), never outside its folder; a new graph goes into the first named folder;
* a file changed on disk since the editor opened it (its sha256, the `stamp`) is not overwritten unless the user
  said so (`overwrite`); the check and the write hold the name's lock, so two saves from one stamp (the routes
  run in a thread pool) give one save and one 409, never a lost update;
* a document (or layout) nesting deeper than the spec's `max_depth` (spec/limits.py) is refused before anything
  walks it: merging, rendering and validating recurse, and a few hundred levels would overflow the stack;
* a document that does not validate is refused, or saved as a draft in `<data>/drafts/` (never among the
  graphs, so nothing runs it) with its errors;
* node positions live in a sidecar, `<data>/layouts/<name>.json`, never in the YAML: dragging a node must not
  change the reviewed file, and the loader needs no key to ignore (docs/server.md says why).
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import re
import threading
from typing import Any, Optional

from nodegraph.serve.documents import Rejected, reject
from nodegraph.spec.errors import GraphError, ValidationFailed

NEW_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
TOP_ORDER = ("nodegraph", "description", "inputs", "nodes", "outputs")


def stamp_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


FLATTEN = "a graph needs only a few levels; flatten the structure"


def too_deep(path: str, what: str, hint: str = FLATTEN) -> Rejected:
    from nodegraph.spec.limits import active_limits

    return reject("too_deep", path, f"{what} nests more than {active_limits().max_depth} levels deep", hint)


def refuse_deep(value: Any, path: str, what: str = "", hint: str = FLATTEN) -> None:
    """Refuse `value` (a request's `document` or `layout`, or a file's structure) when it nests deeper than the
    spec's `max_depth`, walking it with a stack of its own (no recursion). Levels count as the YAML loader counts
    them (spec/yaml_io.py): the top mapping is level 1 and each value sits one level below its container, so a
    document this lets through cannot be refused as too deep once rendered."""
    from nodegraph.spec.limits import active_limits

    limit = active_limits().max_depth
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if level > limit:
            raise too_deep(path, what or f"the `{path}`", hint)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, level + 1) for child in children)


def plain(value: Any) -> Any:
    """ruamel's commented containers and scalars as plain JSON-able values (key order kept)."""
    if hasattr(value, "items"):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":
        return None if value is None else bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _same(old: Any, new: Any) -> bool:
    """Equal as the editor sees them: numbers by value (a browser cannot tell 0 from 0.0), true is not 1."""
    old = plain(old)
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool) and old == new
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return old == new
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new))
    if isinstance(old, dict) and isinstance(new, dict):
        return list(old) == list(new) and all(_same(old[k], new[k]) for k in new)
    return type(old) is type(new) and old == new


def merge(old, new: dict) -> None:
    """Make the ruamel mapping `old` equal to `new` in place, touching only what differs: removed keys go
    (with their comments), changed values are replaced in their place, new keys follow the key before them."""
    for key in [k for k in old if k not in new]:
        old.ca.items.pop(key, None)
        del old[key]
    previous = None
    for key, value in new.items():
        if key in old:
            if hasattr(old[key], "items") and isinstance(value, dict) and not _same(old[key], value):
                merge(old[key], value)
            elif not _same(old[key], value):
                old[key] = value
        else:
            position = list(old).index(previous) + 1 if previous is not None else 0
            old.insert(position, key, value)
        previous = key


def render(document: dict, original: Optional[str]) -> str:
    """The YAML text of `document`: the original file's text with the edits merged in when there is one."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from nodegraph.hub.migrate import _yaml

    if original is not None:
        yaml = _yaml(original)
        try:
            data = yaml.load(original)
        except YAMLError:
            data = None
        if hasattr(data, "items"):
            merge(data, document)
            out = io.StringIO()
            yaml.dump(data, out)
            return out.getvalue()
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    ordered = {k: document[k] for k in TOP_ORDER if k in document}
    ordered.update({k: v for k, v in document.items() if k not in ordered})
    out = io.StringIO()
    yaml.dump(ordered, out)
    return out.getvalue()


class EditorFiles:
    """Opens, validates, renders and saves graphs for the editor, under the server's folder rules."""

    def __init__(self, documents, data_dir: pathlib.Path):
        self.documents = documents
        self.drafts = data_dir / "drafts"
        self.layouts = data_dir / "layouts"
        self._locks: dict[str, threading.Lock] = {}  # graph name -> the lock its saves hold
        self._locks_guard = threading.Lock()

    # where
    def path_of(self, name: str) -> Optional[pathlib.Path]:
        return self.documents.graph_files().get(name) if NEW_NAME.match(name or "") else None

    def writable_folders(self) -> list[pathlib.Path]:
        """The `--graphs` folders the operator named, less the shipped graphs (never written by a page)."""
        from nodegraph.shipped_graphs import SHIPPED_GRAPHS

        shipped = SHIPPED_GRAPHS.resolve()
        named = self.documents.graph_dirs if self.documents.graph_dirs != [SHIPPED_GRAPHS] else []
        return [folder for folder in named if folder.resolve() != shipped]

    def editable(self, path: Optional[pathlib.Path]) -> bool:
        folders = self.writable_folders()
        if path is None:
            return bool(folders)
        return path.parent.resolve() in [f.resolve() for f in folders] and not path.is_symlink()

    def folder_for(self, name: str) -> pathlib.Path:
        """The folder `name` is (or would be) written to, so its includes resolve as they will once saved."""
        path = self.path_of(name)
        if path is not None:
            return path.parent
        folders = self.writable_folders()
        return folders[0] if folders else self.documents.graph_dirs[0]

    # reading
    def open(self, name: str) -> dict:
        path = self.path_of(name)
        if path is None:
            raise reject("unknown_graph", "name", f"no graph named `{name}`", "GET /graphs lists them", status=404)
        text = path.read_text(encoding="utf-8")
        document = _file_document(name, text)
        return {"name": name, "yaml": text, "stamp": stamp_of(text), "document": document,
                "layout": self.layout(name), "editable": self.editable(path),
                "includes": self.includes(document, name)}

    def layout(self, name: str) -> dict:
        sidecar = self.layouts / f"{name}.json"
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # checking
    def check(self, document: dict, name: str, source: str = "") -> tuple[str, list[GraphError]]:
        """(YAML text, problems): the problems `nodegraph validate` reports for this document. A new name
        saved from an opened graph (`source`) keeps that file's comments and formatting too."""
        from nodegraph.spec.loader import loads_graph

        refuse_deep(document, "document")
        path = self.path_of(name) or (self.path_of(source) if source else None)
        original = path.read_text(encoding="utf-8") if path is not None else None
        text = render(document, original)
        try:
            label = f"{name}.yaml" if NEW_NAME.match(name or "") else "graph.yaml"
            graph = loads_graph(text, file=label, base_dir=self.folder_for(name),
                                hub_references=self.documents.hub_references)
        except ValidationFailed as exc:
            return text, list(exc.issues)
        try:
            self.documents._check_size(graph)
        except Rejected as exc:
            return text, list(exc.errors)
        return text, []

    def includes(self, document: dict, name: str) -> dict:
        """The ports of every graph the document includes (`type: ./x.yaml`), for the editor's nodes."""
        from nodegraph.spec.loader import load_graph

        refuse_deep(document, "document")
        folder = self.folder_for(name).resolve()
        found: dict[str, dict] = {}
        for node_type in _include_types(document.get("nodes")):
            target = (folder / node_type).resolve()
            if folder not in target.parents or not target.is_file():
                continue
            try:
                graph = load_graph(target, hub_references=self.documents.hub_references)
            except ValidationFailed:
                continue
            found[node_type] = {
                "graph": target.stem, "doc": graph.description.strip(),
                "inputs": [{"name": n, "type": str(graph.input_types.get(n)), "description": d.description,
                            "required": "default" not in d.model_fields_set} for n, d in graph.inputs.items()],
                "outputs": [{"name": n, "type": str(t)} for n, t in graph.output_types.items()]}
        return found

    # writing
    def _hold(self, name: str) -> threading.Lock:
        """The lock of the graph `name`: a save checks the stamp and writes under it."""
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def save(self, name: str, document: dict, stamp: Optional[str], layout: dict, draft: bool,
             overwrite: bool, source: str = "") -> dict:
        if not NEW_NAME.match(name or ""):
            raise reject("bad_name", "name", f"`{name}` is not a graph name",
                         "letters, digits, `_` and `-`, at most 64, not starting with `-`", status=400)
        refuse_deep(document, "document")
        refuse_deep(layout, "layout")
        with self._hold(name):
            return self._save(name, document, stamp, layout, draft, overwrite, source)

    def _save(self, name: str, document: dict, stamp: Optional[str], layout: dict, draft: bool,
              overwrite: bool, source: str) -> dict:
        from nodegraph.hub.migrate import write_atomically

        path = self.path_of(name)
        if not self.editable(path):
            raise reject("read_only_graph", "name", f"this server does not let the page write the graph `{name}`",
                         "start `nodegraph serve --graphs FOLDER` with a folder of your own (the shipped graphs "
                         "are never written); or use Download YAML", status=403)
        if path is not None and not overwrite:
            current = stamp_of(path.read_text(encoding="utf-8"))
            if stamp != current:
                raise reject("changed_on_disk", "stamp", f"`{name}` changed on disk since the editor opened it"
                             if stamp else f"a graph named `{name}` exists already",
                             "reload it, or save again choosing to overwrite", status=409)
        text, problems = self.check(document, name, source)
        if problems and not draft:
            raise Rejected(422, problems, f"{name}.yaml")
        target = self.drafts / f"{name}.yaml" if problems else (path or self.folder_for(name) / f"{name}.yaml")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, text)
        self.layouts.mkdir(parents=True, exist_ok=True)
        write_atomically(self.layouts / f"{name}.json", json.dumps(layout or {}, indent=1))
        return {"saved": "draft" if problems else "graph", "name": name, "stamp": stamp_of(text), "yaml": text,
                "errors": problems}


def _file_document(name: str, text: str) -> dict:
    """The structure of the graph file `name` for the editor; a file it cannot show (not YAML, or nesting deeper
    than the spec's limit: ruamel composes recursively) is a 422 naming the problem, never a traceback."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    from nodegraph.hub.migrate import _yaml

    hint = "fix the file in a text editor (`nodegraph validate` locates its problems)"
    try:
        data = _yaml(text).load(text)
        document = plain(data) if hasattr(data, "items") else {}
    except RecursionError:  # hundreds of levels: far over the limit
        raise too_deep("name", f"the graph `{name}`", hint) from None
    except YAMLError as exc:
        mark = exc.problem_mark if isinstance(exc, MarkedYAMLError) else None
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise reject("yaml_syntax", "name", f"the graph `{name}` is not valid YAML{where}", hint) from None
    refuse_deep(document, "name", f"the graph `{name}`", hint)
    return document


def _include_types(nodes: Any) -> list[str]:
    found: list[str] = []
    for node in (nodes or {}).values() if isinstance(nodes, dict) else []:
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "repeat":
            found += _include_types(node.get("nodes"))
        elif isinstance(kind, str) and kind.endswith((".yaml", ".yml")) and "://" not in kind:
            found.append(kind)
    return found
