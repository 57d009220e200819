"""Plain-Python nodes: constants, arithmetic, lists, text, a sleep (for cancellation) and a solid image.

They let graphs (and the graph core's tests) run without any model.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from nodegraph.core import Field, Node, Ports, RunContext, node
from nodegraph.core.template import TemplateError, check_template, render
from nodegraph.core.types import Image
from nodegraph.spec.limits import active_limits

_RAISE_LIST = "make fewer elements, or raise the limit with NODEGRAPH_MAX_LIST_LENGTH"


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


def _range_problem(start: int, stop: int, step: int) -> Optional[str]:
    """Why range(start, stop, step) may not be made: a zero step, or more elements than the limit."""
    if step == 0:
        return "`step` must not be 0"
    limit = active_limits().max_list_length
    if len(range(start, stop, step)) > limit:
        return (f"range({start}, {stop}, {step}) would have {len(range(start, stop, step)):,} elements, over the "
                f"limit of {limit:,} for a list")
    return None


@node("Range", version=1)
class Range(Node):
    """The integers start, start + step, ... below stop (Python's range), at most `max_list_length` of them
    (spec/limits.py): checked at validation when the inputs are known, else before the list is made."""

    class Inputs(Ports):
        stop: int
        start: int = 0
        step: int = Field(1, description="must not be 0")

    class Outputs(Ports):
        values: list[int]

    @classmethod
    def check_inputs(cls, known):
        if all(isinstance(known.get(k), int) for k in ("stop", "start", "step")):
            problem = _range_problem(known["start"], known["stop"], known["step"])
            if problem:
                return ("stop",), problem, _RAISE_LIST
        return None

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        problem = _range_problem(i.start, i.stop, i.step)
        if problem:
            raise ValueError(f"{problem}; {_RAISE_LIST}")
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
    """`template` with `{x}` and `{y}` filled in (e.g. "step {x} of {y:>4}"), in Python's format syntax but
    only plain fields: no attribute or item access, widths and precisions at most `max_format_width`."""

    class Inputs(Ports):
        template: str
        x: Any = None
        y: Any = None

    class Outputs(Ports):
        text: str

    @classmethod
    def check_inputs(cls, known):
        if isinstance(known.get("template"), str):
            try:
                check_template(known["template"], ("x", "y"), active_limits().max_format_width)
            except TemplateError as exc:
                return ("template",), str(exc), "write fields as {x} or {y}, e.g. \"step {x} of {y:>4}\""
        return None

    def run(self, i: Inputs, ctx: RunContext) -> dict:
        try:
            return {"text": render(i.template, {"x": i.x, "y": i.y}, active_limits().max_format_width)}
        except TemplateError as exc:
            raise ValueError(f"`template`: {exc}") from None


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
