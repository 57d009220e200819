"""The batch's record in its output folder: `manifest.jsonl`, one JSON row per finished item, appended.

A row: `item` (index), `status` (done / failed), `inputs` (every input value), `outputs` (per output, the
files written or a summary of the value), `seconds`, `worker`, `attempts`, `error` (failed only), `key`
(a hash of the graph files, the inputs, the dtype and fast mode) and `fast` (true, in a `--fast` batch only).
Appending one flushed line per item keeps the file valid after a kill: at worst its last line is cut short,
and that item simply runs again. Files are written before their
row, so an item without a `done` row may have left files behind; they are replaced when it runs again.

Resuming: an item whose latest row is `done` with the same key is skipped; a failed item runs again. A
`done` row whose key differs means the folder holds another batch, and nothing runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any, Optional

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".nodegraph-batch.lock"


class ManifestError(RuntimeError):
    """The output folder cannot hold this batch (another batch's results, another batch running, unwritable)."""


def item_key(graph_fingerprint: str, inputs: dict[str, Any], dtype: Optional[str], fast: bool = False,
             weights: Optional[str] = None) -> str:
    made = {"graph": graph_fingerprint, "inputs": inputs, "dtype": dtype}
    if fast:  # (only then: the keys of default batches written before fast mode existed stay valid)
        made["fast"] = True
    if weights:  # likewise: fp8 storage of the denoiser (core/mode.py)
        made["weights"] = weights
    text = json.dumps(made, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def graph_fingerprint(bundle: dict) -> str:
    return hashlib.sha256(json.dumps(bundle, sort_keys=True).encode()).hexdigest()


def file_prefix(index: int, total: int) -> str:
    """`00042`: the item index, zero-padded so that file listings sort in item order."""
    return f"{index:0{max(5, len(str(total - 1)))}d}"


class Manifest:
    """The rows already in `out_dir/manifest.jsonl`, and appending new ones (one writer at a time)."""

    def __init__(self, out_dir: pathlib.Path):
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST_NAME
        self.latest: dict[int, dict] = {}
        self._lock_fd: Optional[int] = None
        self._file = None

    def open(self) -> Manifest:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            for row in read_rows(self.path):
                self.latest[row["item"]] = row
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            self.close()
            raise ManifestError(f"cannot use {self.out_dir} for the batch's results ({exc})") from None
        if self._file.tell() and not _ends_with_newline(self.path):
            self._file.write("\n")  # the previous run was killed mid-line: start on a fresh one
        return self

    def _lock(self) -> None:
        import fcntl

        self._lock_fd = os.open(self.out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ManifestError(f"another `nodegraph batch` is writing to {self.out_dir}; wait for it to end "
                                "or choose another --out") from None

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, default=repr) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.latest[row["item"]] = row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the lock
            self._lock_fd = None

    def __enter__(self) -> Manifest:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def remove_if_unused(out_dir: pathlib.Path) -> None:
    """Remove a folder this batch created when the batch stopped before writing anything into it."""
    ours = {MANIFEST_NAME, LOCK_NAME}
    try:
        entries = list(out_dir.iterdir())
        if {e.name for e in entries} <= ours and not (out_dir / MANIFEST_NAME).stat().st_size:
            for entry in entries:
                entry.unlink()
            out_dir.rmdir()
    except OSError:
        pass  # nothing to tidy, or someone else is using it: leave it as it is


def _ends_with_newline(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Every complete row of a manifest, in order (a line cut short by a kill is ignored)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("item"), int):
                    rows.append(row)
    except FileNotFoundError:
        pass
    return rows
