"""Node-output caching: an optional store the executor consults for each top-level step of a plan.

Pass any object with `get(signature) -> dict | None` and `put(signature, outputs: dict)` as
`RunOptions(cache=...)` (or `execute_plan(..., cache=...)`); without one the executor runs exactly as
before. `nodegraph serve` and batches pass a memory-bounded LRU (nodegraph/exec/lru_caches.py).

The signature of a step is fixed by the plan and the run's input values (ComfyUI's cache key, computed
here once per run since the graph is static): sha256 of the step's kind and type@version, its literal
inputs, the content of an included graph or of a `repeat` body (cached as a whole, never per iteration),
and, for every value it reads, the signature of that value (a graph-input value, or the producing step's
signature). So changing `prompt` changes the signatures of the text branch and of everything below it.
The run's device, dtype and fast mode (nodegraph/fast) change what a node computes without changing its inputs,
so they are part of every signature: one cache may serve fp32, bf16 and fast runs side by side.
A value given to a port typed as a location (`FilePath`, `ModelSource`: core/types.py; spec/location_ports.py
follows them through included graphs) that names an existing file adds that file's size and modification time,
so a node reading an image, a mask or a LoRA file runs again when the file changes. Other strings are never
stat-ed: a prompt or a plugin's `profile` is text, and a plugin reading a file declares its port `FilePath`.

Three kinds of steps are treated apart:
* A node class with `pure = False` (its outputs are not a function of its inputs: it reads a file that
  may change, a clock, unseeded randomness) gets a new random signature every run, so it and everything
  below it always run. An unhashable literal (a tensor given from Python) does the same.
* Values that the steps reading them change in place (schedulers keep step state, generators advance;
  any Component kind not listed in READ_ONLY_KINDS counts as one) are never stored. Their producers run
  again whenever a step that reads them runs (cheap: a fresh scheduler, a seeded generator). Models,
  tokenizers and text encoders are read-only by the component cache's contract, so they are stored
  (as references to the loaded objects).
* Because those values change in place, a step reading one sees what earlier readers did to it (the noise
  draw advances the generator the denoising loop continues from). Such a step's signature includes the
  signatures of the earlier readers, and when it runs, the earlier readers run too, even if their own
  outputs are cached, so that it starts from the same state as in an uncached run.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import weakref
from typing import Any, Optional, Protocol

from nodegraph.exec.events import NodeCached
from nodegraph.exec.steps import NodeStep, SubgraphStep, run_steps
from nodegraph.spec.location_ports import is_location_port, location_inputs, location_literals, strings

# Component kinds no step changes: the component cache hands the same loaded object to every run already
READ_ONLY_KINDS = frozenset({"UNet", "VAE", "TextEncoder", "Tokenizer"})


class NodeCache(Protocol):
    def get(self, signature: str) -> Optional[dict]: ...

    def put(self, signature: str, outputs: dict) -> None: ...


class Unhashable(TypeError):
    pass


def _default(value: Any) -> Any:
    from nodegraph.spec.document import Ref

    if isinstance(value, Ref):
        return {"$ref": str(value)}
    if isinstance(value, (tuple, set, frozenset)):
        return sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
    raise Unhashable(type(value).__name__)


def encode(value: Any) -> bytes:
    """Canonical bytes of a literal (JSON; 1, 1.0 and true stay distinct); Unhashable for anything else."""
    try:
        return json.dumps(value, sort_keys=True, default=_default, allow_nan=True).encode()
    except (TypeError, ValueError) as exc:
        raise Unhashable(str(exc)) from None


def is_mutable(ptype: Any) -> bool:
    """A value that steps reading it may change in place (see the module docstring)."""
    from nodegraph.core.types import MARKERS, Component

    name = getattr(ptype, "name", "")
    marker = MARKERS.get(name)
    return marker is not None and issubclass(marker, Component) and name not in READ_ONLY_KINDS


def node_is_pure(node_type: Any) -> bool:
    return bool(getattr(node_type.cls, "pure", True))


def _node_digest(node, h) -> bool:
    """Feed what defines a checked node into `h`; False if it (or anything inside) is not pure."""
    pure = True
    h.update(f"|{node.kind}|{node.label}|".encode())
    h.update(encode(sorted((k, v) for k, v in node.values.items())) if node.kind != "repeat" else b"")
    if node.kind == "node":
        pure = node_is_pure(node.node_type)
    elif node.kind == "graph":
        pure = _graph_digest(node.subgraph, h)
    elif node.kind == "repeat":
        body = node.body
        h.update(encode([body.over, sorted(body.state_init.items()), sorted(body.next.items()),
                         sorted(body.collect.items())]))
        for inner_id in sorted(body.nodes):
            h.update(inner_id.encode())
            pure = _node_digest(body.nodes[inner_id], h) and pure
    return pure


def _graph_digest(checked, h) -> bool:
    h.update(encode([sorted(checked.defaults.items()), sorted(checked.spec.outputs.items())]))
    pure = True
    for node_id in sorted(checked.nodes):
        h.update(node_id.encode())
        pure = _node_digest(checked.nodes[node_id], h) and pure
    return pure


def file_stamp(value: Any) -> bytes:
    """Size and mtime of the file a string names (b"" for anything else): its content may change."""
    if not isinstance(value, str) or not value or len(value) > 4096:
        return b""
    try:
        info = os.stat(value)
    except (OSError, ValueError):
        return b""
    return b"" if stat.S_ISDIR(info.st_mode) else f"|{info.st_size}|{info.st_mtime_ns}".encode()


class _StepInfo:
    __slots__ = ("static", "pure", "storable", "reads", "mutable_reads", "keys", "files")


class CachePlan:
    """What the cache needs to know about a plan's top-level steps, worked out once per plan."""

    def __init__(self, plan):
        checked = plan.checked
        self.infos: list[_StepInfo] = []
        self.producer: dict[int, int] = {}
        mutable_slots: set[int] = set()
        for index, step in enumerate(plan.steps):
            node = checked.nodes[step.node_id]
            info = _StepInfo()
            h = hashlib.sha256()
            try:
                info.pure = _node_digest(node, h)
                h.update(encode(sorted(step.literals.items()) if isinstance(step, NodeStep) else
                                step.literals if isinstance(step, SubgraphStep) else
                                [step.over_literal, [lit for _, lit in step.state_init]]))
            except Unhashable:
                info.pure = False
            info.static = h.digest()
            defaults = [v for port, v in step.literals.items() if is_location_port(node, port)] \
                if isinstance(step, NodeStep) else ()
            # stat-ed every run: a file named at a location port may appear, change or go between runs
            info.files = sorted({text for text in [*location_literals(node), *(t for v in defaults for t in strings(v))]
                                 if text})
            info.keys = [key for key, _ in step.outputs]
            names = self._port_names(step, node)
            out_types = [node.outputs.get(name) for name in names]
            info.storable = not any(is_mutable(t) for t in out_types)
            for (_, slot), ptype in zip(step.outputs, out_types):
                self.producer[slot] = index
                if is_mutable(ptype):
                    mutable_slots.add(slot)
            info.reads = list(step.reads)
            self.infos.append(info)
        self.earlier: dict[tuple[int, int], list[int]] = {}  # (step, mutable slot) -> earlier readers
        readers: dict[int, list[int]] = {}
        for index, info in enumerate(self.infos):
            info.mutable_reads = [slot for slot in dict.fromkeys(info.reads) if slot in mutable_slots]
            for slot in info.mutable_reads:
                self.earlier[(index, slot)] = list(readers.setdefault(slot, []))
                readers[slot].append(index)
        self.input_slots = plan.input_slots
        self.output_slots = plan.output_slots
        self.stamped_inputs = location_inputs(checked)  # graph inputs that reach a location port

    @staticmethod
    def _port_names(step, node) -> list[str]:
        if isinstance(step, NodeStep):
            return [port for port, _ in step.outputs]
        if isinstance(step, SubgraphStep):
            by_slot = {slot: name for name, slot in step.plan.output_slots.items()}
            return [by_slot[inner] for inner, _ in step.outputs]
        names = [*node.body.state_init, *node.body.collect]
        return [names[index] for index, _ in step.outputs]

    def signatures(self, values: dict[str, Any], mode: bytes = b"") -> list[bytes]:
        """Each step's signature for graph inputs `values`; `mode` (see `run_mode`) seeds every one."""
        by_slot: dict[int, bytes] = {}
        for name, slot in self.input_slots.items():
            try:
                stamps = b"".join(file_stamp(text) for text in strings(values[name])) \
                    if name in self.stamped_inputs else b""
                by_slot[slot] = hashlib.sha256(encode(values[name]) + stamps).digest()
            except Unhashable:
                by_slot[slot] = os.urandom(32)
        sigs: list[bytes] = []
        for index, info in enumerate(self.infos):
            h = hashlib.sha256(mode + info.static)
            for slot in info.reads:
                producer = self.producer.get(slot)
                h.update(sigs[producer] if producer is not None else by_slot.get(slot, b"-"))
            for slot in info.mutable_reads:
                for earlier in self.earlier[(index, slot)]:
                    h.update(sigs[earlier])
            for text in info.files:
                h.update(file_stamp(text))
            if not info.pure:
                h.update(os.urandom(32))
            sigs.append(h.digest())
        return sigs

    def decide(self, sigs: list[bytes], cache: NodeCache) -> tuple[dict[int, dict], set[int]]:
        """Which steps are served from the cache (with their stored outputs) and which run."""
        needed = {self.producer[slot] for slot in self.output_slots.values() if slot in self.producer}
        forced: set[int] = set()
        hits: dict[int, dict] = {}
        run: set[int] = set()
        for index in range(len(self.infos) - 1, -1, -1):
            if index not in needed and index not in forced:
                continue
            info = self.infos[index]
            if index not in forced and info.storable and info.pure:
                entry = cache.get(sigs[index].hex())
                if entry is not None and all(key in entry for key in info.keys):
                    hits[index] = entry
                    continue
            run.add(index)
            needed.update(self.producer[slot] for slot in info.reads if slot in self.producer)
            for slot in info.mutable_reads:
                forced.update(self.earlier[(index, slot)])
        return hits, run


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cache_plan(plan) -> CachePlan:
    found = _PLANS.get(plan)
    if found is None:
        found = _PLANS[plan] = CachePlan(plan)
    return found


def run_mode(ctx) -> bytes:
    """What the run computes with, besides its inputs: device, dtype and fast mode, as asked (core/mode.py)."""
    return ctx.mode.signature()


def run_steps_cached(plan, slots: list, values: dict[str, Any], ctx, cache: NodeCache) -> None:
    """Like `run_steps(plan.steps, ...)`, but serving what it can from `cache` and storing what ran."""
    info = cache_plan(plan)
    sigs = info.signatures(values, run_mode(ctx))
    hits, run = info.decide(sigs, cache)
    for index, step in enumerate(plan.steps):
        entry = hits.get(index)
        if entry is not None:
            for key, slot in step.outputs:
                slots[slot] = entry[key]
            if ctx.hooks:
                ctx.emit(NodeCached(step.node_id, step.label))
        elif index in run:
            run_steps((step,), slots, ctx)
            if info.infos[index].storable and info.infos[index].pure:
                cache.put(sigs[index].hex(), {key: slots[slot] for key, slot in step.outputs})
