"""Executor events. Hooks (progress bars, metadata writers, loggers) are callables that receive them.

Events are only built when at least one hook listens, so an unobserved run pays nothing for them.
Node ids inside an included graph are qualified by the including node: `step/unet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RunStarted:
    graph: str
    outputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeStarted:
    node_id: str
    node_type: str


@dataclass(frozen=True, slots=True)
class NodeFinished:
    node_id: str
    node_type: str
    seconds: float


@dataclass(frozen=True, slots=True)
class NodeCached:
    """The node did not run: its outputs came from the run's node cache (see exec/cache.py)."""

    node_id: str
    node_type: str


@dataclass(frozen=True, slots=True)
class RepeatStarted:
    node_id: str
    total: int


@dataclass(frozen=True, slots=True)
class RepeatIteration:
    """Sent after iteration `index` (0-based) of `total` has finished; `state`: the carried values (in the
    order of the repeat's `state`) the next iteration starts from, e.g. for a latent preview."""

    node_id: str
    index: int
    total: int
    state: tuple = ()


@dataclass(frozen=True, slots=True)
class RepeatFinished:
    node_id: str
    total: int


@dataclass(frozen=True, slots=True)
class RunFinished:
    graph: str
    seconds: float
    outputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunFailed:
    graph: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class RunCancelled:
    graph: str
    node_id: str | None
