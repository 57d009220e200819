"""YAML in and out. Loading keeps the line:col of every document path and reports duplicate keys.

Only `yaml.SafeLoader` is used (no tags that build Python objects): loading a graph never runs code.
PyYAML silently keeps the last of two equal keys; here the duplicate is an error and the first one stays.
A hostile document is refused before it costs memory or stack: its size is checked before parsing, nesting
while composing (PyYAML composes recursively) and alias expansion while building values (see limits.py).
"""

from __future__ import annotations

from typing import Any

import yaml

from nodegraph.spec.errors import GraphError, Path, dotted
from nodegraph.spec.limits import DEFAULT_LIMITS, Limits


class Marks:
    """1-based (line, col) of each document path: of the value, and of the key that names it."""

    def __init__(self):
        self.values: dict[Path, tuple[int, int]] = {}
        self.keys: dict[Path, tuple[int, int]] = {}

    def locate(self, path: Path, at_key: bool = False) -> tuple[int | None, int | None]:
        path = tuple(path)
        first, second = (self.keys, self.values) if at_key else (self.values, self.keys)
        if path in first:
            return first[path]
        if path in second:
            return second[path]
        while path:  # a path absent from the file (a missing key): point at the closest enclosing key
            path = path[:-1]
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
        return (1, 1)


class YamlProblem(Exception):
    def __init__(self, errors: list[GraphError]):
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _is_node_map(path: Path) -> bool:
    return len(path) % 2 == 1 and all(path[i] == "nodes" for i in range(0, len(path), 2))


class _TooBig(Exception):
    def __init__(self, code: str, message: str, hint: str, mark):
        super().__init__(message)
        self.code, self.message, self.hint, self.mark = code, message, hint, mark


class _GraphLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than the limit while composing, before recursion gets deep."""

    def __init__(self, text: str, limits: Limits):
        super().__init__(text)
        self.limits, self.depth, self.composed = limits, 0, 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        self.composed += 1
        try:
            if self.composed > self.limits.max_yaml_values:
                raise _TooBig("too_many_values", f"the document has more than {self.limits.max_yaml_values:,} "
                              "values", "a graph needs far fewer; split it into files", self.peek_event().start_mark)
            if self.depth > self.limits.max_depth:
                raise _TooBig("too_deep", f"the document nests more than {self.limits.max_depth} levels deep",
                              "a graph needs only a few levels; flatten the structure", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _too_big_error(exc: _TooBig, file: str) -> YamlProblem:
    line, col = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
    return YamlProblem([GraphError(exc.code, "", exc.message, exc.hint, file, line, col)])


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem, plus where the construct it was reading began (its `context_mark`).

    The parser gives up where it notices the problem, often far below an unclosed `[`, `{` or quote; the
    place the construct began is the one to look at.
    """
    problem = str(exc.problem or exc.context or "")
    if not exc.context or not exc.context_mark or exc.context_mark == exc.problem_mark:
        return problem
    what = exc.context.removeprefix("while ").replace("parsing ", "").replace("scanning ", "")
    where = f"line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
    closable = any(word in what for word in ("flow", "quoted", "block scalar"))
    return f"{problem}, in {what} that began at {where}" + (" (is it closed?)" if closable else "")


def load_yaml(text: str, file: str, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, Marks, list[GraphError]]:
    """Parse `text`; return (data, marks, duplicate-key errors). A syntax error raises YamlProblem."""
    if len(text) > limits.max_document_bytes:
        raise YamlProblem([GraphError(
            "document_too_large", "", f"the document is {len(text):,} characters, over the limit of "
            f"{limits.max_document_bytes:,}", "a graph file is a few kilobytes; keep data out of it", file, 1, 1)])
    builder = _Builder(_open_loader(text, file, limits), file, limits)
    try:
        root = builder.loader.get_single_node()
        data = None if root is None else builder.build(root, (), frozenset())
        return data, builder.marks, builder.errors
    except _TooBig as exc:
        raise _too_big_error(exc, file) from None
    except RecursionError:  # a guard behind the depth limit: never a traceback
        raise YamlProblem([GraphError("too_deep", "", "the document nests too deeply to read", "", file, 1, 1)]) \
            from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise YamlProblem([GraphError("yaml_syntax", "", f"YAML syntax error: {_syntax_message(exc)}",
                                      "check indentation, colons and quotes around this position",
                                      file, line, col)]) from None
    except yaml.YAMLError as exc:
        raise YamlProblem([GraphError("yaml_syntax", "", f"YAML error: {exc}", "", file, 1, 1)]) from None
    finally:
        builder.loader.dispose()


def _open_loader(text: str, file: str, limits: Limits) -> _GraphLoader:
    try:  # PyYAML's reader refuses control characters here, before parsing
        return _GraphLoader(text, limits)
    except yaml.reader.ReaderError as exc:
        at = max(0, min(exc.position, len(text)))
        line, col = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
        raise YamlProblem([GraphError("yaml_syntax", "", f"YAML syntax error: character U+{int(exc.character):04X} is not "
                                      "allowed in YAML", "remove it (control characters cannot appear in YAML text)",
                                      file, line, col)]) from None


class _Builder:
    """Builds Python values from composed nodes, counting them against the limits (aliases included), keeping
    every value's and key's line:col, and reporting keys written twice in one mapping."""

    def __init__(self, loader: _GraphLoader, file: str, limits: Limits):
        self.loader, self.file, self.limits = loader, file, limits
        self.marks, self.errors, self.built = Marks(), [], 0

    def build(self, node, path: Path, active: frozenset):
        if id(node) in active:
            raise yaml.constructor.ConstructorError(None, None, "a YAML alias refers to itself", node.start_mark)
        self.built += 1
        if self.built > self.limits.max_yaml_values:
            raise _TooBig("too_many_values", f"the document expands to more than {self.limits.max_yaml_values:,} "
                          "values (YAML aliases repeat what they name)",
                          "an alias bomb looks like this; use fewer `*alias` references", node.start_mark)
        if len(path) > self.limits.max_depth:
            raise _TooBig("too_deep", f"the document nests more than {self.limits.max_depth} levels deep "
                          "(counting what aliases expand to)", "flatten the structure", node.start_mark)
        self.marks.values[path] = _mark(node)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            raise yaml.constructor.ConstructorError(None, None, f"the YAML tag {node.tag} is not allowed "
                                                    "in a graph", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, active | {id(node)})
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), active | {id(node)}) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)

    def _mapping(self, node, path: Path, active: frozenset) -> dict:
        written = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        self.loader.flatten_mapping(node)  # resolves `<<:` merge keys like SafeLoader: merged pairs first,
        result: dict = {}  # ordered so that the later pair wins (the YAML spec's precedence)
        typed: set = set()  # keys written in this mapping itself: a second one is a duplicate
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value, "
                                                        "not a list or mapping", key_node.start_mark)
            key = self.loader.construct_object(key_node)
            key_path = path + (key,)
            if key in result and id(key_node) in written and key in typed:
                self._duplicate(key, key_path, key_node, path)
                continue
            self.marks.keys[key_path] = _mark(key_node)  # a merged key, or one written over it: later wins
            result[key] = self.build(value_node, key_path, active)
            typed.update({key} if id(key_node) in written else ())
        return result

    def _duplicate(self, key, key_path: Path, key_node, path: Path) -> None:
        line, col = _mark(key_node)
        first = self.marks.keys[key_path][0]
        if _is_node_map(path):
            self.errors.append(GraphError("duplicate_node_id", dotted(key_path), f"node id `{key}` is used twice "
                                          f"(first on line {first})", "give each node a unique id",
                                          self.file, line, col))
        else:
            self.errors.append(GraphError("duplicate_key", dotted(key_path), f"key `{key}` appears twice (first on "
                                          f"line {first}); YAML would silently keep only the last one",
                                          "remove or rename one of them", self.file, line, col))


class FlowDict(dict):
    """A mapping written on one line (`{type: int, default: 3}`)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(FlowDict, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data.items(),
                                                                       flow_style=True))


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=110)
