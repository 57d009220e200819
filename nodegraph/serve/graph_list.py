"""What `GET /graphs` says of the server's graphs: name, description, inputs (type, default, choices, limits,
`group`, the families a model input `accepts`, the `offline` model the page's first run starts on), outputs.

Loading and validating every graph file takes about a second for the shipped ones, and the page asks on every
load: a graph stays loaded while its file and the files it includes keep their size and modification time.
What depends on the machine's state (whether the hub cache holds a default model) is looked at on every call.
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Any, Optional


class GraphList:
    def __init__(self, documents):
        self.documents = documents
        self._loaded: dict[pathlib.Path, tuple[Any, dict]] = {}  # path -> (graph, {file it is made of: stamp})
        self._lock = threading.Lock()

    def describe(self) -> list[dict]:
        described = []
        for name, path in self.documents.graph_files().items():
            graph = self._graph(path)
            if graph is None or not graph.spec.outputs:
                continue
            described.append({"name": name, "description": graph.description.strip(),
                              "inputs": describe_inputs(graph), "outputs": list(graph.spec.outputs)})
        return described

    def _graph(self, path: pathlib.Path):
        """The loaded graph of `path` (None: it does not validate), loaded again once a file it is made of changed."""
        from nodegraph.serve.documents import included_files
        from nodegraph.spec.errors import ValidationFailed
        from nodegraph.spec.loader import load_graph

        with self._lock:
            found = self._loaded.get(path)
        if found is not None and all(_stamp(p) == stamp for p, stamp in found[1].items()):
            return found[0]
        try:
            graph = load_graph(path, hub_references=self.documents.hub_references)
        except ValidationFailed:  # not kept: which files it is made of is not known, so neither when it is fixed
            return None
        stamps = {p: _stamp(p) for p in [path, *included_files(graph.checked)]}
        with self._lock:
            self._loaded[path] = (graph, stamps)
        return graph


def describe_inputs(graph) -> dict[str, dict]:
    from nodegraph.serve.model_list import accepts_of
    from nodegraph.spec.document import NO_DEFAULT
    from nodegraph.web.offline import offline_model

    described = {}
    for name, decl in graph.inputs.items():
        item = {"type": str(graph.input_types.get(name, decl.type)), "description": decl.description,
                "required": decl.default is NO_DEFAULT}
        if decl.default is not NO_DEFAULT:
            item["default"] = decl.default
        for key in ("choices", "min", "max", "group"):
            if getattr(decl, key) is not None:
                item[key] = getattr(decl, key)
        accepts = accepts_of(graph.checked, name)  # a model input: the families its pickers list (model_list.py)
        if accepts is not None:
            item["accepts"] = accepts
        offline = offline_model(decl)  # the page's first run works offline (web/offline.py)
        if offline:
            item["offline"] = offline
        described[name] = item
    return described


def _stamp(path: pathlib.Path) -> Optional[tuple[int, int]]:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size
