"""The node base class: a node type declares typed `Inputs` and `Outputs` and a `run` method, nothing more.

A node is a pure definition (it holds no weights); the executor runs it and models live in the component
cache. Everything the validator needs (port types, defaults, constraints) is read from the `Ports` models
once, when the class is decorated with `@node`, into a `NodeType`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from nodegraph.core.types import PortType, UnsupportedType, location_of, port_type_of, role_of

if TYPE_CHECKING:
    from nodegraph.core.context import RunContext

NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
RESERVED_PORT_NAMES = {"type"}

# pydantic error types that mean "the value has the right type but lies outside the allowed range"
RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of",
                "too_short", "too_long", "finite_number"}


class Ports(BaseModel):
    """Base of a node's `Inputs` and `Outputs`: one pydantic field per port."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")


class Node:
    """Base class of every node type; subclass it, declare `Inputs`/`Outputs`, decorate with `@node`."""

    Inputs: ClassVar[type[Ports]] = Ports
    Outputs: ClassVar[type[Ports]] = Ports
    node_type: ClassVar[NodeType]

    def run(self, i: Any, ctx: RunContext) -> Any:
        """Compute the outputs; return `self.Outputs(...)` or a dict {port: value}."""
        raise NotImplementedError(f"{type(self).__name__}.run is not implemented")

    @classmethod
    def check_inputs(cls, known: dict[str, Any]) -> Optional[tuple[tuple[str, ...], str, str]]:
        """Inputs that are wrong only together (a range's start not below its end), checked at validation and
        when a run's input values are bound. `known`: the inputs whose values are known before running (each
        already checked alone). Return (the ports at fault, message, hint) or None (spec/together.py)."""
        return None

    @classmethod
    def model_reads(cls, known: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(model source, component, loader options) this node will load with the input values `known` before the
        run (literals and graph inputs; a value computed during the run is absent). The read-ahead
        (exec/prefetch.py) asks every node; loader nodes answer from their `ModelSource` inputs."""
        return []

    @classmethod
    def port_roles(cls, known: dict[str, Any]) -> dict[str, str]:
        """Roles (core/types.py Role) of input ports that depend on other inputs' values `known` before the run;
        they replace the declared ones (SDXLCheckpoint's `model` is the refiner when its `role` is "refiner")."""
        return {}


class NodeDefinitionError(TypeError):
    """A node class is malformed (raised at import time, where the class is defined)."""


class PortValueError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class InputPort:
    """One input of a node type: its type, whether it may be left out, and how a literal is checked."""

    name: str
    type: PortType
    nullable: bool
    required: bool
    default: Any = None
    annotation: Any = None
    description: str = ""
    constraints: tuple = ()
    location: Optional[str] = None  # "model" / "file": a `ModelSource` / `FilePath` port (core/types.py)
    role: Optional[str] = None  # what the value means in a run's record (core/types.py Role: "seed", "prompt", ...)

    @cached_property
    def _adapter(self) -> TypeAdapter:
        return TypeAdapter(self.annotation)

    def check(self, value: Any) -> Any:
        """Validate a literal (or a graph-input value) for this port; return it converted (int -> float).

        Raises PortValueError with code `invalid_value` (wrong type) or `out_of_range` (a constraint).
        """
        if value is None and self.nullable:
            return None
        if not self.type.is_literal_friendly:
            raise PortValueError("literal_not_allowed",
                                 f"takes a {self.type}, which only a node output can provide; got {value!r}")
        try:
            return self._adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            code = "out_of_range" if first["type"] in RANGE_ERRORS else "invalid_value"
            where = "".join(f"[{p}]" for p in first["loc"])
            raise PortValueError(code, f"{first['msg']}{' at ' + where if where else ''}, got {value!r}")

    def describe(self) -> str:
        text = f"{self.type}{' | None' if self.nullable and self.type.name != 'Any' else ''}"
        if not self.required:
            text += f" = {self.default!r}"
        if self.constraints:
            text += f"  ({', '.join(self.constraints)})"
        return text


@dataclass(eq=False)
class NodeType:
    """What the validator and executor know about a node class."""

    name: str
    version: int
    cls: type[Node]
    doc: str
    inputs: dict[str, InputPort]
    outputs: dict[str, PortType]
    output_docs: dict[str, str] = field(default_factory=dict)
    migrations: tuple = ()  # core.migration.Migration: how graphs written for older versions are carried over
    output_locations: dict[str, str] = field(default_factory=dict)  # output port -> "model" / "file"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


_CONSTRAINT_TEXT = {"gt": "> {}", "ge": ">= {}", "lt": "< {}", "le": "<= {}", "multiple_of": "multiple of {}",
                    "min_length": "length >= {}", "max_length": "length <= {}"}


def _constraint_texts(metadata: list) -> tuple:
    texts = []
    for item in metadata:
        for attr, fmt in _CONSTRAINT_TEXT.items():
            value = getattr(item, attr, None)
            if value is not None:
                texts.append(fmt.format(value))
    return tuple(texts)


def _annotation_with_metadata(info) -> Any:
    from typing import Annotated

    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _read_ports(owner: str, ports: type[Ports], side: str) -> dict[str, tuple[Any, Any]]:
    if not (isinstance(ports, type) and issubclass(ports, Ports)):
        raise NodeDefinitionError(f"{owner}.{side} must subclass nodegraph.core.Ports, got {ports!r}")
    for name in ports.model_fields:
        if name in RESERVED_PORT_NAMES or name.startswith("_"):
            raise NodeDefinitionError(f"{owner}.{side}.{name}: `{name}` cannot be a port name")
    return dict(ports.model_fields)


def define_node_type(cls: type, name: str, version: int, migrations=()) -> NodeType:
    """Read a node class into a NodeType, or raise NodeDefinitionError saying what to fix."""
    owner = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise NodeDefinitionError(f"@node({name!r}) decorates {owner}, which does not subclass Node")
    if not isinstance(name, str) or not NODE_NAME.match(name) or name == "repeat":
        raise NodeDefinitionError(f"{owner}: node name {name!r} must be an identifier (dots allowed for "
                                  "namespaces, e.g. `myplugin.Blur`) and not `repeat`")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise NodeDefinitionError(f"{owner}: version must be a positive integer, got {version!r}")
    doc = inspect.getdoc(cls)
    if not doc or cls.__doc__ is None:
        raise NodeDefinitionError(f"{owner}: a node type needs a docstring (it is the help `nodegraph nodes` shows)")
    if cls.run is Node.run:
        raise NodeDefinitionError(f"{owner}: define `run(self, i, ctx)`")
    inputs: dict[str, InputPort] = {}
    outputs: dict[str, PortType] = {}
    output_locations: dict[str, str] = {}
    try:
        for port, info in _read_ports(owner, cls.Inputs, "Inputs").items():
            ptype, nullable = port_type_of(info.annotation)
            required = info.is_required()
            inputs[port] = InputPort(
                name=port, type=ptype, nullable=nullable, required=required,
                default=None if required else info.get_default(call_default_factory=True),
                annotation=_annotation_with_metadata(info), description=info.description or "",
                constraints=_constraint_texts(info.metadata), location=location_of(info.annotation, tuple(info.metadata)),
                role=role_of(info.annotation, tuple(info.metadata)))
        for port, info in _read_ports(owner, cls.Outputs, "Outputs").items():
            outputs[port] = port_type_of(info.annotation)[0]
            if location_of(info.annotation, tuple(info.metadata)):
                output_locations[port] = location_of(info.annotation, tuple(info.metadata))
    except UnsupportedType as exc:
        raise NodeDefinitionError(f"{owner}: {exc}") from None
    output_docs = {p: i.description or "" for p, i in cls.Outputs.model_fields.items()}
    for migration in migrations:
        if migration.to_version > version:
            raise NodeDefinitionError(f"{owner}: a migration to version {migration.to_version} is declared on "
                                      f"version {version}")
        unknown = set(migration.rename.values()) - set(inputs) if migration.to_version == version else set()
        if unknown:
            raise NodeDefinitionError(f"{owner}: migration renames to {sorted(unknown)}, which are not inputs")
    return NodeType(name, version, cls, doc, inputs, outputs, output_docs, tuple(migrations), output_locations)


def node(name: str, version: int = 1, *, register: bool = True, migrations=()):
    """Class decorator declaring a node type with a stable name and version.

    The class is added to the default registry unless `register=False` (then add it to a Registry yourself).
    `migrations`: `core.migration.Migration`s that carry graphs written for older versions over to this one.
    """

    def decorate(cls):
        cls.node_type = define_node_type(cls, name, version, migrations)
        if register:
            from nodegraph.core.registry import REGISTRY

            REGISTRY.add(cls)
        return cls

    return decorate


def fast_ports(cls: type[Ports]):
    """A constructor that builds a `cls` instance from already-validated values without re-validating.

    pydantic's `model_construct` costs ~4 µs; this ~1 µs. Values are checked once, at plan time.
    """
    new = object.__new__
    set_attr = object.__setattr__

    def build(values: dict) -> Ports:
        obj = new(cls)
        set_attr(obj, "__dict__", values)
        set_attr(obj, "__pydantic_fields_set__", set())
        set_attr(obj, "__pydantic_extra__", None)
        set_attr(obj, "__pydantic_private__", None)
        return obj

    return build


def is_node_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Node) and isinstance(obj.__dict__.get("node_type"), NodeType)
