"""The Ray runner: a pool of actors, each loading the graph's models once, fed items one by one as they free up.

Ray's batch-inference pattern: an actor loads the model in its `__init__` (here: on its first item, through
the component cache) and then takes work. Items are handed out dynamically, one per actor at a time (as
Ray's `ActorPool` does), so a slow worker never holds up the rest and a dead one takes only its current item
with it. Only inputs go out and only PNG bytes come back.

When an actor dies (its process is killed, its node leaves), every item it held goes back to the front of
the queue and runs on another actor; an item whose worker died `retries + 1` times is recorded as failed.
A dead actor is replaced by a new one, so the pool keeps its size while the cluster has room. An item that
fails by itself (a node error) is recorded at once and never retried: it would fail again.
"""

from __future__ import annotations

import collections
import os
import socket
import tempfile
from typing import Any, Callable, Optional, Union

from nodegraph.batch.grid import Item
from nodegraph.batch.item import FAILED, ItemResult, item_runner, load_bundled_graph, run_item, worker_name

START_TIMEOUT_S = 300  # a worker that cannot start in this time (no room on the cluster) is given up


class RayBatchError(RuntimeError):
    """Ray is missing, unreachable, or cannot start any worker."""


class ItemWorker:
    """One Ray actor: the graph, loaded from its bundle; its models stay loaded between items."""

    def __init__(self, bundle: dict, device: Any, dtype: Any, fast: bool = False, weights: Optional[str] = None):
        from nodegraph.runner import prepare_process

        prepare_process(heap_reuse=False)
        self._folder = tempfile.TemporaryDirectory(prefix="nodegraph-batch-graph-")
        self.graph = load_bundled_graph(bundle, self._folder.name)
        # per actor: a LoRA is read and fused once, not per item
        self.runner = item_runner(device, dtype, fast, weights=weights)
        self.name = worker_name("ray")

    def identity(self) -> tuple[str, int]:
        return self.name, os.getpid()

    def run(self, index: int, inputs: dict) -> ItemResult:
        return run_item(self.graph, index, inputs, self.runner, worker=self.name)


def check_reachable(address: Union[bool, str, None], timeout_s: float = 5.0) -> None:
    """Fail fast, before any output is written: Ray itself retries an unreachable address for minutes."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # without importing it: that alone takes half a second
        raise RayBatchError("`--ray` needs Ray: pip install 'nodegraph[ray]'")
    if not isinstance(address, str) or address in ("", "local", "auto") or "://" in address:
        return  # a new local cluster, the one running here (Ray finds it), or a Ray client address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayBatchError(f"`--ray {address}`: expected HOST:PORT (e.g. 10.0.0.5:6379) or `auto`")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayBatchError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with "
                            "`ray start --head`, or use `--ray` alone for a local one") from None


def connect(address: Union[bool, str, None], workers: Optional[int]) -> bool:
    """`ray.init` on `address` (True / "local": a new local cluster); True when this call started Ray."""
    try:
        import ray
    except ImportError:
        raise RayBatchError("`--ray` needs Ray: pip install 'nodegraph[ray]'") from None
    if ray.is_initialized():
        return False
    options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    local = address in (True, None, "", "local")
    try:
        if local:
            ray.init(num_cpus=workers, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise RayBatchError(f"cannot connect to the Ray cluster at {address!r}: {exc}; start one with "
                            "`ray start --head`, or drop ADDRESS to start a local one") from None
    return True


def pool_shape(workers: Optional[int], device: Any = None) -> tuple[int, dict]:
    """How many actors and what each asks for: one per GPU when the cluster has GPUs (unless the device asked
    for is the CPU), else one per CPU."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if gpus and not str(device or "").startswith("cpu"):
        return (workers or gpus), {"num_gpus": 1, "num_cpus": 1}
    if cpus < 1:
        raise RayBatchError(f"the Ray cluster offers no CPU or GPU (resources: {resources})")
    return (workers or cpus), {"num_cpus": 1}


def run_ray(graph_bundle: dict, items: list[Item], *, address: Union[bool, str, None], workers: Optional[int],
            retries: int, device: Any, dtype: Any, on_start: Callable[[int, str], None],
            on_result: Callable[[ItemResult, int], None], fast: bool = False, weights: Optional[str] = None) -> None:
    """Run `items` on a Ray actor pool; `on_result(result, attempts)` is called exactly once per item."""
    import ray

    started_ray = connect(address, workers)
    try:
        pool = _Pool(graph_bundle, device, dtype, fast, retries, on_start, on_result)
        pool.weights = weights
        pool.run(items, *pool_shape(workers, device))
    finally:
        if started_ray:
            ray.shutdown()


class _Pool:
    """The driver's loop: actors starting, items in flight (one per actor), the queue, attempts per item."""

    def __init__(self, bundle, device, dtype, fast, retries, on_start, on_result):
        import ray

        self.actor_class = ray.remote(max_restarts=0, max_concurrency=1)(ItemWorker)
        self.bundle, self.device, self.dtype, self.fast = bundle, device, dtype, fast
        self.weights = None  # fp8 storage of the denoiser (core/mode.py), set by run_ray
        self.retries, self.on_start, self.on_result = retries, on_start, on_result
        self.names: dict[Any, str] = {}  # live actor -> worker name
        self.starting: dict[Any, Any] = {}  # identity ref -> actor still loading the graph
        self.inflight: dict[Any, tuple[Any, Item]] = {}  # result ref -> (actor, item)
        self.attempts: collections.Counter = collections.Counter()
        self.queue: collections.deque[Item] = collections.deque()
        self.idle: list = []  # live actors that found the queue empty
        self.start_error = ""

    def _start(self, resources: dict) -> None:
        """Start an actor without waiting: the loop feeds it once it has loaded the graph."""
        actor = self.actor_class.options(**resources).remote(self.bundle, self.device, self.dtype, self.fast,
                                                                  self.weights)
        self.starting[actor.identity.remote()] = actor

    def _feed(self, actor) -> None:
        """One item at a time per actor (as Ray's ActorPool does): more would hide the driver's round trip
        (milliseconds, against items of a tenth of a second and more) but a dying actor would take them all."""
        if not self.queue:
            self.idle.append(actor)
            return
        item = self.queue.popleft()
        self.attempts[item.index] += 1
        self.inflight[actor.run.remote(item.index, item.inputs)] = (actor, item)
        self.on_start(item.index, self.names[actor])

    def run(self, items: list[Item], count: int, resources: dict) -> None:
        import ray

        self.queue.extend(items)
        for _ in range(min(count, len(items))):
            self._start(resources)
        try:
            while self.inflight or (self.queue and self.starting):
                ready, _ = ray.wait([*self.inflight, *self.starting], num_returns=1, timeout=START_TIMEOUT_S)
                if not ready:
                    if not self.inflight:
                        raise RayBatchError(f"no Ray worker started within {START_TIMEOUT_S} s (each asks for "
                                            f"{resources}; the cluster has {ray.cluster_resources()})")
                    continue  # items still running: long ones are fine
                if ready[0] in self.starting:
                    self._started(ready[0])
                else:
                    self._finished(ready[0], resources)
            for lost in list(self.queue):
                self.on_result(ItemResult(lost.index, FAILED, error="no Ray worker could run it"
                                          + (f" ({self.start_error})" if self.start_error else "")),
                               self.attempts[lost.index])
            self.queue.clear()
        finally:
            for actor in [*self.names, *self.starting.values()]:
                ray.kill(actor)

    def _started(self, ref) -> None:
        import ray
        from ray.exceptions import RayActorError

        actor = self.starting.pop(ref)
        try:
            name, _ = ray.get(ref)
        except RayActorError as exc:  # e.g. nodegraph missing on its node: not replaced, it would fail again
            self.start_error = _first_line(exc)
            ray.kill(actor)
            return
        self.names[actor] = name
        self._feed(actor)

    def _finished(self, ref, resources: dict) -> None:
        import ray
        from ray.exceptions import RayActorError

        actor, item = self.inflight.pop(ref)
        try:
            result = ray.get(ref)
        except RayActorError as exc:
            self._lost(actor, item, exc, resources)
            return
        self.on_result(result, self.attempts[item.index])
        self._feed(actor)

    def _lost(self, actor, item: Item, exc: Exception, resources: dict) -> None:
        """The actor holding `item` died: run the item again elsewhere (or record it failed); replace the actor."""
        import ray

        if self.attempts[item.index] > self.retries:
            self.on_result(ItemResult(item.index, FAILED, worker=self.names.get(actor, "ray:?"),
                                      error=f"its Ray worker died {self.attempts[item.index]} times "
                                            f"({_first_line(exc)})"), self.attempts[item.index])
        else:
            self.queue.appendleft(item)
        self.names.pop(actor, None)
        ray.kill(actor)
        while self.queue and self.idle:
            self._feed(self.idle.pop())
        if self.queue:  # keep the pool's size while there is work
            self._start(resources)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
