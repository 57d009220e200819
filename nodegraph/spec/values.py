"""Checking values for graph inputs: against the input's declaration (type, choices, min/max) and against
every node port the input feeds, so `--set steps=0` fails validation when a node needs `steps > 0`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Optional

from pydantic import TypeAdapter, ValidationError

from nodegraph.core.node import InputPort, PortValueError
from nodegraph.core.types import PortType, python_annotation
from nodegraph.spec.document import NO_DEFAULT, InputSpec
from nodegraph.spec.errors import GraphError, Path, Reporter

if TYPE_CHECKING:
    from nodegraph.spec.checked import CheckedGraph


@lru_cache(maxsize=None)
def _adapter(ptype: PortType) -> TypeAdapter:
    return TypeAdapter(python_annotation(ptype))


def check_declared(decl: InputSpec, ptype: PortType, value: Any) -> Any:
    """Check `value` against a graph input declaration; return it converted (int -> float)."""
    if value is None and decl.default is None:
        return None
    if ptype.is_literal_friendly:
        try:
            value = _adapter(ptype).validate_python(value, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f"[{p}]" for p in first["loc"])
            raise PortValueError("invalid_value", f"expected {ptype}: {first['msg']}"
                                 f"{' at ' + where if where else ''}, got {value!r}") from None
    if decl.choices is not None and value not in decl.choices:
        raise PortValueError("not_in_choices", f"{value!r} is not one of the allowed values "
                             f"{', '.join(map(repr, decl.choices))}")
    if decl.min is not None and isinstance(value, (int, float)) and value < decl.min:
        raise PortValueError("out_of_range", f"{value!r} is below the minimum {decl.min}")
    if decl.max is not None and isinstance(value, (int, float)) and value > decl.max:
        raise PortValueError("out_of_range", f"{value!r} is above the maximum {decl.max}")
    return value


@dataclass(eq=False)
class Consumer:
    """A node port fed by a graph input (directly, without a node in between)."""

    file: str
    path: Path
    node_label: str
    port: InputPort


class GraphInputPort(InputPort):
    """An input port of an included graph: checks a value like a graph input of that graph would."""

    def __init__(self, name: str, ptype: PortType, decl: InputSpec, graph: CheckedGraph):
        super().__init__(name=name, type=ptype, nullable=decl.default is None, required=decl.required,
                         default=None if decl.required else decl.default, description=decl.description,
                         constraints=_decl_constraints(decl))
        self.decl, self.graph = decl, graph

    def check(self, value: Any) -> Any:
        value = check_declared(self.decl, self.type, value)
        for consumer in self.graph.consumers.get(self.name, ()):
            try:
                consumer.port.check(value)
            except PortValueError as exc:
                raise PortValueError(exc.code, f"{exc.message} (it feeds `{_dotted(consumer.path)}` of "
                                               f"{consumer.node_label} in {consumer.file})") from None
        return value


def _dotted(path: Path) -> str:
    from nodegraph.spec.errors import dotted

    return dotted(path)


def _decl_constraints(decl: InputSpec) -> tuple:
    texts = []
    if decl.min is not None:
        texts.append(f">= {decl.min}")
    if decl.max is not None:
        texts.append(f"<= {decl.max}")
    if decl.choices is not None:
        texts.append("one of " + ", ".join(map(repr, decl.choices)))
    return tuple(texts)


def check_value_for_input(graph: CheckedGraph, name: str, value: Any, label: str, r: Reporter,
                          path: Path) -> Any:
    """Check one value for graph input `name` (declaration + consumers); report problems at `path`.

    `label` says which value it is in messages, e.g. "`--set steps=0`" or "default 0 of input `steps`".
    """
    decl = graph.spec.inputs[name]
    ptype = graph.input_types[name]
    try:
        value = check_declared(decl, ptype, value)
    except PortValueError as exc:
        hint = _decl_hint(name, decl, ptype)
        r.error(exc.code, path, f"{label}: {exc.message}", hint)
        return value
    for consumer in graph.consumers.get(name, ()):
        try:
            consumer.port.check(value)
        except PortValueError as exc:
            r.error(exc.code, path, f"{label} feeds `{_dotted(consumer.path)}` of {consumer.node_label}: "
                    f"{exc.message}",
                    f"`{consumer.port.name}` takes {consumer.port.describe()}")
    return value


def _decl_hint(name: str, decl: InputSpec, ptype: PortType) -> str:
    parts = [f"`{name}` is declared as {ptype}"]
    parts.extend(_decl_constraints(decl))
    return ", ".join(parts)


def bind_input_values(graph: CheckedGraph, given: dict[str, Any], *, origin: str = "value",
                      require_all: bool = True, issues: Optional[list[GraphError]] = None) -> dict[str, Any]:
    """Check run-time values for a graph's inputs and fill in defaults; raise ValidationFailed listing all
    problems (unknown names, missing required inputs, bad values, and any `issues` found earlier).

    `origin` names where values came from in messages: "value" (Python) or "--set" (command line).
    """
    from nodegraph.spec.errors import ValidationFailed

    r = Reporter(graph.source.file, graph.source.marks, list(issues or ()))
    where = "<command line>" if origin == "--set" else "<run inputs>"
    values: dict[str, Any] = {}
    for name in given:
        if name not in graph.spec.inputs:
            close = difflib.get_close_matches(str(name), list(graph.spec.inputs), n=1)
            known = ", ".join(graph.spec.inputs) or "none"
            r.issues.append(GraphError("unknown_graph_input", f"{origin} {name}", f"{graph.source.file} has no input "
                                       f"`{name}`", f"did you mean `{close[0]}`?" if close else f"its inputs: {known}",
                                       where))
    for name, decl in graph.spec.inputs.items():
        if name in given:
            label = (f"`--set {name}={given[name]!r}`" if origin == "--set"
                     else f"{origin} {given[name]!r} for input `{name}`")
            values[name] = check_value_for_input(graph, name, given[name], label, r, ("inputs", name))
        elif decl.default is not NO_DEFAULT:
            values[name] = graph.defaults.get(name, decl.default)
        elif require_all:
            r.error("missing_graph_input", ("inputs", name), f"input `{name}` is required and was not given",
                    f"give it, e.g. `--set {name}=...` on the command line or `{name}=...` in Python",
                    at_key=True)
    if not r.has_errors:
        from nodegraph.spec.together import check_together

        check_together(graph, r, values)
    if r.has_errors:
        raise ValidationFailed(r.issues, graph.source.file)
    return values


_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse_set_value(raw: str, ptype: PortType) -> Any:
    """Parse one `--set` value by the input's declared type (lists and Any: YAML, e.g. `[1, 2]`)."""
    import yaml

    if ptype.name == "int":
        return int(raw)
    if ptype.name == "float":
        return float(raw)
    if ptype.name == "bool":
        if raw.lower() not in _WORDS:
            raise ValueError("expected true or false")
        return _WORDS[raw.lower()]
    if ptype.name == "str":
        return raw
    if ptype.name in ("list", "Any"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML ({str(exc).splitlines()[0]})") from None
    raise ValueError(f"an input of type {ptype} cannot be given on the command line")


def parse_sets(graph, sets: list[str]) -> tuple[dict[str, Any], list[GraphError]]:
    """`NAME=VALUE` strings -> values by declared type (`graph.input_types`), plus the problems found (all)."""
    values: dict[str, Any] = {}
    issues: list[GraphError] = []
    for item in sets:
        name, eq, raw = item.partition("=")
        name = name.strip()
        if not eq or not name:
            issues.append(GraphError("bad_set", f"--set {item}", f"`--set {item}` is not NAME=VALUE",
                                     "e.g. `--set steps=20`", "<command line>"))
            continue
        ptype = graph.input_types.get(name)
        if ptype is None:
            values[name] = raw  # reported as an unknown input, with a did-you-mean, by the value check
            continue
        try:
            values[name] = parse_set_value(raw, ptype)
        except ValueError as exc:
            message = str(exc) if "command line" in str(exc) or "expected" in str(exc) else f"expected {ptype}"
            issues.append(GraphError("invalid_value", f"--set {name}", f"`--set {name}={raw}`: {message}",
                                     f"`{name}` is declared as {ptype}", "<command line>"))
    return values, issues


def bind_sets(graph, sets: list[str], *, require_all: bool, base: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Input values from `--set` strings over `base` (e.g. the values recorded in a PNG being re-run), checked
    like any input values (`bind_input_values`); raise ValidationFailed listing every problem."""
    values, issues = parse_sets(graph, sets)
    return bind_input_values(graph.checked, {**(base or {}), **values}, origin="--set", require_all=require_all,
                             issues=issues)
