"""Reading weight files into the page cache ahead of their loader, so that the disk works while Python does not.

Why: on a cold page cache a run otherwise reads its weights (SD1.5: 4.1 GB, about 3.5 s at 1.1 GB/s) as each
loader touches them, in page faults, one file after the other, and the fp32 UNet's only during its first call.
The files are known as soon as the graph's inputs are bound; asking the kernel for all of them in order lets the
disk read them while the run builds models, converts the first one and encodes the prompt.

How: `component_files` finds the files exactly as the loaders will (the same torch-free `locate_component` and
`find_weights`), and `spawn_read_ahead` starts a small process (models/read_ahead.py) that asks the kernel to
read them into the page cache, in the order given, without copying them anywhere. The loaders then find the
pages cached or already in flight.

Bounded: only files that lie (symbolic links resolved) inside their model root, never more bytes than half of
the memory the kernel reports available (prefetched pages that were evicted before use would be read twice),
and nothing where the kernel's MemAvailable or `posix_fadvise` is unknown. No torch here: this runs before
torch is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from nodegraph.models.errors import CheckpointError
from nodegraph.models.sources import BUILTIN_PREFIX, LocalSource, resolve_source
from nodegraph.models.weight_files import (DIFFUSERS_WEIGHTS, PICKLES, TRANSFORMERS_WEIGHTS, find_weights,
                                           locate_component)

MEMORY_SHARE = 0.5  # of MemAvailable, at most, for prefetched files


def component_files(model: str, component: str, *, variant: str | None = None,
                    allow_pickle: bool = False) -> list[Path]:
    """The local weight files `load_component(model, component, …)` will read, found the same way (the same
    `locate_component` and `find_weights`), without reading any weights. Only sources already on local disk: a
    single-file checkpoint, a folder or `builtin:NAME`; a hub repo gives [] (listing it may need the network).
    Files outside the model's root (a link pointing elsewhere) are left out; a source that cannot be loaded
    gives [] (the loader reports it)."""
    text = os.fspath(model)
    path = Path(text).expanduser()
    if not text.startswith(BUILTIN_PREFIX) and path.is_file():  # a single-file checkpoint holds every component
        # the single-file reader's rule: a pickle suffix only when pickles are allowed, any other is safetensors
        # (`.sft`, ComfyUI's `.safetensors` renamed, …)
        readable = allow_pickle or path.suffix.lower() not in PICKLES
        return [path.resolve()] if readable else []
    if not text.startswith(BUILTIN_PREFIX) and not path.is_dir():
        return []  # a hub repo id, or nothing: never touch the network for a prefetch
    try:
        src = resolve_source(text)
        if not isinstance(src, LocalSource):
            return []
        folder, _ = locate_component(src, component)
        for stems in (DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS):  # a folder holds one or the other
            try:
                weights = find_weights(src, folder, stems, variant, allow_pickle)
                break
            except CheckpointError:
                continue
        else:
            return []
    except (CheckpointError, OSError):
        return []
    root = src.root.resolve()
    files = [(src.root / p).resolve() for p in weights.paths]
    return [f for f in files if f.is_relative_to(root) and f.is_file()]


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes: memory the kernel can hand out without swapping; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def within_budget(files: Iterable[Path], available: int | None) -> list[Path]:
    """The leading files (in the order given) whose sizes add up to at most MEMORY_SHARE of `available`; none
    when `available` is unknown. Later files are left to the loader: the first ones are needed first."""
    if available is None:
        return []
    budget, chosen = available * MEMORY_SHARE, []
    for f in files:
        budget -= f.stat().st_size
        if budget < 0:
            break
        chosen.append(f)
    return chosen


def looks_cached(path: Path, every: int = 32 << 20) -> bool:
    """Whether `path` seems to be in the page cache already: one byte every `every` bytes and the last one are
    (a warm run then starts no process at all). A file with holes between the samples reads as cached; its
    loader reads the holes, as without a prefetch."""
    from nodegraph.models.read_ahead import in_page_cache

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # nothing to read ahead here
    try:
        size = os.fstat(fd).st_size
        return all(in_page_cache(fd, offset) for offset in [*range(0, size, every), size - 1] if offset >= 0)
    finally:
        os.close(fd)


def spawn_read_ahead(files: list[Path]) -> subprocess.Popen | None:
    """Start the process that reads `files` into the page cache (models/read_ahead.py); None when there is
    nothing to read or this system has no `posix_fadvise`. It runs isolated (-I -S: the standard library only,
    no site packages), ends by itself once the files are read, and takes nothing from the run's GIL."""
    if not files or not hasattr(os, "posix_fadvise"):
        return None
    from nodegraph.models import read_ahead

    try:
        return subprocess.Popen([sys.executable, "-I", "-S", read_ahead.__file__, *map(str, files)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
