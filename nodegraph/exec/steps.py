"""The executor's hot path: planned steps and the loop that runs them.

Everything here was decided at plan time (slots, literals, defaults, which values to free), so running a
node costs a dict copy, a few list reads and the call itself: no validation, no lookups by name.
Values live in a flat list of slots; a slot is cleared right after its last reader has run.
"""

from __future__ import annotations

import traceback
from time import perf_counter
from typing import Any, Callable

from nodegraph.core.node import Ports
from nodegraph.exec.events import NodeFinished, NodeStarted
from nodegraph.exec.hooks import RunCancelledError


class NodeExecutionError(RuntimeError):
    """A node raised while running; names the node, its type, and (inside repeats) the iteration."""

    def __init__(self, node_id: str, node_type: str, cause: BaseException):
        super().__init__(node_id, node_type, cause)
        self.node_id, self.node_type, self.cause = node_id, node_type, cause
        self.iterations: list[tuple[str, int]] = []  # innermost repeat first: (repeat id, 0-based index)

    @property
    def where(self) -> str:
        frames = traceback.extract_tb(self.cause.__traceback__)
        return f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""

    def __str__(self) -> str:
        loops = "".join(f" in iteration {i} of repeat `{r}`" for r, i in self.iterations)
        where = f" (at {self.where})" if self.where else ""
        return (f"node `{self.node_id}` ({self.node_type}) failed{loops}: "
                f"{type(self.cause).__name__}: {self.cause}{where}")


class NodeStep:
    """Run one registered node type."""

    __slots__ = ("node_id", "label", "run", "make_inputs", "literals", "refs", "converts", "outputs", "free")

    def __init__(self, node_id: str, label: str, run: Callable, make_inputs: Callable, literals: dict,
                 refs: list[tuple[str, int]], converts: tuple[str, ...]):
        self.node_id, self.label, self.run, self.make_inputs = node_id, label, run, make_inputs
        self.literals, self.refs, self.converts = literals, refs, converts
        self.outputs: list[tuple[str, int]] = []
        self.free: list[int] = []

    @property
    def reads(self) -> list[int]:
        return [slot for _, slot in self.refs]

    @property
    def node_type(self):
        """The NodeType this step runs: its declarations (location ports, `model_reads`)."""
        return type(self.run.__self__).node_type

    def execute(self, values: list, ctx) -> None:
        args = self.literals.copy()
        for name, slot in self.refs:
            args[name] = values[slot]
        for name in self.converts:
            args[name] = float(args[name])
        result = self.run(self.make_inputs(args), ctx)
        if type(result) is not dict:
            if not isinstance(result, Ports):
                raise TypeError(f"run() returned {type(result).__name__}; return self.Outputs(...) or a dict")
            result = result.__dict__
        try:
            for port, slot in self.outputs:
                values[slot] = result[port]
        except KeyError as exc:
            raise TypeError(f"run() returned no value for output `{exc.args[0]}`") from None


class SubgraphStep:
    """Run an included graph file as one node: its own plan, over its own slots."""

    __slots__ = ("node_id", "label", "plan", "literals", "refs", "converts", "outputs", "free")

    def __init__(self, node_id: str, label: str, plan, literals: list[tuple[int, Any]],
                 refs: list[tuple[int, int]], converts: frozenset):
        self.node_id, self.label, self.plan = node_id, label, plan
        self.literals, self.refs, self.converts = literals, refs, converts
        self.outputs: list[tuple[int, int]] = []  # (slot in the sub-plan, slot here)
        self.free: list[int] = []

    @property
    def reads(self) -> list[int]:
        return [slot for _, slot in self.refs]

    def execute(self, values: list, ctx) -> None:
        inner = [None] * self.plan.n_slots
        for slot, value in self.literals:
            inner[slot] = value
        for inner_slot, slot in self.refs:
            inner[inner_slot] = float(values[slot]) if inner_slot in self.converts else values[slot]
        run_steps(self.plan.steps, inner, ctx)
        for inner_slot, slot in self.outputs:
            values[slot] = inner[inner_slot]


def run_steps(steps: list, values: list, ctx) -> None:
    """Run planned steps in order, checking for cancellation at every node boundary."""
    hooks = ctx.hooks
    cancel = ctx.cancel
    for step in steps:
        if cancel.cancelled:
            raise RunCancelledError(step.node_id)
        ctx.node_id = step.node_id
        if hooks:
            ctx.emit(NodeStarted(step.node_id, step.label))
            started = perf_counter()
        try:
            step.execute(values, ctx)
        except (NodeExecutionError, RunCancelledError):
            raise
        except Exception as exc:
            raise NodeExecutionError(step.node_id, step.label, exc) from exc
        for slot in step.free:
            values[slot] = None
        if hooks:
            ctx.emit(NodeFinished(step.node_id, step.label, perf_counter() - started))
