"""The `repeat` node at run time: the body was planned once; each iteration only refills a few slots.

Values the body reads from outside (outer nodes, graph inputs) are copied into the body's slots once per
run of the repeat, since they are constant for the run.
"""

from __future__ import annotations

from typing import Any

from nodegraph.exec.events import RepeatFinished, RepeatIteration, RepeatStarted
from nodegraph.exec.hooks import RunCancelledError
from nodegraph.exec.steps import NodeExecutionError, run_steps


class BodyPlan:
    __slots__ = ("n_slots", "steps", "outer", "state_slots", "item_slot", "index_slot", "next", "collect")

    def __init__(self):
        self.n_slots = 0
        self.steps: list = []
        self.outer: list[tuple[int, int]] = []  # (slot in the enclosing scope, slot in the body)
        self.state_slots: list[int] = []
        self.item_slot = self.index_slot = 0
        self.next: list[tuple[int | None, Any, bool]] = []  # per state: (body slot or None, literal, to float)
        self.collect: list[int] = []


def as_sequence(value: Any, node_id: str):
    """A list/tuple/range, or a 1-D tensor (checked without importing torch), of at most `max_list_length`
    elements (spec/limits.py)."""
    from nodegraph.spec.limits import active_limits

    limit = active_limits().max_list_length
    if hasattr(value, "__len__") and len(value) > limit:
        raise ValueError(f"repeat `{node_id}`: `over` has {len(value):,} elements, over the limit of {limit:,} "
                         "(raise it with NODEGRAPH_MAX_LIST_LENGTH)")
    if isinstance(value, (list, tuple, range)):
        return value
    dim = getattr(value, "dim", None)
    if callable(dim):
        if dim() != 1:
            raise TypeError(f"repeat `{node_id}`: `over` must be 1-D, got a tensor of shape {tuple(value.shape)}")
        return value
    raise TypeError(f"repeat `{node_id}`: `over` must be a list or a 1-D tensor, got {type(value).__name__}")


class RepeatStep:
    __slots__ = ("node_id", "label", "body", "over_slot", "over_literal", "state_init", "outputs", "free")

    def __init__(self, node_id: str, body: BodyPlan, over_slot: int | None, over_literal: Any,
                 state_init: list[tuple[int | None, Any]]):
        self.node_id, self.label, self.body = node_id, "repeat", body
        self.over_slot, self.over_literal, self.state_init = over_slot, over_literal, state_init
        self.outputs: list[tuple[int, int]] = []  # (index into final state + collected lists, slot here)
        self.free: list[int] = []

    @property
    def reads(self) -> list[int]:
        own = [s for s, _ in self.state_init if s is not None]
        return own + [s for s, _ in self.body.outer] + ([self.over_slot] if self.over_slot is not None else [])

    def execute(self, values: list, ctx) -> None:
        body, node_id = self.body, self.node_id
        items = as_sequence(values[self.over_slot] if self.over_slot is not None else self.over_literal, node_id)
        total = len(items)
        inner = [None] * body.n_slots
        for outer_slot, inner_slot in body.outer:
            inner[inner_slot] = values[outer_slot]
        state = [values[slot] if slot is not None else literal for slot, literal in self.state_init]
        collected: list[list] = [[] for _ in body.collect]
        hooks, cancel, steps = ctx.hooks, ctx.cancel, body.steps
        state_slots, item_slot, index_slot = body.state_slots, body.item_slot, body.index_slot
        if hooks:
            ctx.emit(RepeatStarted(node_id, total))
        for index, item in enumerate(items):
            if cancel.cancelled:
                raise RunCancelledError(node_id)
            for slot, value in zip(state_slots, state):
                inner[slot] = value
            inner[item_slot] = item
            inner[index_slot] = index
            try:
                run_steps(steps, inner, ctx)
            except NodeExecutionError as exc:
                exc.iterations.append((node_id, index))
                raise
            state = [(float(inner[slot]) if to_float else inner[slot]) if slot is not None else literal
                     for slot, literal, to_float in body.next]
            for values_so_far, slot in zip(collected, body.collect):
                values_so_far.append(inner[slot])
            if hooks:
                ctx.emit(RepeatIteration(node_id, index, total, tuple(state)))
        ctx.node_id = node_id
        if hooks:
            ctx.emit(RepeatFinished(node_id, total))
        results = state + collected
        for index, slot in self.outputs:
            values[slot] = results[index]
