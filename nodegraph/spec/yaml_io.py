"""YAML in and out. Loading keeps the line:col of every document path and reports duplicate keys.

Only `yaml.SafeLoader` is used (no tags that build Python objects): loading a graph never runs code.
PyYAML silently keeps the last of two equal keys; here the duplicate is an error and the first one stays.
"""

from __future__ import annotations

from typing import Any

import yaml

from nodegraph.spec.errors import GraphError, Path, dotted


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


def load_yaml(text: str, file: str) -> tuple[Any, Marks, list[GraphError]]:
    """Parse `text`; return (data, marks, duplicate-key errors). A syntax error raises YamlProblem."""
    marks = Marks()
    errors: list[GraphError] = []
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, marks, errors

        def build(node, path: Path, active: frozenset):
            if id(node) in active:
                raise yaml.constructor.ConstructorError(None, None, "a YAML alias refers to itself",
                                                        node.start_mark)
            marks.values[path] = _mark(node)
            if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
                raise yaml.constructor.ConstructorError(None, None, f"the YAML tag {node.tag} is not allowed "
                                                        "in a graph", node.start_mark)
            if isinstance(node, yaml.MappingNode):
                loader.flatten_mapping(node)  # resolves `<<:` merge keys like SafeLoader does
                result: dict = {}
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode):
                        raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value, "
                                                                "not a list or mapping", key_node.start_mark)
                    key = loader.construct_object(key_node)
                    key_path = path + (key,)
                    if key in result:
                        line, col = _mark(key_node)
                        first = marks.keys[key_path][0]
                        if _is_node_map(path):
                            errors.append(GraphError(
                                "duplicate_node_id", dotted(key_path), f"node id `{key}` is used twice "
                                f"(first on line {first})", "give each node a unique id", file, line, col))
                        else:
                            errors.append(GraphError(
                                "duplicate_key", dotted(key_path), f"key `{key}` appears twice (first on "
                                f"line {first}); YAML would silently keep only the last one",
                                "remove or rename one of them", file, line, col))
                        continue
                    marks.keys[key_path] = _mark(key_node)
                    result[key] = build(value_node, key_path, active | {id(node)})
                return result
            if isinstance(node, yaml.SequenceNode):
                return [build(item, path + (i,), active | {id(node)}) for i, item in enumerate(node.value)]
            return loader.construct_object(node)

        return build(root, (), frozenset()), marks, errors
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YamlProblem([GraphError("yaml_syntax", "", f"YAML syntax error: {message}",
                                      "check indentation, colons and quotes around this position",
                                      file, line, col)]) from None
    except yaml.YAMLError as exc:
        raise YamlProblem([GraphError("yaml_syntax", "", f"YAML error: {exc}", "", file, 1, 1)]) from None
    finally:
        loader.dispose()


class FlowDict(dict):
    """A mapping written on one line (`{type: int, default: 3}`)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(FlowDict, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data.items(),
                                                                       flow_style=True))


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=110)
