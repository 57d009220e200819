"""What a running node sees: device, dtype, the component cache, events and cancellation.

torch is imported only when a node first asks for `ctx.device` or `ctx.dtype`, so graphs of plain Python
nodes run without it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from nodegraph.core.cancel import CancelToken
from nodegraph.core.mode import RunMode

DTYPE_NAMES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
               "half": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


class DeviceError(ValueError):
    """An unusable `--device` / `--dtype` choice."""


def resolve_device(device: Any = None):
    """`None` picks CUDA when present, else the CPU; anything else must name an available torch device."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"`device` {device!r} is not a torch device ({exc}); use e.g. cpu, cuda, cuda:1, mps")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"`device` {device!r} asks for CUDA, which is not available here; use cpu")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"`device` {device!r} asks for MPS, which is not available here; use cpu")
    return resolved


def check_dtype_name(dtype: Any) -> None:
    if isinstance(dtype, str) and dtype not in DTYPE_NAMES:
        raise DeviceError(f"`dtype` {dtype!r} is not supported; use fp32, fp16 or bf16")


def resolve_dtype(dtype: Any = None):
    """`None` is float32; accepts fp32/fp16/bf16 (and the long names) or a torch.dtype."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    check_dtype_name(dtype)
    return getattr(torch, DTYPE_NAMES[dtype])


class ComponentCache:
    """Process-wide cache of loaded components (models, tokenizers), keyed by whatever the loader needs.

    Include the device and dtype in the key when the loaded object depends on them.
    """

    def __init__(self):
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[Any, threading.Lock] = {}

    def get_or_load(self, key: Any, load: Callable[[], Any]) -> Any:
        try:
            return self._items[key]
        except KeyError:
            pass
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # two runs asking for the same model load it once
            if key not in self._items:
                self._items[key] = load()
            return self._items[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def values(self) -> list[Any]:
        """The loaded components (a snapshot)."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._key_locks.clear()


COMPONENTS = ComponentCache()


class RunContext:
    """Passed to every `Node.run`: `mode` (a `RunMode`: device, dtype, fast mode, memory budget, as asked),
    `device` / `dtype` (resolved torch objects), `fast` (fast mode: loaders prepare models with nodegraph.fast),
    `components`, `emit(event)`, `check_cancelled()`, `node_id` (the id of the node now running).

    Give either `mode=RunMode(...)` or the older `device`, `dtype`, `fast` arguments, not both."""

    def __init__(self, device: Any = None, dtype: Any = None, *, components: ComponentCache | None = None,
                 hooks: tuple = (), cancel: CancelToken | None = None, fast: bool = False,
                 mode: RunMode | None = None):
        if mode is not None and (device is not None or dtype is not None or fast):
            raise TypeError("RunContext: pass `mode` or `device`/`dtype`/`fast`, not both")
        self.mode = mode if mode is not None else RunMode(device, dtype, fast)
        self._device = self._dtype = None
        self.components = COMPONENTS if components is None else components
        self.hooks = tuple(hooks)
        self.cancel = cancel or CancelToken()
        self.node_id: str | None = None

    @property
    def fast(self) -> bool:
        return self.mode.fast

    @property
    def device(self):
        if self._device is None:
            self._device = resolve_device(self.mode.device)
        return self._device

    def check_device(self) -> None:
        """Resolve the device now (imports torch), so a bad `--device` fails before anything runs."""
        _ = self.device

    @property
    def dtype(self):
        if self._dtype is None:
            self._dtype = resolve_dtype(self.mode.dtype)
        return self._dtype

    def emit(self, event: Any) -> None:
        """Send an event to every hook of this run (nodes may emit their own, e.g. previews)."""
        for hook in self.hooks:
            hook(event)

    def check_cancelled(self) -> None:
        """Raise RunCancelledError if the run was cancelled; long-running nodes call this now and then."""
        self.cancel.raise_if_cancelled(self.node_id)
