"""Port types: the small, explicit set of value kinds a port can carry, and which connections are legal.

Primitive ports use Python types (`int`, `float`, `str`, `bool`, `list[T]`). Everything else is a marker
class below; markers never import torch, so a graph can be validated on a machine without it. At run time a
tensor kind carries a torch tensor and a component handle carries the loaded object: pydantic treats every
marker as `Any`, so building a node's `Outputs` never runs an isinstance check against a marker.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from pydantic_core import core_schema


class PortKind:
    """Base of the marker classes; a marker names a kind of value, it is never instantiated."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        return core_schema.any_schema()


class Tensor(PortKind):
    """Any torch tensor; every tensor kind below may feed a `Tensor` port."""


class Latent(Tensor):
    """Latents (B, C, h, w) in the model's latent space."""


class Image(Tensor):
    """Images: a float tensor (B, 3, H, W) in [0, 1], or a list of PIL images."""


class Embeddings(Tensor):
    """Text-encoder hidden states (B, tokens, dim)."""


class Timesteps(Tensor):
    """A 1-D tensor of scheduler timesteps."""


class Component(PortKind):
    """A loaded model part or helper object, shared through the component cache."""


class UNet(Component):
    """A denoising UNet."""


class Transformer(Component):
    """A denoising transformer (DiT: Z-Image; later Flux, SD3)."""


class VAE(Component):
    """A variational autoencoder (latents <-> images)."""


class TextEncoder(Component):
    """A text encoder (CLIP)."""


class Tokenizer(Component):
    """A tokenizer for a text encoder."""


class Scheduler(Component):
    """A noise scheduler."""


class Generator(Component):
    """A seeded random-number generator."""


class ControlNet(Component):
    """A ControlNet model (guides the UNet with a control image)."""


class Control(PortKind):
    """ControlNets with their images, strengths and step ranges, applied together inside a denoising step."""


@dataclass(frozen=True)
class Location:
    """Marks a `str` port as naming something a run reads from outside the graph: `kind` "model" (a model
    source: a folder, a single file, a hub repo id, builtin:NAME) or "file" (a plain file path). The port's type
    stays `str`; servers confine these values, the read-ahead and PNG metadata find models through them."""

    kind: Literal["model", "file"]


ModelSource = typing.Annotated[str, Location("model")]  # e.g. `model: ModelSource = Field(...)`
FilePath = typing.Annotated[str, Location("file")]  # e.g. `lora: FilePath = ""`


def location_of(annotation: Any, metadata: tuple = ()) -> Optional[str]:
    """"model", "file" or None: the Location an annotation (or pydantic's field metadata) declares, also
    inside Optional[...]."""
    for item in metadata:
        if isinstance(item, Location):
            return item.kind
    if typing.get_origin(annotation) is typing.Annotated:
        return location_of(typing.get_args(annotation)[0], typing.get_args(annotation)[1:])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        found = {location_of(a) for a in typing.get_args(annotation)} - {None}
        return found.pop() if len(found) == 1 else None
    return None


@dataclass(frozen=True)
class Role:
    """Marks what a port's value means to whoever reads a run's record: the A1111 `parameters` text of a PNG
    (exec/png_metadata.py) finds its fields by these, never by input names. `name` is one of ROLES; "negative"
    marks conditioning (embeddings) fed by the negative prompt, so a prompt encoded into it is the negative one.
    Declared like a location: `seed: Annotated[int, Role("seed")] = 0`; ports may carry both markers."""

    name: str


ROLES = ("prompt", "negative_prompt", "negative", "steps", "scheduler", "guidance_scale", "seed", "model", "config",
         "strength", "refiner", "high_noise_frac", "lora", "lora_scale", "clip_skip", "embedding")


def role_of(annotation: Any, metadata: tuple = ()) -> Optional[str]:
    """The Role an annotation (or pydantic's field metadata) declares, also inside Optional[...] and aliases such
    as ModelSource; None without one."""
    for item in metadata:
        if isinstance(item, Role):
            return item.name
    if typing.get_origin(annotation) is typing.Annotated:
        return role_of(typing.get_args(annotation)[0], typing.get_args(annotation)[1:])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        found = {role_of(a) for a in typing.get_args(annotation)} - {None}
        return found.pop() if len(found) == 1 else None
    return None


PRIMITIVES = {"int": int, "float": float, "str": str, "bool": bool}
MARKERS: dict[str, type[PortKind]] = {
    cls.__name__: cls
    for cls in (Tensor, Latent, Image, Embeddings, Timesteps,
                UNet, Transformer, VAE, TextEncoder, Tokenizer, Scheduler, Generator, ControlNet, Control)
}
TYPE_NAMES = [*PRIMITIVES, "list[T]", *MARKERS, "Any"]


@dataclass(frozen=True)
class PortType:
    """A normalised port type: `name` is a primitive, a marker name, `list` (with `item`) or `Any`."""

    name: str
    item: Optional[PortType] = None

    def __str__(self) -> str:
        return f"list[{self.item}]" if self.name == "list" else self.name

    @property
    def is_literal_friendly(self) -> bool:
        """Whether a YAML literal can express a value of this type (markers need a node output)."""
        if self.name == "list":
            return self.item.is_literal_friendly
        return self.name in PRIMITIVES or self.name == "Any"

    @property
    def is_sequence(self) -> bool:
        """Whether a `repeat` can iterate over a value of this type."""
        return self.name in ("list", "Any") or _is_tensor(self.name)

    def item_type(self) -> PortType:
        """The type of one element when a `repeat` iterates over a value of this type."""
        if self.name == "list":
            return self.item
        if self.name == "Any":
            return ANY
        return PortType("Tensor")  # iterating a 1-D tensor yields 0-d tensors


ANY = PortType("Any")
INT = PortType("int")
FLOAT = PortType("float")


def _is_tensor(name: str) -> bool:
    return name in MARKERS and issubclass(MARKERS[name], Tensor)


def can_connect(src: PortType, dst: PortType) -> bool:
    """Whether a value of type `src` may feed a port of type `dst`.

    int -> float is the only widening. A tensor kind may feed a generic `Tensor` port (it *is* a tensor);
    the reverse needs a node that says what the tensor is. `Any` is unchecked in both directions.
    """
    if src == dst or src.name == "Any" or dst.name == "Any":
        return True
    if src.name == "int" and dst.name == "float":
        return True
    if src.name == "list" and dst.name == "list":
        return can_connect(src.item, dst.item)
    if src.name in MARKERS and dst.name in MARKERS:
        return issubclass(MARKERS[src.name], MARKERS[dst.name])
    return False


def needs_float_conversion(src: PortType, dst: PortType) -> bool:
    return src.name == "int" and dst.name == "float"


class UnsupportedType(TypeError):
    pass


def port_type_of(annotation: Any) -> tuple[PortType, bool]:
    """Normalise a Python annotation to (PortType, accepts None)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return port_type_of(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise UnsupportedType(f"a union of several types ({annotation}) is not a port type")
        return port_type_of(members[0])[0], True
    if origin is Literal:
        kinds = {type(v).__name__ for v in typing.get_args(annotation)}
        if len(kinds) != 1 or next(iter(kinds)) not in PRIMITIVES:
            raise UnsupportedType(f"{annotation} mixes value types; a Literal port needs one primitive type")
        return PortType(kinds.pop()), False
    if origin is list or annotation is list:
        args = typing.get_args(annotation)
        return PortType("list", port_type_of(args[0])[0] if args else ANY), False
    if annotation is Any:
        return ANY, True
    if isinstance(annotation, type):
        if annotation.__name__ in PRIMITIVES and PRIMITIVES[annotation.__name__] is annotation:
            return PortType(annotation.__name__), False
        if issubclass(annotation, PortKind) and annotation.__name__ in MARKERS:
            return PortType(annotation.__name__), False
    raise UnsupportedType(f"{annotation!r} is not a port type; use one of {', '.join(TYPE_NAMES)}")


def parse_type_name(text: str) -> PortType:
    """Parse a type as written in a graph's `inputs:` section (`int`, `list[float]`, `Latent`, ...)."""
    text = text.strip()
    if text == "list":
        return PortType("list", ANY)
    if text.startswith("list[") and text.endswith("]"):
        return PortType("list", parse_type_name(text[5:-1]))
    if text in PRIMITIVES or text in MARKERS or text == "Any":
        return PortType(text)
    raise UnsupportedType(f"unknown type `{text}`; use one of {', '.join(TYPE_NAMES)}")


def python_annotation(t: PortType) -> Any:
    """The Python annotation pydantic validates a value of type `t` against."""
    if t.name == "list":
        return list[python_annotation(t.item)]
    if t.name in PRIMITIVES:
        return PRIMITIVES[t.name]
    if t.name in MARKERS:
        return MARKERS[t.name]
    return Any


def type_of_literal(value: Any) -> PortType:
    """The port type a YAML literal carries (used for repeat state initialised from a literal)."""
    if isinstance(value, bool):
        return PortType("bool")
    for name in ("int", "float", "str"):
        if isinstance(value, PRIMITIVES[name]):
            return PortType(name)
    if isinstance(value, list):
        items = {type_of_literal(v) for v in value}
        if items == {INT, FLOAT}:
            return PortType("list", FLOAT)
        return PortType("list", items.pop() if len(items) == 1 else ANY)
    return ANY
