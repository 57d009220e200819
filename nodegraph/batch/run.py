"""`run_batch`: plan every item, skip those already done, run the rest (here or on Ray), store each as it ends.

Storing happens only here, in the calling process: files go to `out` under names made from the item index
(`00042-image.png`), then the item's row is appended to `manifest.jsonl`. Progress and item events are hooks.
"""

from __future__ import annotations

import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from nodegraph.batch.grid import MAX_ITEMS, Axis, GridError, Item, plan_items
from nodegraph.batch.item import DONE, FAILED, ItemResult, graph_bundle
from nodegraph.batch.manifest import (Manifest, ManifestError, file_prefix, graph_fingerprint, item_key,
                                      remove_if_unused)


@dataclass(frozen=True)
class ItemStarted:
    """An item was handed to a worker (`local:<pid>` or `ray:<host>:<pid>`)."""

    index: int
    worker: str


@dataclass(frozen=True)
class ItemFinished:
    """An item ended (done or failed) and its row is in the manifest."""

    row: dict


@dataclass
class BatchOutcome:
    """The latest manifest row of every item of the batch (item order), and what this call did."""

    rows: list[dict]
    done: int = 0  # run by this call
    failed: int = 0
    skipped: int = 0  # already done by an earlier call
    images: int = 0  # files written by this call
    seconds: float = 0.0
    manifest: Optional[pathlib.Path] = None
    failures: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        rate = f" ({self.images / self.seconds:.2f} images/s)" if self.seconds > 0 and self.images else ""
        return (f"{self.done} done, {self.failed} failed, {self.skipped} skipped; {self.images} files in "
                f"{self.seconds:.1f} s{rate}; manifest: {self.manifest}")


def axes_from_mapping(grid: Union[Mapping[str, Iterable], Sequence[Axis], None]) -> list[Axis]:
    """`{"seed": range(8), "prompt": [...]}` (Python values) or already-parsed `Axis` objects."""
    if grid is None:
        return []
    if isinstance(grid, Mapping):
        axes = []
        for name, values in grid.items():
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise GridError(f"grid axis `{name}` must be a list of values, got {values!r}")
            if hasattr(values, "__len__") and len(values) > MAX_ITEMS:
                raise GridError(f"grid axis `{name}` has {len(values):,} values, more than {MAX_ITEMS:,}")
            axes.append(Axis(str(name), tuple(values)))
        return axes
    return list(grid)


def run_batch(graph, grid=None, *, out: Union[str, os.PathLike], sets: Optional[Mapping[str, Any]] = None,
              zip: bool = False, repeat: int = 1, ray: Union[bool, str, None] = None, workers: Optional[int] = None,
              retries: int = 2, device: Any = None, dtype: Any = None, fast: bool = False,
              hooks: Sequence[Callable] = (), progress: bool = False, weights: Optional[str] = None) -> list[dict]:
    """Run a graph once per grid item, writing PNGs and `manifest.jsonl` to `out`; return the manifest rows.

    `graph`: a Graph or a graph file. `grid`: {input: values}; items are the product of the axes (`zip=True`:
    side by side), each `repeat` times with the seed advanced. `sets`: inputs fixed for every item. `ray`:
    None runs here, True starts a local Ray cluster, a string is a cluster address ("auto" for the running
    one). `fast`: every item in fast mode (nodegraph/fast; recorded in the PNGs and the manifest); `weights`:
    "fp8" holds every item's denoiser as float8 (core/mode.py; recorded likewise). Items already
    done in `out` are skipped. Raises ValidationFailed (bad values, before anything runs).
    """
    return execute_batch(graph, axes_from_mapping(grid), out=out, sets=sets, zip_axes=zip, repeat=repeat, ray=ray,
                         workers=workers, retries=retries, device=device, dtype=dtype, fast=fast, hooks=hooks,
                         progress=progress, weights=weights).rows


def execute_batch(graph, axes: list[Axis], *, out, sets=None, zip_axes=False, repeat=1, ray=None, workers=None,
                  retries=2, device=None, dtype=None, fast=False, hooks=(), progress=False, cancel=None,
                  set_origin: str = "value", weights=None) -> BatchOutcome:
    from nodegraph.core.context import RunContext, check_dtype_name
    from nodegraph.exec import png_metadata
    from nodegraph.exec.hooks import CancelToken
    from nodegraph.spec.graph import Graph
    from nodegraph.spec.loader import load_graph

    if not isinstance(graph, Graph):
        graph = load_graph(graph)
    items = plan_items(graph, axes, sets, zip_axes=zip_axes, repeat=repeat, set_origin=set_origin)
    check_dtype_name(dtype)
    if device is not None and not ray:
        RunContext(device, dtype).check_device()
    if workers is not None and workers < 1:
        raise GridError(f"`--workers` must be at least 1, got {workers}")
    if not isinstance(fast, bool):
        raise GridError(f"`fast` must be True or False, got {fast!r}")
    if retries < 0:
        raise GridError(f"`--retries` must be 0 or more, got {retries}")
    weights = _weights(weights, device, dtype, check=not ray)
    if ray:
        from nodegraph.batch.ray_runner import check_reachable

        check_reachable(ray)
    png_metadata.install()
    cancel = cancel or CancelToken()
    bundle = graph_bundle(graph)
    fingerprint = graph_fingerprint(bundle)
    keys = {item.index: item_key(fingerprint, item.inputs, dtype, fast, weights) for item in items}
    out_dir = pathlib.Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ManifestError(f"--out {out} exists and is not a folder")
    created = not out_dir.exists()
    try:
        return _run_pending(graph, items, keys, bundle, out_dir, ray=ray, workers=workers, retries=retries,
                            device=device, dtype=dtype, fast=fast, hooks=hooks, progress=progress, cancel=cancel,
                            weights=weights)
    except BaseException:
        if created:  # stopped before the first item finished (Ray unreachable, Ctrl-C): leave no empty folder
            remove_if_unused(out_dir)
        raise


def _weights(weights, device, dtype, check: bool):
    """`weights` by its canonical name (core/mode.py), refused before anything runs where torch or the device
    has no float8 (`check`: a local batch; Ray workers check their own device)."""
    from nodegraph.core.mode import RunMode
    from nodegraph.runner import Runner

    try:
        mode = RunMode(device, dtype, weights=weights)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    if mode.weights and check:
        Runner(mode).context()  # DeviceError (exit 2) without float8
    return mode.weights


def _run_pending(graph, items, keys, bundle, out_dir, *, ray, workers, retries, device, dtype, fast, hooks,
                 progress, cancel, weights=None) -> BatchOutcome:
    with Manifest(out_dir) as manifest:
        pending = _pending(items, keys, manifest)
        store = _Store(out_dir, manifest, items, keys, hooks, progress, skipped=len(items) - len(pending), fast=fast)
        store.weights = weights
        started = time.perf_counter()
        try:
            if pending and ray:  # (nothing pending: no models to load, no cluster to start)
                from nodegraph.batch.ray_runner import run_ray

                run_ray(bundle, pending, address=ray, workers=workers, retries=retries, device=device, dtype=dtype,
                        fast=fast, on_start=store.started, on_result=store.finished, weights=weights)
            elif pending:
                from nodegraph.batch.local import run_local

                run_local(graph, pending, device=device, dtype=dtype, fast=fast, weights=weights, cancel=cancel,
                          on_start=store.started, on_result=store.finished)
        finally:
            store.close()
        outcome = store.outcome
        outcome.seconds = time.perf_counter() - started
        outcome.rows = [manifest.latest[item.index] for item in items if item.index in manifest.latest]
        outcome.manifest = manifest.path
    return outcome


def _pending(items: list[Item], keys: dict[int, str], manifest: Manifest) -> list[Item]:
    """Items not yet done; a done row made from other inputs or another graph means `out` is another batch's."""
    pending = []
    for item in items:
        row = manifest.latest.get(item.index)
        if row is not None and row.get("status") == DONE:
            if row.get("key") != keys[item.index]:
                raise ManifestError(f"{manifest.out_dir} holds another batch: its item {item.index} was made from "
                                    "other inputs or another graph; choose a new --out (or delete the folder)")
            continue
        pending.append(item)
    return pending


class _Store:
    """Writes each finished item's files and manifest row, drives the progress bar and the item hooks."""

    def __init__(self, out_dir: pathlib.Path, manifest: Manifest, items: list[Item], keys: dict[int, str],
                 hooks, progress: bool, skipped: int, fast: bool = False):
        from tqdm import tqdm

        self.out_dir, self.manifest, self.keys, self.hooks = out_dir, manifest, keys, tuple(hooks)
        self.fast = fast
        self.weights = None  # fp8 storage of the denoiser (core/mode.py), set by the batch
        self.inputs = {item.index: item.inputs for item in items}
        for stale in out_dir.glob(".[0-9]*-*.part"):  # temporary files of a run killed while writing
            stale.unlink(missing_ok=True)
        self.total = len(items)
        self.outcome = BatchOutcome(rows=[], skipped=skipped)
        self.bar = tqdm(total=len(items), initial=skipped, desc="batch", unit="item", disable=not progress,
                        dynamic_ncols=True)

    def started(self, index: int, worker: str) -> None:
        for hook in self.hooks:
            hook(ItemStarted(index, worker))

    def finished(self, result: ItemResult, attempts: int) -> None:
        from nodegraph.exec.writers import write_atomic

        outputs: dict[str, Any] = dict(result.values)
        prefix = file_prefix(result.index, self.total)
        for name, files in result.files.items():
            written = []
            for file_name, data in files:
                path = self.out_dir / f"{prefix}-{file_name}"
                if path.exists():  # left by a run killed before this item's row was written
                    path.unlink()
                write_atomic(path, lambda f: f.write(data))
                written.append(path.name)
            outputs[name] = written
            self.outcome.images += len(written)
        row = {"item": result.index, "status": result.status, "inputs": self.inputs[result.index],
               "outputs": outputs, "seconds": result.seconds, "worker": result.worker, "attempts": attempts,
               "key": self.keys[result.index]}
        if self.fast:
            row["fast"] = True
        if self.weights:
            row["weights"] = self.weights
        if result.status == FAILED:
            row["error"] = result.error
            self.outcome.failed += 1
            self.outcome.failures.append(row)
        else:
            self.outcome.done += 1
        self.manifest.append(row)
        self.bar.update(1)
        for hook in self.hooks:
            hook(ItemFinished(row))

    def close(self) -> None:
        self.bar.close()
