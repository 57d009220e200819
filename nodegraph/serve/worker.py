"""The one worker thread: takes the next queued run (priority, then arrival), runs it, writes its outputs.

Models stay loaded across runs (the model cache) and node outputs are reused (the node cache), so a run
whose inputs changed only in part re-runs only that part. Output files go to `<data>/outputs/<run id>/`,
written atomically by the core's writers (never overwritten, never half-written).
"""

from __future__ import annotations

import pathlib
import threading
import time
import traceback
from typing import Any, Optional

from nodegraph.serve.events import EventLogs, RunHook, without_previews
from nodegraph.serve.run_limits import Watchdog


class Worker:
    max_run_seconds: Optional[float] = None  # a run still going after this is failed (set by the service)

    def __init__(self, store, documents, logs: EventLogs, models, outputs_cache, out_dir: pathlib.Path,
                 device: Any = None, dtype: Any = None):
        self.store, self.documents, self.logs = store, documents, logs
        self.models, self.outputs_cache = models, outputs_cache
        self.out_dir, self.device, self.dtype = out_dir, device, dtype
        self.running: Optional[str] = None
        self._cancel = None
        self._cancel_requested: set[str] = set()  # running in the store, not yet picked up by this thread
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nodegraph-worker", daemon=True)
        self._watchdog = Watchdog()  # one thread for every run's wall-time limit, not one per run

    def start(self) -> None:
        self._watchdog.start()
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            if self._cancel is not None:
                self._cancel.cancel()
        self._thread.join(timeout)
        self._watchdog.close()

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, run_id: str) -> bool:
        """Cancel a run marked running; it stops at the next node or iteration boundary."""
        with self._lock:
            if self.running == run_id and self._cancel is not None:
                self._cancel.cancel()
            else:
                self._cancel_requested.add(run_id)

    def _loop(self) -> None:
        while not self._stop.is_set():
            run = self.store.claim_next()
            if run is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self.execute(run)
            except Exception:  # a bug here must not stop the queue; the run is marked failed
                error = "internal error: " + traceback.format_exc(limit=3)
                self.store.finish(run["id"], "failed", error=error)
                self.logs.open(run["id"]).append({"type": "failed", "error": error})

    def execute(self, run: dict) -> None:
        from nodegraph.core.mode import RunMode
        from nodegraph.exec.hooks import CancelToken, RunCancelledError
        from nodegraph.exec.steps import NodeExecutionError
        from nodegraph.exec.interrupt import cancel_between_blocks
        from nodegraph.runner import Runner, describe_failure
        from nodegraph.serve.preview import preview_family
        from nodegraph.spec.errors import ValidationFailed
        from nodegraph.spec.values import bind_input_values

        run_id = run["id"]
        log = self.logs.open(run_id)
        cancel = CancelToken()
        with self._lock:
            self.running, self._cancel = run_id, cancel
            if run_id in self._cancel_requested:
                self._cancel_requested.discard(run_id)
                cancel.cancel()
        deadline = self._watchdog.deadline(cancel, self.max_run_seconds)
        hook = RunHook(log, preview=run["preview"])
        memory = memory_hook(self.device)  # each node's peak and the run's, kept in the run record
        log.append({"type": "started"})
        status, error, outputs, seconds = "failed", None, None, None
        try:
            graph = self.documents.graph(run["digest"])
            hook.family = preview_family(graph.checked)
            values = bind_input_values(graph.checked, run["inputs"])
            # fast mode: loaders prepare models of their own (nodegraph/nodes/loaders.py)
            runner = Runner(RunMode(self.device, self.dtype, fast=run["fast"], weights=run.get("weights")),
                            components=self.models, cache=self.outputs_cache)
            started = time.perf_counter()
            with cancel_between_blocks(cancel, self.models):  # a cancel (or the deadline) stops inside a step too
                result = runner.run(graph, values, hooks=(hook, memory), cancel=cancel,
                                    outputs=run["wanted"] or None)
            seconds = time.perf_counter() - started
            outputs = self._write(run_id, runner, graph, values, result)
            status = "finished"
        except RunCancelledError as exc:
            # stopped by the server shutting down, not by a user: failed, like a run a crash interrupted
            status, error = ("failed", "server stopped") if self._stop.is_set() else ("cancelled", str(exc))
            if deadline.expired:  # the server's --max-run-seconds, not a user
                status, error = "failed", deadline.message
        except NodeExecutionError as exc:
            error = describe_failure(exc)  # with the graph inputs that fed the node, as the CLI prints it
        except ValidationFailed as exc:
            error = exc.report()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            deadline.stop()
            with self._lock:
                self.running = self._cancel = None
        end: dict = {"type": status}
        if status == "finished":
            end["outputs"] = outputs
        else:
            end["error"] = error
        end.update(time=time.time(), seq=len(log.events))
        # stored first: a client that sees the last event and then asks for the run finds it final
        self.store.finish(run_id, status, error=error, outputs=outputs, executed=hook.executed, cached=hook.cached,
                          run_seconds=seconds, events=without_previews([*log.events, end]),
                          memory=memory.report.as_json() if memory.report.nodes else None)
        log.append(end)
        log.drop_previews()

    def _write(self, run_id: str, runner, graph, values: dict, result: dict) -> dict:
        written = runner.write(graph, values, result, self.out_dir / run_id)
        return {w.name: {"files": [path.name for path in w.files]} if w.files is not None else {"value": w.summary}
                for w in written}


def memory_hook(device: Any):
    """A MemoryHook (nodegraph/exec/memory_report.py) for a run on `device` (None: CUDA when present). The
    server's RSS is the whole process's, so a CPU figure includes what the HTTP threads hold meanwhile."""
    from nodegraph.core.context import resolve_device
    from nodegraph.exec.memory_report import MemoryHook

    return MemoryHook(resolve_device(device), top_level_only=True)  # a body node's peak is its repeat's
