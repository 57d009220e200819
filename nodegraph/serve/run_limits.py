"""The server's per-run limits: what one run may ask of the single worker, checked before it is queued, and
its wall time, enforced while it runs.

Before queueing, every node input named `width`/`height` (an image or latent size), `steps` and
`batch_size`/`batch` whose value is known (a literal, or a graph input's value; included graphs followed) is
read from the checked graph:

* an image's pixels (`width × height` of one node) at most `max_pixels`;
* pixels × steps (the largest image times the largest step count) at most `max_pixel_steps`: the work of a
  denoising loop grows with both;
* a batch at most `max_batch`.

A value computed by another node cannot be read before the run; the wall-time limit (`max_run_seconds`)
bounds such a run, and any other: a run still going then is stopped like a cancelled one (at the next model
layer, exec/interrupt.py) and marked `failed` with the limit named. The defaults leave room for SDXL at 1024²
with 150 steps, batches of 16.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from nodegraph.spec.errors import GraphError
from nodegraph.spec.location_ports import walk  # a graph level's nodes, repeat bodies included


@dataclass(frozen=True)
class RunLimits:
    max_pixels: int = 2048 * 1024
    """`width × height` of one image or latent, in pixels (`--max-pixels`): 2 megapixels, SDXL's 1024² and its
    portrait/landscape sizes. Attention layers cost (pixels)² in time: one layer of a larger image can take
    minutes on a CPU, and a cancel or the time limit acts only between layers."""
    max_pixel_steps: int = 1024 * 1024 * 150
    """The largest image's pixels times the largest `steps` (`--max-pixel-steps`)."""
    max_batch: int = 16
    """`batch_size` / `batch` of any node (`--max-batch`)."""
    max_run_seconds: Optional[float] = 3600.0
    """Wall time of one run, from its start to its end (`--max-run-seconds`; None: no limit)."""


OPTION = {"max_pixels": "--max-pixels", "max_pixel_steps": "--max-pixel-steps", "max_batch": "--max-batch"}


def run_limit_problems(checked, values: dict[str, Any], limits: RunLimits) -> list[GraphError]:
    """Every per-run limit the known values pass, as located errors (none: the run may be queued)."""
    sizes: list[tuple[int, str]] = []  # (pixels, where)
    steps: list[tuple[int, str]] = []
    problems = []
    for node_where, given in _known_values(checked, values):
        width, height = given.get("width"), given.get("height")
        if _is_int(width) and _is_int(height):
            where = _where(node_where, given, "width", "height")
            sizes.append((width[0] * height[0], where))
            if width[0] * height[0] > limits.max_pixels:
                problems.append(_too_large(where, f"an image of {width[0]}×{height[0]} = {width[0] * height[0]:,} "
                                           "pixels", limits, "max_pixels"))
        if _is_int(given.get("steps")):
            steps.append((given["steps"][0], _where(node_where, given, "steps")))
        for port in ("batch_size", "batch"):
            if _is_int(given.get(port)) and given[port][0] > limits.max_batch:
                problems.append(_too_large(_where(node_where, given, port), f"a batch of {given[port][0]}",
                                           limits, "max_batch"))
    if sizes and steps:
        (pixels, at_size), (count, at_steps) = max(sizes), max(steps)
        if pixels * count > limits.max_pixel_steps and pixels <= limits.max_pixels:
            problems.append(_too_large(f"{at_size}, {at_steps}", f"{pixels:,} pixels × {count} steps = "
                                       f"{pixels * count:,}", limits, "max_pixel_steps"))
    return problems


def _too_large(where: str, asked: str, limits: RunLimits, limit: str) -> GraphError:
    return GraphError("run_too_large", where, f"{asked}: this server runs at most {getattr(limits, limit):,}",
                      f"ask for less (fewer pixels, steps or images); the operator sets this with {OPTION[limit]}",
                      "<request>")


def _is_int(known) -> bool:
    return known is not None and isinstance(known[0], int) and not isinstance(known[0], bool)


def _where(node_where: str, given: dict, *ports: str) -> str:
    """Where the user gave the values: the graph inputs they came from, else the node's ports."""
    places = [given[p][1] for p in ports]
    return places[0] if len(set(places)) == 1 else "/".join(places) if all("inputs." in p for p in places) \
        else node_where + "." + "/".join(ports)


def _known_values(checked, values: dict[str, Any], prefix: str = ""):
    """(node path, {port: (value, where)}) for every node, with the values known before the run."""
    from nodegraph.spec.document import Ref

    for node in walk(checked.nodes):
        given: dict[str, tuple[Any, str]] = {}
        for port, value in node.values.items():
            if isinstance(value, Ref):
                if value.scope == "inputs" and value.name in values:
                    given[port] = (values[value.name], f"{prefix}inputs.{value.name}")
            else:
                given[port] = (value, f"{prefix}nodes.{node.id}.{port}")
        yield f"{prefix}nodes.{node.id}", given
        if node.kind == "graph" and node.subgraph is not None:
            inner = {**node.subgraph.defaults, **{p: v for p, (v, _) in given.items()}}
            yield from _known_values(node.subgraph, inner, f"{prefix}nodes.{node.id}/")


class Watchdog:
    """One long-lived thread that cancels runs past their wall-time limit (`deadline(cancel, seconds)`).

    A thread per run (a `threading.Timer`) cost every run a thread start, and `Thread.start()` waits until the
    new thread is scheduled: ~0.1 ms on an idle machine, ~35 ms measured in a warm server run on a loaded one.
    Registering a deadline here only pushes it on a heap and wakes this thread; stopping one takes it off.
    """

    def __init__(self, name: str = "nodegraph-deadlines"):
        self._name = name
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, RunDeadline]] = []  # a heap of (monotonic due time, sequence, deadline)
        self._count = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def start(self) -> None:
        """Start the thread now (else the first watched run starts it)."""
        with self._wake:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def deadline(self, cancel, seconds: Optional[float]) -> RunDeadline:
        """A run's deadline, watched from now on (`seconds` None: never expires, nothing is watched)."""
        deadline = RunDeadline(cancel, seconds, self)
        if seconds:
            self.start()
            with self._wake:
                heapq.heappush(self._due, (time.monotonic() + seconds, next(self._count), deadline))
                self._wake.notify()
        return deadline

    def _forget(self, deadline: RunDeadline) -> None:
        with self._wake:
            kept = [entry for entry in self._due if entry[2] is not deadline]
            if len(kept) != len(self._due):
                heapq.heapify(kept)
                self._due = kept
                self._wake.notify()

    def close(self) -> None:
        """Stop the thread; deadlines still watched never expire."""
        with self._wake:
            self._closed = True
            self._due.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        with self._wake:
            while not self._closed:
                if not self._due:
                    self._wake.wait()
                    continue
                left = self._due[0][0] - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                _, _, deadline = heapq.heappop(self._due)
                deadline._expire()


class RunDeadline:
    """Cancels a run's token after `seconds` (None: never); `expired` then tells the worker why it stopped.
    Made by `Watchdog.deadline`."""

    def __init__(self, cancel, seconds: Optional[float], watchdog: Watchdog):
        self.seconds, self.expired = seconds, False
        self._cancel, self._watchdog = cancel, watchdog

    @property
    def message(self) -> str:
        return (f"the run took longer than this server's limit of {self.seconds:g} s and was stopped "
                "(the operator sets it with --max-run-seconds)")

    def _expire(self) -> None:
        self.expired = True
        self._cancel.cancel()

    def stop(self) -> None:
        """The run ended: it is no longer watched (a deadline that already expired stays expired)."""
        if self.seconds:
            self._watchdog._forget(self)
