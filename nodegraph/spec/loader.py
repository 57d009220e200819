"""Reading graph files (and the files they include) into validated graphs.

`load_graph(path)` returns a `Graph` or raises `ValidationFailed` listing every problem, in every file. The
path may be an `hf://` address (nodegraph.hub.resolve). Loading reads data only: it never imports or runs
anything a document names, stays inside the size limits of spec/limits.py and keeps includes in their tree.
"""

from __future__ import annotations

import os
import pathlib
from typing import Optional, Union

from nodegraph.core.registry import REGISTRY, Registry
from nodegraph.spec.check import GraphChecker
from nodegraph.spec.checked import CheckedGraph, Source
from nodegraph.spec.document import DocumentParser, GraphSpec
from nodegraph.spec.errors import GraphError, Path, Reporter, ValidationFailed
from nodegraph.spec.limits import InputRefused, Limits, active_limits
from nodegraph.spec.locations import LocationError, check_hub_reference, confine, is_file, shown
from nodegraph.spec.reading import read_document
from nodegraph.spec.requires import check_requires
from nodegraph.spec.yaml_io import YamlProblem, load_yaml

PathLike = Union[str, os.PathLike]


def display_name(path: pathlib.Path) -> str:
    """The path as the user will recognise it: relative to the working directory when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return relative if not relative.startswith("..") else str(path)


class Includes:
    """Loads included graph files once each; keeps includes inside their tree, under the limits, acyclic.

    A local include must resolve (symlinks followed) inside the folder of the graph being loaded, its `root`,
    unless `allow_outside`; an include inside a Hub graph stays in that repo, at the commit its includer came
    from. Nothing outside is even looked at, so a graph cannot probe the disk with its error messages.
    """

    def __init__(self, registry: Registry, *, limits: Optional[Limits] = None, allow_outside: bool = False,
                 hub_pins: Optional[dict] = None, hub_references: str = "any"):
        self.registry = registry
        self.limits = limits or active_limits()  # the defaults, or NODEGRAPH_MAX_* from the environment
        self.allow_outside = allow_outside
        self.hub_pins = hub_pins or {}  # hf:// address as written -> the commit to read it at (a re-run)
        self.hub_references = hub_references  # who may name a Hub graph (spec/locations.py HUB_POLICIES)
        self.cache: dict[pathlib.Path, CheckedGraph] = {}
        self.stack: list[pathlib.Path] = []

    def load(self, node_type: str, including: Source, r: Reporter, path: Path) -> Optional[CheckedGraph]:
        found = self._find(node_type, including, r, path)
        if found is None:
            return None
        target, hub, display = found
        if target in self.stack:
            ring = self.stack[self.stack.index(target):] + [target]
            r.error("include_cycle", path, f"including `{node_type}` makes a cycle: "
                    + " → ".join(os.path.relpath(p, ring[0].parent) for p in ring),
                    "a graph file cannot include itself, directly or through other files")
            return None
        if target in self.cache:
            return self.cache[target]
        if len(self.stack) > self.limits.max_include_depth:
            r.error("include_too_deep", path, f"including `{node_type}` nests graph files more than "
                    f"{self.limits.max_include_depth} deep", "flatten the chain of includes")
            return None
        root = None if hub is not None else (including.root or including.base_dir.resolve())
        sub = check_file(target, self.registry, self, display=display, hub=hub, root=root)
        self.cache[target] = sub
        r.issues.extend(sub.issues)  # the included file's problems point into that file
        return sub

    def _find(self, node_type: str, including: Source, r: Reporter, path: Path):
        """(local file, HubFile or None, display name) of an include, or None after reporting why not."""
        from nodegraph.spec import remote  # hf:// addresses: a resolver that nodegraph/hub registers

        if remote.is_address(node_type) or including.hub is not None:
            try:
                address = (remote.parse(node_type) if remote.is_address(node_type)
                           else remote.sibling(including.hub, node_type))
                pin = self.hub_pins.get(str(address)) if remote.is_address(node_type) else None
                if remote.is_address(node_type):  # the include rule, for Hub graphs (spec/locations.py)
                    check_hub_reference(self.hub_references, node_type, getattr(address, "revision", None), pin)
                hub = remote.fetch(remote.at(address, pin) if isinstance(pin, str) else address)
            except (remote.RemoteError, LocationError) as exc:
                r.error(exc.code, path, exc.message, exc.hint)
                return None
            return hub.local_path, hub, str(hub.address)
        root = including.root or including.base_dir.resolve()
        outside_hint = ("includes stay inside the folder of the graph being loaded; to allow this one, pass "
                        "--allow-includes-outside (or allow_includes_outside=True)")
        if (os.path.isabs(node_type) or node_type.startswith("~")) and not self.allow_outside:
            r.error("include_outside", path, f"`{shown(node_type)}`: an include cannot be an absolute path",
                    "write the path relative to the including file; " + outside_hint)
            return None
        try:  # the location rule (spec/locations.py): resolved, symlinks followed, inside the root
            target = confine(node_type, including.base_dir, None if self.allow_outside else [root], "graph file")
        except LocationError as exc:
            outside = exc.code == "location_outside"
            r.error("include_outside" if outside else exc.code, path, f"`{shown(node_type)}` points outside "
                    f"{display_name(root)}" if outside else exc.message, outside_hint if outside else
                    "name a graph file relative to the including file")
            return None
        if not is_file(target):
            r.error("file_not_found", path, f"included graph `{shown(node_type)}` not found (looked for "
                    f"{shown(str(target), 300)})", "the path is relative to the folder of the including file")
            return None
        return target, None, display_name(target)


def check_file(path: pathlib.Path, registry: Registry, includes: Includes,
               display: Optional[str] = None, *, hub=None, root: Optional[pathlib.Path] = None) -> CheckedGraph:
    """Validate one graph file. `root`: the folder local includes must stay in (default: the file's own)."""
    display = display or display_name(path)
    source = Source(display, None, path.parent, path, root=root or path.parent, hub=hub)
    try:  # a regular file, at most max_document_bytes read whatever st_size says (/dev/zero, a FIFO: refused)
        text = read_document(path, includes.limits.max_document_bytes, display)
    except InputRefused as exc:
        return _failed(source, exc.code, exc.message, exc.hint)
    includes.stack.append(path)
    try:
        return check_text(text, source, registry, includes)
    finally:
        includes.stack.pop()


def check_text(text: str, source: Source, registry: Registry, includes: Includes) -> CheckedGraph:
    try:
        data, marks, issues = load_yaml(text, source.file, includes.limits)
    except YamlProblem as exc:
        return CheckedGraph(GraphSpec(), source, issues=list(exc.errors))
    source.marks = marks
    reporter = Reporter(source.file, marks, issues)
    spec = DocumentParser(reporter, includes.limits).graph(data)
    if not check_requires(spec.requires, reporter):  # a missing plugin: say so, not "unknown node type" N times
        return CheckedGraph(spec, source, issues=reporter.issues)
    return GraphChecker(spec, source, registry, includes, reporter).run()


def check_spec(spec: GraphSpec, source: Source, registry: Registry) -> CheckedGraph:
    """Validate a graph built in Python (no file, so errors carry paths but no line:col)."""
    includes = Includes(registry)
    source.root = source.root or source.base_dir.resolve()
    return GraphChecker(spec, source, registry, includes, Reporter(source.file)).run()


def expanded_size(checked: CheckedGraph, memo: Optional[dict] = None) -> int:
    """Nodes the graph runs with every include expanded (each file counted once, however often used)."""
    memo = {} if memo is None else memo
    if id(checked) not in memo:
        total, todo = 0, list(checked.nodes.values())
        while todo:
            node = todo.pop()
            total += 1 + (expanded_size(node.subgraph, memo) if node.subgraph is not None else 0)
            if node.body is not None:
                todo.extend(node.body.nodes.values())
        memo[id(checked)] = total
    return memo[id(checked)]


def _check_expanded(checked: CheckedGraph, limits: Limits) -> CheckedGraph:
    if checked.errors or not any(n.subgraph is not None for n in checked.nodes.values()):
        return checked
    memo: dict = {}
    total = expanded_size(checked, memo)
    if total > limits.max_expanded_nodes:
        biggest = max(checked.nodes.values(), key=lambda n: expanded_size(n.subgraph, memo) if n.subgraph else 0)
        Reporter(checked.source.file, checked.source.marks, checked.issues).error(
            "graph_too_large", biggest.path, f"with its included graphs expanded, this graph would run {total:,} "
            f"nodes, over the limit of {limits.max_expanded_nodes:,}", "include graph files fewer times", at_key=True)
    return checked


def _failed(source: Source, code: str, message: str, hint: str) -> CheckedGraph:
    return CheckedGraph(GraphSpec(), source, issues=[GraphError(code, "", message, hint, source.file)])


def load_graph(path: PathLike, registry: Optional[Registry] = None, *, limits: Optional[Limits] = None,
               allow_includes_outside: bool = False, include_root: Optional[PathLike] = None,
               hub_pins: Optional[dict] = None, hub_references: str = "any"):
    """Load and validate a graph file or `hf://OWNER/REPO[@REV]/PATH.yaml`; raise ValidationFailed listing
    every problem found.

    Local includes must stay inside `include_root` (default: the graph's folder) unless
    `allow_includes_outside`; `limits` bound what a hostile document can cost (see spec/limits.py).
    `hub_pins` ({hf:// address as written: commit}, as recorded in PNG metadata) reads those includes at
    those commits. `hub_references` ("any", "pinned", "none"): which Hub graphs the graph may name
    (spec/locations.py), checked for `path` itself too.
    """
    from nodegraph.spec import remote
    from nodegraph.spec.graph import Graph

    registry = registry or REGISTRY
    includes = Includes(registry, limits=limits, allow_outside=allow_includes_outside, hub_pins=hub_pins,
                        hub_references=hub_references)
    limits = includes.limits
    if remote.is_address(str(path)):
        try:
            address = remote.parse(str(path))
            check_hub_reference(hub_references, str(path), getattr(address, "revision", None), None)
            hub = remote.fetch(address)
        except (remote.RemoteError, LocationError) as exc:
            raise ValidationFailed([GraphError(exc.code, "", exc.message, exc.hint, str(path))], str(path)) from None
        checked = check_file(hub.local_path, registry, includes, display=str(path), hub=hub)
    else:
        file = pathlib.Path(path).resolve()
        root = pathlib.Path(include_root).resolve() if include_root is not None else file.parent
        checked = check_file(file, registry, includes, display=str(path), root=root)
    return Graph.from_checked(_check_expanded(checked, limits), registry)


def loads_graph(text: str, *, file: str = "<string>", base_dir: Optional[PathLike] = None,
                registry: Optional[Registry] = None, limits: Optional[Limits] = None,
                allow_includes_outside: bool = False, hub_references: str = "any"):
    """Load and validate a graph from YAML text; includes resolve against (and stay inside) `base_dir`
    (default: cwd)."""
    from nodegraph.spec.graph import Graph

    registry = registry or REGISTRY
    base = pathlib.Path(base_dir or os.getcwd()).resolve()
    source = Source(file, None, base, root=base)
    includes = Includes(registry, limits=limits, allow_outside=allow_includes_outside, hub_references=hub_references)
    return Graph.from_checked(_check_expanded(check_text(text, source, registry, includes), includes.limits),
                              registry)
