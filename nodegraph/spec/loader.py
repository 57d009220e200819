"""Reading graph files (and the files they include) into validated graphs.

`load_graph(path)` returns a `Graph` or raises `ValidationFailed` listing every problem, in every file.
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
    """Loads included graph files once each, and detects include cycles."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.cache: dict[pathlib.Path, CheckedGraph] = {}
        self.stack: list[pathlib.Path] = []

    def load(self, node_type: str, including: Source, r: Reporter, path: Path) -> Optional[CheckedGraph]:
        target = (including.base_dir / node_type).resolve()
        if target in self.stack:
            ring = self.stack[self.stack.index(target):] + [target]
            r.error("include_cycle", path, f"including `{node_type}` makes a cycle: "
                    + " → ".join(os.path.relpath(p, ring[0].parent) for p in ring),
                    "a graph file cannot include itself, directly or through other files")
            return None
        if target in self.cache:
            return self.cache[target]
        if not target.is_file():
            r.error("file_not_found", path, f"included graph `{node_type}` not found (looked for {target})",
                    "the path is relative to the folder of the including file")
            return None
        sub = check_file(target, self.registry, self)
        self.cache[target] = sub
        r.issues.extend(sub.issues)  # the included file's problems point into that file
        return sub


def check_file(path: pathlib.Path, registry: Registry, includes: Includes,
               display: Optional[str] = None) -> CheckedGraph:
    display = display or display_name(path)
    source = Source(display, None, path.parent, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _failed(source, "file_not_found", f"no such file: {display}", "check the path")
    except IsADirectoryError:
        return _failed(source, "file_not_found", f"{display} is a folder, not a graph file", "")
    except (OSError, UnicodeDecodeError) as exc:
        return _failed(source, "unreadable_file", f"cannot read {display}: {exc}", "")
    includes.stack.append(path)
    try:
        return check_text(text, source, registry, includes)
    finally:
        includes.stack.pop()


def check_text(text: str, source: Source, registry: Registry, includes: Includes) -> CheckedGraph:
    try:
        data, marks, issues = load_yaml(text, source.file)
    except YamlProblem as exc:
        return CheckedGraph(GraphSpec(), source, issues=list(exc.errors))
    source.marks = marks
    reporter = Reporter(source.file, marks, issues)
    spec = DocumentParser(reporter).graph(data)
    return GraphChecker(spec, source, registry, includes, reporter).run()


def check_spec(spec: GraphSpec, source: Source, registry: Registry) -> CheckedGraph:
    """Validate a graph built in Python (no file, so errors carry paths but no line:col)."""
    includes = Includes(registry)
    return GraphChecker(spec, source, registry, includes, Reporter(source.file)).run()


def _failed(source: Source, code: str, message: str, hint: str) -> CheckedGraph:
    return CheckedGraph(GraphSpec(), source, issues=[GraphError(code, "", message, hint, source.file)])


def load_graph(path: PathLike, registry: Optional[Registry] = None):
    """Load and validate a graph file; raise ValidationFailed with every problem found."""
    from nodegraph.spec.graph import Graph

    registry = registry or REGISTRY
    file = pathlib.Path(path)
    checked = check_file(file.resolve(), registry, Includes(registry), display=str(path))
    return Graph.from_checked(checked, registry)


def loads_graph(text: str, *, file: str = "<string>", base_dir: Optional[PathLike] = None,
                registry: Optional[Registry] = None):
    """Load and validate a graph from YAML text; includes resolve against `base_dir` (default: cwd)."""
    from nodegraph.spec.graph import Graph

    registry = registry or REGISTRY
    source = Source(file, None, pathlib.Path(base_dir or os.getcwd()).resolve())
    return Graph.from_checked(check_text(text, source, registry, Includes(registry)), registry)
