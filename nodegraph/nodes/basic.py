"""Plain-Python nodes: constants, arithmetic, lists, text, a sleep (for cancellation) and a solid image.

They let graphs (and the graph core's tests) run without any model.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from nodegraph.core import Field, Node, Ports, RunContext, node
from nodegraph.core.types import Image


@node("Int", version=1)
class Int(Node):
    """An integer constant."""

    class Inputs(Ports):
        value: int

    class Outputs(Ports):
        value: int

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        return {"value": i.value}


@node("Float", version=1)
class Float(Node):
    """A float constant."""

    class Inputs(Ports):
        value: float

    class Outputs(Ports):
        value: float

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        return {"value": i.value}


@node("String", version=1)
class String(Node):
    """A text constant."""

    class Inputs(Ports):
        value: str

    class Outputs(Ports):
        value: str

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        return {"value": i.value}


class _Pair(Ports):
    a: float
    b: float


class _Number(Ports):
    value: float


@node("Add", version=1)
class Add(Node):
    """a + b."""

    Inputs, Outputs = _Pair, _Number

    def run(self, i: _Pair, ctx: RunContext) -> dict:
        return {"value": i.a + i.b}


@node("Subtract", version=1)
class Subtract(Node):
    """a - b."""

    Inputs, Outputs = _Pair, _Number

    def run(self, i: _Pair, ctx: RunContext) -> dict:
        return {"value": i.a - i.b}


@node("Multiply", version=1)
class Multiply(Node):
    """a * b."""

    Inputs, Outputs = _Pair, _Number

    def run(self, i: _Pair, ctx: RunContext) -> dict:
        return {"value": i.a * i.b}


@node("Divide", version=1)
class Divide(Node):
    """a / b (raises on division by zero)."""

    Inputs, Outputs = _Pair, _Number

    def run(self, i: _Pair, ctx: RunContext) -> dict:
        return {"value": i.a / i.b}


@node("Range", version=1)
class Range(Node):
    """The integers start, start + step, ... below stop (Python's range)."""

    class Inputs(Ports):
        stop: int
        start: int = 0
        step: int = Field(1, description="must not be 0")

    class Outputs(Ports):
        values: list[int]

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        if i.step == 0:
            raise ValueError("`step` must not be 0")
        return {"values": list(range(i.start, i.stop, i.step))}


@node("ListLength", version=1)
class ListLength(Node):
    """The number of elements of a list."""

    class Inputs(Ports):
        values: list[Any]

    class Outputs(Ports):
        length: int

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        return {"length": len(i.values)}


@node("Sum", version=1)
class Sum(Node):
    """The sum of a list of numbers."""

    class Inputs(Ports):
        values: list[float]

    class Outputs(Ports):
        value: float

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        return {"value": float(sum(i.values))}


@node("FormatString", version=1)
class FormatString(Node):
    """Python `str.format` of `template` with the named values `x` and `y` (e.g. "step {x} of {y}")."""

    class Inputs(Ports):
        template: str
        x: Any = None
        y: Any = None

    class Outputs(Ports):
        text: str

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        return {"text": i.template.format(x=i.x, y=i.y)}


@node("Sleep", version=1)
class Sleep(Node):
    """Waits `seconds`, then passes `value` through; stops early when the run is cancelled."""

    class Inputs(Ports):
        seconds: float = Field(ge=0)
        value: float = 0.0

    class Outputs(Ports):
        value: float

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        deadline = time.monotonic() + i.seconds
        while (left := deadline - time.monotonic()) > 0:
            ctx.check_cancelled()
            time.sleep(min(left, 0.02))
        return {"value": i.value}


@node("SolidImage", version=1)
class SolidImage(Node):
    """A batch of gray images of brightness `value` in [0, 1], shape (batch, 3, height, width)."""

    class Inputs(Ports):
        value: float = Field(0.5, ge=0, le=1)
        width: int = Field(8, gt=0)
        height: int = Field(8, gt=0)
        batch: int = Field(1, ge=1)
        color: Optional[list[float]] = Field(None, description="RGB in [0, 1]; overrides `value`")

    class Outputs(Ports):
        image: Image

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        import torch

        rgb = i.color if i.color is not None else [i.value] * 3
        if len(rgb) != 3:
            raise ValueError(f"`color` needs 3 values (R, G, B), got {len(rgb)}")
        pixel = torch.tensor(rgb, dtype=ctx.dtype, device=ctx.device).view(1, 3, 1, 1)
        return {"image": pixel.expand(i.batch, 3, i.height, i.width).contiguous()}
