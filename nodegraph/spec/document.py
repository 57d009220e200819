"""The graph document as pydantic models, and the parser from loaded YAML data to them.

A value is either a `Ref` (`$node.port`, `$inputs.x`, `$state.x`, `$loop.item`, `$loop.index`) or a literal;
`$$` at the start of a string escapes a literal `$`. Only whole values are references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nodegraph.spec.errors import Path, Reporter
from nodegraph.spec.limits import DEFAULT_LIMITS, Limits

FORMAT_VERSION = 1
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_IDS = {"inputs", "state", "loop"}
REPEAT_KEYS = ("over", "state", "nodes", "next", "collect", "description")
TOP_KEYS = ("nodegraph", "description", "requires", "inputs", "nodes", "outputs")


class _NoDefault:
    """Marks a graph input declared without `default:` (it must then be given at run time)."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self):
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()


class _Invalid:
    """Stands for a value that was already reported as malformed, so later checks skip it quietly."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = _Invalid()


@dataclass(frozen=True)
class Ref:
    """A reference: scope `node` ($name.port), `inputs` ($inputs.name), `state` ($state.name) or `loop`."""

    scope: str
    name: str
    port: str = ""

    def __str__(self) -> str:
        if self.scope == "node":
            return f"${self.name}.{self.port}"
        return f"${self.scope}.{self.name}"


class InputSpec(BaseModel):
    """A typed graph input: `{type: int, default: 25, min: 1, max: 1000, description: ...}`."""

    model_config = ConfigDict(extra="forbid")
    type: str
    default: Any = NO_DEFAULT
    description: str = ""
    choices: Optional[list[Any]] = None
    min: Optional[Union[int, float]] = None
    max: Optional[Union[int, float]] = None
    group: Optional[str] = None  # where a form shows it: no group = the essentials; e.g. `advanced` (collapsed)

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT


class NodeSpec(BaseModel):
    """A node: its type (`Add`, `Add@1`, `./step.yaml`) and its inputs (literals or Refs)."""

    type: str
    inputs: dict[str, Any] = Field(default_factory=dict)


class RepeatSpec(BaseModel):
    """A `repeat` node: runs `nodes` once per element of `over`, carrying `state` through `next`."""

    type: Literal["repeat"] = "repeat"
    over: Any = None
    state: dict[str, Any] = Field(default_factory=dict)
    nodes: dict[str, Union[RepeatSpec, NodeSpec]] = Field(default_factory=dict)
    next: dict[str, Any] = Field(default_factory=dict)
    collect: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class GraphSpec(BaseModel):
    nodegraph: int = FORMAT_VERSION
    description: str = ""
    requires: list[str] = Field(default_factory=list)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    nodes: dict[str, Union[RepeatSpec, NodeSpec]] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)


AnyNodeSpec = Union[NodeSpec, RepeatSpec]


def parse_reference(text: str) -> Union[Ref, str]:
    """`"$a.b"` -> Ref; `"$$x"` -> the literal `"$x"`; raise ValueError for a malformed reference."""
    if text.startswith("$$"):
        return text[1:]
    body = text[1:]
    head, dot, tail = body.partition(".")
    if not dot or not IDENTIFIER.match(head) or not IDENTIFIER.match(tail):
        raise ValueError(f"`{text}` is not a reference: write `$node.port`, `$inputs.name`, `$state.name`, "
                         "`$loop.item` or `$loop.index` (a literal string starting with `$` is written `$$...`)")
    if head in ("inputs", "state"):
        return Ref(head, tail)
    if head == "loop":
        if tail not in ("item", "index"):
            raise ValueError(f"`{text}`: a loop reference is `$loop.item` or `$loop.index`")
        return Ref("loop", tail)
    return Ref("node", head, tail)


def escape_literal(value: Any) -> Any:
    """The inverse of literal unescaping: strings starting with `$` are written `$$...`."""
    if isinstance(value, str) and value.startswith("$"):
        return "$" + value
    if isinstance(value, list):
        return [escape_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: escape_literal(v) for k, v in value.items()}
    return value


class DocumentParser:
    """Turns loaded YAML data into a GraphSpec, reporting every structural problem (not just the first)."""

    def __init__(self, reporter: Reporter, limits: Limits = DEFAULT_LIMITS):
        self.r = reporter
        self.limits = limits
        self.node_count = 0
        self.repeat_depth = 0

    def graph(self, data: Any) -> GraphSpec:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.r.error("invalid_document", (), f"a graph file must be a mapping, got {type(data).__name__}",
                         "start with `nodes:` (see docs/graphs.md)")
            return GraphSpec()
        self._unknown_keys(data, (), TOP_KEYS, "a graph")
        version = data.get("nodegraph", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            self.r.error("unsupported_format", ("nodegraph",), f"format version {version!r} is not supported",
                         f"this nodegraph reads `nodegraph: {FORMAT_VERSION}`")
        from nodegraph.spec.requires import parse_requires

        spec = GraphSpec(description=self._text(data, "description", ()),
                         requires=parse_requires(data.get("requires"), self.r))
        for name, raw in self._mapping(data, "inputs", ()).items():
            if self._identifier(name, ("inputs", name), "graph input name"):
                spec.inputs[name] = self._input(raw, ("inputs", name))
        spec.nodes = self._nodes(self._mapping(data, "nodes", ()), ("nodes",))
        for name, raw in self._mapping(data, "outputs", ()).items():
            if self._identifier(name, ("outputs", name), "graph output name"):
                spec.outputs[name] = self._ref_only(raw, ("outputs", name), "a graph output")
        return spec

    def _input(self, raw: Any, path: Path) -> InputSpec:
        if not isinstance(raw, dict):
            self.r.error("invalid_document", path, f"a graph input is a mapping, got {raw!r}",
                         "write e.g. `{type: int, default: 3}`")
            return InputSpec(type="Any")
        try:
            return InputSpec.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                where = path + tuple(err["loc"][:1])
                if err["type"] == "extra_forbidden":
                    key = str(err["loc"][0])
                    hint = ("a comma inside `{...}` splits the text there: quote it, e.g. "
                            "`description: \"a, b\"`" if " " in key and err["input"] is None
                            else "a graph input takes type, default, description, choices, min, max, group")
                    self.r.error("unknown_field", where, f"unknown key `{key}` in a graph input", hint,
                                 at_key=True)
                elif err["type"] == "missing":
                    self.r.error("missing_field", where, "a graph input needs a `type`",
                                 "e.g. `type: int`; types: int, float, str, bool, list[T], Latent, ...")
                else:
                    self.r.error("invalid_field", where, f"{err['msg']}, got {err['input']!r}")
            return InputSpec(type="Any")

    def _nodes(self, raw_nodes: dict, path: Path) -> dict[str, AnyNodeSpec]:
        nodes: dict[str, AnyNodeSpec] = {}
        for node_id, raw in raw_nodes.items():
            node_path = path + (node_id,)
            self.node_count += 1
            if self.node_count > self.limits.max_nodes:
                if self.node_count == self.limits.max_nodes + 1:  # reported once; the rest is not parsed
                    self.r.error("too_many_nodes", node_path, f"the graph has more than {self.limits.max_nodes:,} nodes",
                                 "split it into graph files used as nodes", at_key=True)
                break
            if not self._identifier(node_id, node_path, "node id"):
                continue
            if node_id in RESERVED_IDS:
                self.r.error("invalid_node_id", node_path, f"`{node_id}` is reserved and cannot be a node id",
                             f"rename the node; `{node_id}` is used by `${node_id}.x` references",
                             at_key=True)
                continue
            if not isinstance(raw, dict):
                self.r.error("invalid_document", node_path, f"node `{node_id}` must be a mapping with a `type`",
                             "write e.g. `{type: Add, a: 1, b: 2}`")
                continue
            node_type = raw.get("type")
            if not isinstance(node_type, str) or not node_type:
                self.r.error("missing_field", node_path, f"node `{node_id}` has no `type`",
                             "add `type: <NodeType>` (see `nodegraph nodes`)", at_key=True)
                continue
            if node_type == "repeat" and self.repeat_depth >= self.limits.max_repeat_nesting:
                self.r.error("repeat_too_deep", node_path, f"repeat `{node_id}` nests more than "
                             f"{self.limits.max_repeat_nesting} repeats deep", "flatten the loops", at_key=True)
            elif node_type == "repeat":
                self.repeat_depth += 1
                try:
                    nodes[node_id] = self._repeat(raw, node_path)
                finally:
                    self.repeat_depth -= 1
            else:
                inputs = {k: self._value(v, node_path + (k,)) for k, v in raw.items() if k != "type"}
                nodes[node_id] = NodeSpec(type=node_type, inputs=inputs)
        return nodes

    def _repeat(self, raw: dict, path: Path) -> RepeatSpec:
        self._unknown_keys(raw, path, ("type",) + REPEAT_KEYS, "a repeat node")
        if "over" not in raw:
            self.r.error("missing_input", path, "a repeat node needs `over` (the sequence to iterate)",
                         "e.g. `over: $timesteps.timesteps`", at_key=True)
        spec = RepeatSpec(over=self._value(raw.get("over"), path + ("over",)),
                          description=self._text(raw, "description", path))
        spec.state = {k: self._value(v, path + ("state", k)) for k, v in self._mapping(raw, "state", path).items()
                      if self._identifier(k, path + ("state", k), "state name")}
        spec.nodes = self._nodes(self._mapping(raw, "nodes", path), path + ("nodes",))
        spec.next = {k: self._value(v, path + ("next", k)) for k, v in self._mapping(raw, "next", path).items()}
        spec.collect = {k: self._ref_only(v, path + ("collect", k), "a collected value")
                        for k, v in self._mapping(raw, "collect", path).items()
                        if self._identifier(k, path + ("collect", k), "collect name")}
        return spec

    def _value(self, raw: Any, path: Path) -> Any:
        if isinstance(raw, str) and raw.startswith("$"):
            try:
                return parse_reference(raw)
            except ValueError as exc:
                self.r.error("bad_reference", path, str(exc))
                return INVALID
        return self._literal(raw, path)

    def _literal(self, raw: Any, path: Path) -> Any:
        if isinstance(raw, str) and raw.startswith("$"):
            if raw.startswith("$$"):
                return raw[1:]
            self.r.error("bad_reference", path, f"`{raw}` inside a list or mapping: only a whole input value "
                         "can be a reference", "build the list with a node, or write `$$` for a literal `$`")
            return raw
        if isinstance(raw, list):
            return [self._literal(v, path + (i,)) for i, v in enumerate(raw)]
        if isinstance(raw, dict):
            return {k: self._literal(v, path + (k,)) for k, v in raw.items()}
        return raw

    def _ref_only(self, raw: Any, path: Path, what: str) -> Optional[Ref]:
        if isinstance(raw, str) and raw.startswith("$") and not raw.startswith("$$"):
            value = self._value(raw, path)  # reports a malformed reference itself
            return value if isinstance(value, Ref) else None
        self.r.error("bad_reference", path, f"{what} must be a reference like `$node.port`, got {raw!r}")
        return None

    def _mapping(self, data: dict, key: str, path: Path) -> dict:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.r.error("invalid_document", path + (key,), f"`{key}` must be a mapping, got {value!r}")
            return {}
        return value

    def _text(self, data: dict, key: str, path: Path) -> str:
        value = data.get(key, "")
        if not isinstance(value, str):
            self.r.error("invalid_field", path + (key,), f"`{key}` must be text, got {value!r}")
            return ""
        return value

    def _identifier(self, name: Any, path: Path, what: str) -> bool:
        if isinstance(name, str) and IDENTIFIER.match(name):
            return True
        code = "invalid_node_id" if what == "node id" else "invalid_name"
        self.r.error(code, path, f"{what} {name!r} is not a valid name",
                     "use letters, digits and `_`, not starting with a digit", at_key=True)
        return False

    def _unknown_keys(self, data: dict, path: Path, allowed: tuple, what: str) -> None:
        import difflib

        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"{what} takes: {', '.join(allowed)}"
                self.r.error("unknown_field", path + (key,), f"unknown key `{key}` in {what}", hint, at_key=True)
