"""What a request may submit, checked before anything is queued.

A run names a graph from the `--graphs` folders, or carries a whole document: YAML/JSON text (its includes
resolve inside the first graphs folder) or a bundle `{"format": 1, "main": ..., "files": {...}}` as PNG
metadata holds it (its includes resolve inside the bundle). Either way the document and its includes are
stored as one bundle, addressed by its sha256, and run from `<data>/documents/<digest>/`, so a queued run
survives a restart unchanged and its PNG metadata can make the image again.

The server's own rules, on top of the spec's (size limits, includes kept in their tree, nothing executed):
* which ports are locations, the node types say by type (core/types.py), never their names: a port typed
  `ModelSource` takes `builtin:NAME`, a hub repo id `org/name`, or an absolute path inside a `--models` folder
  (a hub id that is also a folder on the server is refused); a port typed `FilePath` takes an absolute path
  inside a graphs, models or `<data>/inputs` folder; no relative paths, no `..`;
* location ports take literals or graph inputs, never a value another node computes (it could not be checked
  before the run), except one a node passes on from its own location input of the same name (an output typed
  as a location, like SDXLCheckpoint's `model`: checked where it enters);
* at most `max_nodes` nodes, counting included graphs and repeat bodies;
* no Hub graph (`type: hf://…`) unless the operator allows them (`hub_graphs`, `--allow-hub-graphs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from typing import Any, Optional

from nodegraph.shipped_graphs import SHIPPED_GRAPHS
from nodegraph.spec.errors import GraphError, ValidationFailed
from nodegraph.spec.location_ports import walk  # a graph level's nodes, repeat bodies included

GRAPH_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
SUBMITTED = "submitted.yaml"


class Rejected(Exception):
    """A submission the server will not queue: HTTP `status` with located errors."""

    def __init__(self, status: int, errors: list[GraphError], file: str = ""):
        self.status, self.errors, self.file = status, errors, file
        super().__init__(ValidationFailed(errors, file).report() if errors else "rejected")

    def as_json(self) -> dict:
        return {"message": str(self), "errors": [error_json(e) for e in self.errors]}


def error_json(error: GraphError) -> dict:
    return {"code": error.code, "path": error.path, "message": error.message, "hint": error.hint,
            "file": error.file, "line": error.line, "col": error.col}


def reject(code: str, path: str, message: str, hint: str = "", status: int = 422) -> Rejected:
    return Rejected(status, [GraphError(code, path, message, hint, "<request>")])


def digest_of(bundle: dict) -> str:
    return hashlib.sha256(json.dumps(bundle, sort_keys=True).encode()).hexdigest()


COMPUTED = object()  # a location computed by another node: cannot be checked before the run


class LocatedPort(str):
    """A location port's name, as `location_values` yields it, with its declared `kind`: "model" or "file"."""

    kind: str

    def __new__(cls, name: str, kind: str):
        located = super().__new__(cls, name)
        located.kind = kind
        return located


class Documents:
    """Resolves submissions to validated graphs; keeps recently used graphs loaded (plans included)."""

    def __init__(self, data_dir: pathlib.Path, graph_dirs: list[pathlib.Path], model_dirs: list[pathlib.Path],
                 store, max_nodes: int = 500, hub_graphs: bool = False):
        self.root = data_dir / "documents"
        self.root.mkdir(parents=True, exist_ok=True)
        self.inputs_dir = data_dir / "inputs"
        self.graph_dirs = [p.resolve() for p in graph_dirs] or [SHIPPED_GRAPHS]
        self.model_dirs = [p.resolve() for p in model_dirs]
        self.store = store
        self.max_nodes = max_nodes
        self.hub_references = "any" if hub_graphs else "none"  # `type: hf://…` in a document (spec/locations.py)
        self._graphs: OrderedDict[str, Any] = OrderedDict()
        self._bundles: OrderedDict[Any, tuple[dict, dict]] = OrderedDict()  # what was submitted -> bundle, file stamps
        self._lock = threading.Lock()
        self._graph_list = None  # graph_list.GraphList, made on the first GET /graphs

    # listing
    def graph_files(self) -> dict[str, pathlib.Path]:
        found: dict[str, pathlib.Path] = {}
        for folder in self.graph_dirs:
            for path in sorted(folder.glob("*.y*ml")):
                found.setdefault(path.stem, path)
        return found

    def describe_graphs(self) -> list[dict]:
        """The graphs as GET /graphs lists them (graph_list.py; kept loaded while their files are unchanged)."""
        from nodegraph.serve.graph_list import GraphList

        with self._lock:
            if self._graph_list is None:
                self._graph_list = GraphList(self)
        return self._graph_list.describe()

    # submissions
    def submit(self, graph: Optional[str], document: Any) -> tuple[Any, str, str]:
        """(Graph, digest, display name) for a submission, or Rejected."""
        if (graph is None) == (document is None):
            raise reject("bad_request", "graph", "give either `graph` (a name) or `document` (a whole graph)",
                         "GET /graphs lists the names", status=400)
        if graph is not None:
            bundle, name = self._remembered(("graph", graph), lambda: self._named(graph)), graph
        elif isinstance(document, str):
            key = ("text", hashlib.sha256(document.encode()).hexdigest())
            bundle, name = self._remembered(key, lambda: self._text(document)), SUBMITTED
        elif isinstance(document, dict):
            bundle, name = document, str(document.get("main", "document"))
        else:
            raise reject("bad_request", "document", "`document` must be YAML/JSON text or a bundle "
                         "{format, main, files}", status=400)
        digest = digest_of(bundle)
        loaded = self.graph(digest, bundle)
        self._check_size(loaded)
        return loaded, digest, name

    def _remembered(self, key, make) -> dict:
        """The bundle made for the same submission before, while the files it was made from are unchanged:
        re-submitting a graph costs a few `stat` calls, not a YAML parse and a validation."""
        with self._lock:
            found = self._bundles.get(key)
        if found is not None and all(_stamp(path) == stamp for path, stamp in found[1].items()):
            return found[0]
        bundle = make()
        stamps = {path: _stamp(path) for path in self._sources(bundle, key)}
        with self._lock:
            self._bundles[key] = (bundle, stamps)
            while len(self._bundles) > 256:
                self._bundles.popitem(last=False)
        return bundle

    def _sources(self, bundle: dict, key) -> list[pathlib.Path]:
        """The files on disk a bundle was read from (a text's includes; a named graph and its includes)."""
        if key[0] == "text":
            root = self.graph_dirs[0]
            return [root / rel for rel in bundle["files"] if rel != SUBMITTED]
        main = self.graph_files()[key[1][:-5] if key[1].endswith(".yaml") else key[1][:-4] if key[1].endswith(".yml")
                                  else key[1]]
        root = main.parents[len(pathlib.PurePosixPath(bundle["main"]).parts) - 1]
        return [root / rel for rel in bundle["files"]]

    def _named(self, name: str) -> dict:
        from nodegraph.spec.bundle import bundle_graph

        stem = name[:-5] if name.endswith(".yaml") else name[:-4] if name.endswith(".yml") else name
        path = self.graph_files().get(stem) if GRAPH_NAME.match(name) else None
        if path is None:
            raise reject("unknown_graph", "graph", f"no graph named `{name}`",
                         f"graphs here: {', '.join(self.graph_files()) or 'none'} (GET /graphs)", status=404)
        return bundle_graph(path)

    def _text(self, text: str) -> dict:
        """Validate text against the first graphs folder (for its includes); bundle it with them."""
        from nodegraph.spec.loader import loads_graph

        base = self.graph_dirs[0]
        try:
            graph = loads_graph(text, file=SUBMITTED, base_dir=base, hub_references=self.hub_references)
        except ValidationFailed as exc:
            raise Rejected(422, exc.issues, SUBMITTED) from None
        files = {SUBMITTED: text}
        for path in included_files(graph.checked):
            relative = path.relative_to(base).as_posix() if base in path.parents else None
            if relative is None or relative == SUBMITTED:
                raise reject("include_outside", "document", f"an include resolves outside {base.name}/",
                             "submitted documents may include only files of the server's graphs folders")
            files[relative] = path.read_text(encoding="utf-8")
        return {"format": 1, "main": SUBMITTED, "files": files}

    def graph(self, digest: str, bundle: Optional[dict] = None):
        """The loaded graph of a stored (or just submitted) bundle."""
        from nodegraph.spec.bundle import BundleError, unbundle
        from nodegraph.spec.loader import load_graph

        with self._lock:
            if digest in self._graphs:
                self._graphs.move_to_end(digest)
                return self._graphs[digest]
        bundle = bundle if bundle is not None else self.store.document(digest)
        folder = self.root / digest
        created = not folder.is_dir()
        if created:
            scratch = self.root / f".{uuid.uuid4().hex}"
            try:
                unbundle(bundle, scratch)
                os.replace(scratch, folder)  # whole or not at all: a reader never sees half a document
            except BundleError as exc:
                raise reject("bad_bundle", "document", str(exc), "a bundle is {format: 1, main, files}") from None
            except OSError:
                if not folder.is_dir():  # else another request stored the same document meanwhile
                    raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        try:
            graph = load_graph(folder / bundle["main"], hub_references=self.hub_references)
        except ValidationFailed as exc:
            if created:  # an invalid document leaves nothing behind
                shutil.rmtree(folder, ignore_errors=True)
            raise Rejected(422, [relative(e, folder) for e in exc.issues], bundle["main"]) from None
        self.store.put_document(digest, bundle)
        with self._lock:
            self._graphs[digest] = graph
            while len(self._graphs) > 64:
                self._graphs.popitem(last=False)
        return graph

    def _check_size(self, graph) -> None:
        count = count_nodes(graph.checked)
        if count > self.max_nodes:
            raise reject("graph_too_large", "nodes", f"the graph has {count} nodes (includes and repeat bodies "
                         f"counted); this server runs at most {self.max_nodes}", "split the graph")

    # the server's rules on values
    def check_values(self, graph, values: dict[str, Any]) -> None:
        """Refuse models and files outside what this server allows; every problem reported at once."""
        problems: list[GraphError] = []
        for port, value, where in location_values(graph.checked, values):
            if value is COMPUTED:
                problem = ("computed_location", "is computed by another node, so the server cannot check it "
                           "before the run", "give it as a literal or a graph input")
            elif not isinstance(value, str) or not value:  # empty or None: no model or file
                continue
            elif port.kind == "model":
                problem = self._model_problem(value)
            else:
                problem = self._file_problem(value)
            if problem:
                shown = "" if value is COMPUTED else f" {_shown(value)}"  # never the sentinel's `<object at 0x…>`
                problems.append(GraphError(problem[0], where, f"`{port}`{shown}: {problem[1]}", problem[2],
                                           "<request>"))
        if problems:
            raise Rejected(422, problems, "<request>")

    def _inside(self, value: str, roots: list[pathlib.Path]) -> bool:
        path = pathlib.Path(value).resolve()
        return any(path == root or root in path.parents for root in roots)

    def _model_problem(self, value: str):
        if value.startswith("builtin:"):
            return None
        if os.path.isabs(value):
            if ".." not in pathlib.PurePath(value).parts and self._inside(value, self.model_dirs):
                return None
            return ("model_not_allowed", "this server loads local models only from its --models folders",
                    "pick one of GET /models (the page's Choose… list), or use builtin:NAME or a hub repo id")
        if HUB_ID.match(value) and ".." not in value.split("/") and not os.path.exists(value):
            return None
        return ("model_not_allowed", "not builtin:NAME, a hub repo id (org/name) or an absolute path inside a "
                "--models folder", "give one of those")

    def _file_problem(self, value: str):
        roots = [*self.graph_dirs, *self.model_dirs, self.inputs_dir.resolve()]
        if os.path.isabs(value) and ".." not in pathlib.PurePath(value).parts and self._inside(value, roots):
            return None
        return ("path_not_allowed", "files must be absolute paths inside the server's graphs, models or "
                "inputs folders", "upload the file with POST /inputs and pass the path it answers, or pick a "
                "model of GET /models")


def _shown(value: str, most: int = 120) -> str:
    """A value as a message quotes it: repr, cut short (a megabyte-long path is not sent back whole)."""
    text = repr(value)
    return text if len(text) <= most else text[:most] + "…'"


def _stamp(path: pathlib.Path):
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def relative(error: GraphError, folder: pathlib.Path) -> GraphError:
    """The error with the document's own file names, not the server's folders."""
    prefixes = (str(folder) + os.sep, os.path.relpath(folder) + os.sep)

    def strip(text: str) -> str:
        for prefix in prefixes:
            text = text.replace(prefix, "")
        return text

    return dataclasses.replace(error, file=strip(error.file), message=strip(error.message), hint=strip(error.hint))


def included_files(checked, seen: Optional[set] = None) -> list[pathlib.Path]:
    seen = set() if seen is None else seen
    found = []
    for node in walk(checked.nodes):
        if node.kind == "graph" and node.subgraph is not None:
            path = node.subgraph.source.path
            if path is not None and path not in seen:
                seen.add(path)
                found.append(path)
                found += included_files(node.subgraph, seen)
    return found


def count_nodes(checked) -> int:
    total = 0
    for node in walk(checked.nodes):
        total += 1
        if node.kind == "graph" and node.subgraph is not None:
            total += count_nodes(node.subgraph)
    return total


def location_values(checked, values: dict[str, Any], prefix: str = ""):
    """(port, value, where) for every value reaching a model or file port: a literal, a graph-input value, or
    COMPUTED when another node's output feeds it (through included graphs too)."""
    from nodegraph.spec.document import Ref

    def located(port) -> bool:
        return port is not None and port.location is not None  # a ModelSource / FilePath port (core/types.py)

    for name, value in values.items():
        for consumer in checked.consumers.get(name, ()):
            if located(consumer.port):
                yield LocatedPort(consumer.port.name, consumer.port.location), value, f"{prefix}inputs.{name}"
    by_id = {node.id: node for node in walk(checked.nodes)}
    for node in by_id.values():
        if node.kind == "graph" and node.subgraph is not None:
            given = {}
            for port, value in node.values.items():
                if not isinstance(value, Ref):
                    given[port] = value
                elif value.scope == "inputs" and value.name in values:
                    given[port] = values[value.name]
                else:
                    given[port] = COMPUTED
            yield from location_values(node.subgraph, {**node.subgraph.defaults, **given}, f"{prefix}nodes.{node.id}/")
            continue
        for port, value in node.values.items():
            if not located(node.inputs.get(port)) or isinstance(value, Ref) and value.scope == "inputs":
                continue
            if isinstance(value, Ref) and _passed_on(by_id.get(value.name), value.port, located):
                continue  # checked where it enters the node that passes it on
            yield (LocatedPort(port, node.inputs[port].location), COMPUTED if isinstance(value, Ref) else value,
                   f"{prefix}nodes.{node.id}.{port}")


def _passed_on(producer, port: str, located) -> bool:
    """A node that passes a checked location on under the same name: an output typed as a location fed by the
    input of that name (SDXLCheckpoint's `model`)."""
    return (producer is not None and producer.kind == "node" and producer.node_type is not None
            and port in producer.node_type.output_locations and located(producer.inputs.get(port)))
