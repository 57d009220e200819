"""The one-process runner: items one after another in this process, so models load once (the component
cache keeps them between runs of the graph)."""

from __future__ import annotations

from typing import Any, Callable

from nodegraph.batch.grid import Item
from nodegraph.batch.item import ItemResult, item_runner, run_item, worker_name


def run_local(graph, items: list[Item], *, device: Any, dtype: Any, fast: bool = False, weights=None, cancel,
              on_start: Callable[[int, str], None], on_result: Callable[[ItemResult, int], None]) -> None:
    """Run `items` in order; `on_result(result, attempts)` stores each as soon as it is made."""
    worker = worker_name("local")
    runner = item_runner(device, dtype, fast, weights=weights)  # one node cache for the batch: shared work runs once
    for item in items:
        cancel.raise_if_cancelled()
        on_start(item.index, worker)
        on_result(run_item(graph, item.index, item.inputs, runner, cancel=cancel, worker=worker), 1)
