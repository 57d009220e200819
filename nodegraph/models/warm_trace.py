"""A model that is called many times with the same shapes, each call short, runs from a TorchScript trace.

Why: on a small model the Python side of a forward (module calls, argument parsing, our own block code) is about
a third of the call: `builtin:digits`' UNet takes 6.4 ms eager and 4.2 ms traced (1 thread, batch 2, 8×8
latents). A trace replays the same aten ops in the same order, so the numbers are the same bits; only the
Python between them is gone. Large models gain nothing worth having (their Python is a fraction of a percent)
and keep between-block cancellation, so only a model whose fastest eager call took under `SHORT_CALL_SECONDS`
is traced (the fastest: what the machine can do, not how loaded it was).

When: a trace costs about 0.5 s for the digits UNet, some 80 of its eager calls (recording, the TorchScript
executor's two profiling runs, the two verified calls), and saves about a third of each later call. A signature (the model, its input shapes, dtypes
and devices, the thread count) is traced once it has been called `TRACE_AFTER_CALLS` times eagerly: by then
the eager calls have cost what the trace will (the ski-rental rule), so no run pays more than twice the best
choice in hindsight. In practice a one-shot `nodegraph run` of 25 steps never traces; a warm server or a batch
does from its fourth 25-step run on.

Safety:
- the traced forward must give exactly the eager result: the first `VERIFY_CALLS` traced calls also run
  eagerly and return the eager output; any difference drops the trace for good;
- the model must still be what was traced: the same module objects of the same classes, the same parameter
  and buffer tensors (dtype and device), no forward hooks (cancel checks, streaming, step caches add them), no
  instance-level `forward`, no global module hooks, no autocast and no autograd. Anything else runs eagerly.
"""

from __future__ import annotations

import time
import warnings
import weakref

import torch
from torch import nn

SHORT_CALL_SECONDS = 0.05
TRACE_AFTER_CALLS = 100
VERIFY_CALLS = 2
MAX_CONSTANT_BYTES = 1 << 20


def call(model, *args: torch.Tensor, **kwargs: torch.Tensor | None) -> torch.Tensor:
    """`model(*args, **kwargs)`, from a trace once that pays (see the module's docstring). None kwargs are left
    out, as the model's defaults."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    signature = _signature(model, args, kwargs)
    if signature is None:
        return model(*args, **kwargs)
    entry = _entries(model).setdefault(signature, _Entry())
    return entry.call(model, args, kwargs)


class _Entry:
    """One model and signature: its eager calls so far, then its trace (or None once the trace was dropped)."""

    def __init__(self):
        self.calls, self.fastest = 0, float("inf")
        self.traced: _Traced | None = None
        self.dropped = False

    def call(self, model: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
        if self.traced is not None and self.traced.still_matches(model):
            return self.traced.call(model, args, kwargs, self)
        start = time.perf_counter()
        out = model(*args, **kwargs)
        self.calls += 1
        self.fastest = min(self.fastest, time.perf_counter() - start)  # the machine's, not its load's
        if (not self.dropped and self.traced is None and self.calls >= TRACE_AFTER_CALLS
                and self.fastest < SHORT_CALL_SECONDS):
            traced = _Traced(model)
            if traced.still_matches(model):  # (with hooks on, what they do would be recorded or lost: later)
                self.traced = traced if traced.trace(model, args, kwargs) else None
                self.dropped = self.traced is None
        return out


class _Traced:
    """A trace of `model` and what it was traced from."""

    def __init__(self, model: nn.Module):
        self.module: torch.jit.ScriptModule | None = None
        self.verified = 0
        self.root_class = type(model)  # the model itself is not held: a dropped model is freed with its trace
        modules = list(model.modules())  # one walk of the tree for all three records
        self.modules = [(m, type(m)) for m in modules if m is not model]
        self.children = [(m._modules, name, child) for m in modules for name, child in m._modules.items()]
        stores = [store for m in modules for store in (m._parameters, m._buffers)]
        self.stores = [(store, len(store)) for store in stores]
        self.tensors = [(store, name, t, t.dtype, t.device) for store in stores for name, t in store.items()
                        if t is not None]

    def trace(self, model: nn.Module, args: tuple, kwargs: dict) -> bool:
        """Trace `model` on this call's inputs; False when the tracer cannot follow it or the trace would hold
        weights as constants (read from outside the module's tensors: a file, a layer fused per call)."""
        wrapper = _Positional(model, len(args), list(kwargs))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings on shape-derived Python values: the signature
                # fixes every shape, and the verification catches anything that depended on the data
                self.module = torch.jit.trace(wrapper, (*args, *kwargs.values()), check_trace=False)
            return _constant_bytes(self.module) <= MAX_CONSTANT_BYTES
        except Exception:  # noqa: BLE001 - a model the tracer cannot follow simply stays eager
            return False

    def still_matches(self, model: nn.Module) -> bool:
        if _global_hooks() or not _plain(model, self.root_class):
            return False
        for m, cls in self.modules:
            if not _plain(m, cls):
                return False
        for store, name, child in self.children:
            if store.get(name) is not child:
                return False
        for store, n in self.stores:  # (a None parameter, a missing bias, stays None)
            if len(store) != n:
                return False
        for store, name, t, dtype, device in self.tensors:
            if store.get(name) is not t or t.dtype != dtype or t.device != device:
                return False
        return True

    def call(self, model: nn.Module, args: tuple, kwargs: dict, entry: _Entry) -> torch.Tensor:
        out = self.module(*args, *kwargs.values())
        if self.verified >= VERIFY_CALLS:
            return out
        eager = model(*args, **kwargs)
        if not (isinstance(out, torch.Tensor) and isinstance(eager, torch.Tensor) and torch.equal(out, eager)):
            entry.traced, entry.dropped = None, True
        self.verified += 1
        return eager


class _Positional(nn.Module):
    """`model` called with positional tensors, the last ones being the named `keywords` (a trace takes only
    positional inputs)."""

    def __init__(self, model: nn.Module, n_args: int, keywords: list[str]):
        super().__init__()
        self.model, self.n_args, self.keywords = model, n_args, keywords

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.keywords, inputs[self.n_args:], strict=True))
        return self.model(*inputs[:self.n_args], **named)


_BY_MODEL: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _entries(model: nn.Module) -> dict:
    entries = _BY_MODEL.get(model)
    if entries is None:
        entries = _BY_MODEL[model] = {}
    return entries


def _signature(model, args: tuple, kwargs: dict) -> tuple | None:
    """What a trace of this call is valid for, or None when this call must run eagerly."""
    if not isinstance(model, nn.Module) or torch.is_grad_enabled() or torch.is_autocast_enabled("cpu"):
        return None
    tensors = (*args, *kwargs.values())
    if not all(isinstance(t, torch.Tensor) for t in tensors) or any(t.device.type != "cpu" for t in tensors):
        return None  # CPU only: CUDA would need its own checks (streams, graphs), and nothing here measures it
    return (len(args), tuple(kwargs), tuple((t.shape, t.dtype) for t in tensors), torch.get_num_threads(),
            torch.is_inference_mode_enabled())


def _plain(m: nn.Module, cls: type) -> bool:
    """Still of class `cls`, with no forward hooks and no forward of its own instance."""
    return type(m) is cls and not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__


def _global_hooks() -> bool:
    hooks = torch.nn.modules.module
    return bool(hooks._global_forward_hooks or hooks._global_forward_pre_hooks)


def _constant_bytes(module: torch.jit.ScriptModule) -> int:
    """Bytes of the tensors a trace holds as constants (values it computed without a module tensor or input)."""
    graph = module.inlined_graph  # held: its nodes die with it
    constants = [node.output().toIValue() for node in graph.findAllNodes("prim::Constant")]
    return sum(t.numel() * t.element_size() for t in constants if isinstance(t, torch.Tensor))
