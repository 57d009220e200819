"""Per-run event logs: the worker appends, Server-Sent-Event streams follow, late clients replay.

An event is a small JSON-able dict with a `type`:
  queued, started                              the run's life
  node_started {node, node_type}              a top-level node began
  node_finished {node, node_type, seconds, cached}   ... ended (cached: served from the node cache)
  progress {node, index, total, preview?}     iteration `index` (1-based) of repeat `node` finished;
                                              `preview`: a small PNG data URL of the current latents
  finished {outputs}, failed {error}, cancelled {error}   the end; nothing follows

Logs of running and recent runs live in memory; the store keeps every finished run's events (previews
left out), so a client connecting after a restart still gets them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from typing import Any, Optional

from nodegraph.exec import events as ev
from nodegraph.exec.interrupt import refresh as refresh_cancel_checks

TERMINAL = ("finished", "failed", "cancelled")
KEEP_LOGS = 256  # finished runs whose logs stay in memory
# Progress events wake following clients at most this often; the others reach them with the next wake. Each wake
# takes the event loop's turn at the GIL from the worker: one per step cost a warm 25-step digits run ~7 ms (4 %).
PROGRESS_WAKE_SECONDS = 0.05


class EventLog:
    def __init__(self, events: Optional[list[dict]] = None):
        self.events: list[dict] = list(events or [])
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._ended = threading.Event()  # set with the terminal event: what a cancel waits on
        self._following = 0  # clients following the log now
        self._drop_pending = False  # previews to drop once they have left
        self._woken = float("-inf")  # when clients were last woken (time.monotonic)
        if self.done:
            self._ended.set()

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1]["type"] in TERMINAL

    def append(self, event: dict) -> None:
        event.setdefault("time", time.time())
        with self._lock:
            event["seq"] = len(self.events)
            self.events.append(event)
            now = time.monotonic()
            if event["type"] == "progress" and now - self._woken < PROGRESS_WAKE_SECONDS:
                waiters = []  # it goes out with the next wake: a later progress event or any other event
            else:
                waiters, self._waiters, self._woken = self._waiters, [], now
        if event["type"] in TERMINAL:
            self._ended.set()
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # that client's loop is gone
                pass

    def wait_ended(self, timeout: float) -> bool:
        """Block until the run's terminal event is in the log, at most `timeout` seconds; whether it is."""
        return self._ended.wait(timeout)

    def drop_previews(self) -> None:
        """Keep only the last preview once a run has ended: a finished run's log is kept for replay, and a
        thousand steps of previews would be megabytes. While clients follow the log this waits for the last of
        them to leave: a live client gets every preview, however far behind a loaded machine leaves it."""
        with self._lock:
            if self._following:
                self._drop_pending = True
            else:
                self._drop_previews()

    def _drop_previews(self) -> None:  # with the lock held
        shown = [i for i, e in enumerate(self.events) if "preview" in e]
        for i in shown[:-1]:
            self.events[i] = {k: v for k, v in self.events[i].items() if k != "preview"}
        self._drop_pending = False

    async def follow(self, start: int = 0):
        """Yield events from index `start` on, waiting for new ones, until the terminal event; at once nothing
        when the run has ended and `start` is past its last event (an SSE client reconnecting after the end).
        A client that comes after the end gets the replay (only the last preview), whether or not the worker
        has dropped the others yet."""
        with self._lock:
            self._following += 1
            late = self.done
            shown = [i for i, e in enumerate(self.events) if "preview" in e] if late else []
        try:
            async for event in self._follow(start, set(shown[:-1])):
                yield event
        finally:
            with self._lock:
                self._following -= 1
                if not self._following and self._drop_pending:
                    self._drop_previews()

    async def _follow(self, start: int, replay_without_preview: set[int]):
        index = start
        while True:
            with self._lock:
                new = self.events[index:]
                if not new and self.done:  # resumed at or past the last event of an ended run: nothing follows
                    return
                if not new:
                    flag = asyncio.Event()
                    self._waiters.append((asyncio.get_running_loop(), flag))
            if new:
                for offset, event in enumerate(new):
                    if index + offset in replay_without_preview:
                        event = {k: v for k, v in event.items() if k != "preview"}
                    yield event
                    if event["type"] in TERMINAL:
                        return
                index += len(new)
                continue
            try:
                await asyncio.wait_for(flag.wait(), timeout=15)
            except asyncio.TimeoutError:
                yield None  # the caller sends a keep-alive comment


class EventLogs:
    """Logs by run id: live ones, plus the most recent finished ones."""

    def __init__(self):
        self._logs: OrderedDict[str, EventLog] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, run_id: str) -> EventLog:
        with self._lock:
            log = self._logs.get(run_id)
            if log is None:
                log = self._logs[run_id] = EventLog()
            self._trim()
            return log

    def get(self, run_id: str) -> Optional[EventLog]:
        with self._lock:
            return self._logs.get(run_id)

    def _trim(self) -> None:
        if len(self._logs) <= 2 * KEEP_LOGS:  # amortized: one scan per KEEP_LOGS new runs
            return
        done = [k for k, log in self._logs.items() if log.done]
        for key in done[:max(0, len(done) - KEEP_LOGS)]:
            del self._logs[key]


class RunHook:
    """Executor hook turning events into the server's JSON events for one run.

    Only top-level nodes are reported as nodes (a repeat's body runs once per iteration: its progress is
    the `progress` event); every repeat reports its iterations. Counts executed and cached nodes.
    """

    def __init__(self, log: EventLog, preview: bool = False):
        self.log, self.preview = log, preview
        self.family = "sd15"  # the latent→RGB map of previews; the worker sets it once the graph is loaded
        self.executed = self.cached = 0
        self._depth = 0

    def __call__(self, event: Any) -> None:
        kind = type(event)
        if kind is ev.RepeatIteration:
            item = {"type": "progress", "node": event.node_id, "index": event.index + 1, "total": event.total}
            if self.preview and event.state:
                from nodegraph.serve.preview import latent_preview

                image = latent_preview(event.state[0], self.family)
                if image:
                    item["preview"] = image
            self.log.append(item)
        elif kind is ev.RepeatStarted:
            self._depth += 1
        elif kind is ev.RepeatFinished:
            self._depth -= 1
        elif self._depth or "/" in (getattr(event, "node_id", "") or ""):
            return
        elif kind is ev.NodeStarted:
            refresh_cancel_checks()  # models loaded by the nodes before this one stop between blocks when cancelled
            self.log.append({"type": "node_started", "node": event.node_id, "node_type": event.node_type})
        elif kind is ev.NodeFinished:
            self.executed += 1
            self.log.append({"type": "node_finished", "node": event.node_id, "node_type": event.node_type,
                             "seconds": round(event.seconds, 6), "cached": False})
        elif kind is ev.NodeCached:
            self.cached += 1
            self.log.append({"type": "node_finished", "node": event.node_id, "node_type": event.node_type,
                             "seconds": 0.0, "cached": True})


def without_previews(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "preview"} for e in events]
