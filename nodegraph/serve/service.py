"""The server's parts put together: store, documents, worker, caches; what each route asks of them."""

from __future__ import annotations

import json
import pathlib
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from nodegraph.serve.documents import Documents, Rejected, reject, relative
from nodegraph.serve.lookups import Lookups
from nodegraph.serve.redact import Redactor
from nodegraph.serve.run_limits import RunLimits, run_limit_problems


@dataclass
class ServeConfig:
    data: pathlib.Path
    graphs: list[pathlib.Path] = field(default_factory=list)
    models: list[pathlib.Path] = field(default_factory=list)
    token: Optional[str] = None
    max_request_bytes: int = 2_000_000
    max_nodes: int = 500
    max_model_memory: Optional[int] = None  # bytes; None: half the machine's (or GPU's) memory
    max_cache_memory: int = 1 << 30  # bytes of node outputs kept
    device: Any = None
    dtype: Any = None
    allow_hub_graphs: bool = False  # documents may name graphs on the Hub (`type: hf://…`)
    run_limits: RunLimits = field(default_factory=RunLimits)  # pixels, steps, batch, wall time of one run
    cancel_wait_seconds: float = 2.0  # how long DELETE waits for a running run to stop before saying "pending"
    lookup_workers: int = 4  # submissions checked at once (lookups.py)
    lookup_seconds: float = 10.0  # how long a request waits for its check
    max_pending_lookups: int = 64  # checks running or waiting; one more is a 503 at once


@dataclass
class Prepared:
    """A checked submission, ready to queue."""

    name: str
    digest: str
    values: dict
    outputs: Optional[list[str]]
    fast: bool
    weights: Optional[str] = None  # fp8 storage of the denoiser (core/mode.py)


class Service:
    def __init__(self, config: ServeConfig):
        from nodegraph.exec import png_metadata
        from nodegraph.exec.lru_caches import ModelCache, OutputCache, default_model_budget
        from nodegraph.serve.events import EventLogs
        from nodegraph.serve.queue import RunStore
        from nodegraph.serve.worker import Worker

        png_metadata.install()
        self.config = config
        config.data.mkdir(parents=True, exist_ok=True)
        self.out_dir = config.data / "outputs"
        self.out_dir.mkdir(exist_ok=True)
        _remove_partial_files(self.out_dir)
        self.store = RunStore(config.data / "runs.sqlite")
        self.interrupted = self.store.fail_interrupted()
        self.documents = Documents(config.data, config.graphs, config.models, self.store, config.max_nodes,
                                   hub_graphs=config.allow_hub_graphs)
        self.logs = EventLogs()
        self.redactor = Redactor(config.data, self.documents.root, [*self.documents.graph_dirs,
                                                                    *self.documents.model_dirs,
                                                                    self.documents.inputs_dir])
        self.lookups = Lookups(config.lookup_workers, config.lookup_seconds, config.max_pending_lookups)
        self.models = ModelCache(config.max_model_memory or default_model_budget())
        self.outputs_cache = OutputCache(config.max_cache_memory, shared=self.models.shared_storages)
        self.models.on_evict = self.outputs_cache.drop_holding
        self.worker = Worker(self.store, self.documents, self.logs, self.models, self.outputs_cache,
                             self.out_dir, config.device, config.dtype)
        self.worker.max_run_seconds = config.run_limits.max_run_seconds
        queued, _ = self.store.page(["queued"], 1_000_000, None)
        for run in queued:  # accepted before a restart: their event logs start again
            self.logs.open(run["id"]).append({"type": "queued"})

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.lookups.close()
        self.store.close()

    def submit(self, *, graph: Optional[str], document: Any, inputs: dict, priority: int,
               outputs: Optional[list[str]], preview: bool, fast: Any = False,
               requeued_from: Optional[str] = None) -> dict:
        """Validate everything, then queue; Rejected (nothing queued) when anything is wrong."""
        prepared = self.prepare(graph=graph, document=document, inputs=inputs, outputs=outputs, fast=fast)
        return self.enqueue(prepared, priority=priority, preview=preview, requeued_from=requeued_from)

    def prepare(self, *, graph: Optional[str], document: Any, inputs: dict, outputs: Optional[list[str]],
                fast: Any = False, weights: Any = None) -> Prepared:
        """Everything a submission is checked for, nothing queued: the part that may be slow (lookups), run
        off the event loop by the routes (lookups.py). A limit of the readers (spec/limits.py) is a 422."""
        from nodegraph.spec.limits import InputRefused

        try:
            return self._prepare(graph, document, inputs, outputs, fast, weights)
        except InputRefused as exc:
            raise reject(exc.code, "document", exc.message, exc.hint) from None
        except Rejected:
            raise
        except Exception as exc:  # a reader's gap (a bug): the request is refused, the server goes on
            message = self.redactor.text(f"{type(exc).__name__}: {exc}")[:300]
            print(f"nodegraph serve: a submission could not be read: {message}", file=sys.stderr, flush=True)
            raise reject("unreadable_document", "document", f"the submission could not be read ({message})",
                         "check the document; if it is valid, this is a bug in nodegraph") from None

    def _prepare(self, graph, document, inputs, outputs, fast, weights=None) -> Prepared:
        from nodegraph.spec.errors import GraphError, ValidationFailed
        from nodegraph.spec.values import bind_input_values

        if not isinstance(fast, bool):
            raise reject("invalid_value", "fast", f"`fast` must be true or false, got {json.dumps(fast, default=repr)}",
                         "true runs in fast mode (faster kernels, the image not bit-equal to the default one); "
                         "false or absent keeps the image bit-equal to diffusers")
        weights = self._weights(weights)
        loaded, digest, name = self.documents.submit(graph, document)
        if not isinstance(inputs, dict):
            raise reject("bad_request", "inputs", "`inputs` must be an object {name: value}", status=400)
        try:
            values = bind_input_values(loaded.checked, inputs)
        except ValidationFailed as exc:
            folder = self.documents.root / digest
            raise Rejected(422, [relative(e, folder) for e in exc.issues], name) from None
        if outputs is not None:
            unknown = [o for o in outputs if o not in loaded.spec.outputs]
            if unknown:
                raise Rejected(422, [GraphError("unknown_output", f"outputs.{o}", f"the graph has no output `{o}`",
                                                f"its outputs: {', '.join(loaded.spec.outputs)}", "<request>")
                                     for o in unknown], name)
        self.documents.check_values(loaded, values)
        problems = run_limit_problems(loaded.checked, values, self.config.run_limits)
        if problems:
            raise Rejected(422, problems, "<request>")
        return Prepared(name, digest, values, outputs, fast, weights)

    def _weights(self, weights: Any) -> Optional[str]:
        """A run's `weights` by its canonical name; 422 for an unknown one or where torch or the server's device
        has no float8 (models/fp8.py), before anything is queued."""
        from nodegraph.core.context import resolve_device
        from nodegraph.core.mode import RunMode
        from nodegraph.models.fp8 import Fp8Unsupported, check_fp8

        try:
            weights = RunMode(weights=weights).weights
            if weights:
                check_fp8(resolve_device(self.config.device), weights)
        except (ValueError, TypeError) as exc:  # Fp8Unsupported is a ValueError
            hint = "" if isinstance(exc, Fp8Unsupported) else "fp8, fp8_e4m3fn, fp8_e5m2, or null for the files' own"
            raise reject("invalid_value", "weights", str(exc), hint) from None
        return weights

    def enqueue(self, prepared: Prepared, *, priority: int, preview: bool,
                requeued_from: Optional[str] = None) -> dict:
        run_id = uuid.uuid4().hex[:16]
        self.store.add(run_id, graph=prepared.name, digest=prepared.digest, inputs=prepared.values,
                       priority=priority, wanted=prepared.outputs, preview=preview, fast=prepared.fast,
                       requeued_from=requeued_from, weights=prepared.weights)
        self.logs.open(run_id).append({"type": "queued"})
        self.worker.wake()
        return self.store.get(run_id)

    def cancel(self, run_id: str) -> Optional[dict]:
        """Cancel a queued or running run; waits up to `cancel_wait_seconds` for a running one to stop (the
        check between model layers makes that well under a second), so the answer says whether it has."""
        run = self.store.get(run_id)
        if run is None:
            return None
        if run["status"] == "queued" and self.store.cancel_queued(run_id):
            self.logs.open(run_id).append({"type": "cancelled", "error": "cancelled before it started"})
        elif run["status"] in ("queued", "running"):  # it started meanwhile, or was running
            self.worker.cancel(run_id)
            self.logs.open(run_id).wait_ended(self.config.cancel_wait_seconds)
        return self.store.get(run_id)

    def requeue(self, run_id: str) -> Optional[dict]:
        prepared = self.prepare_requeue(run_id)
        return None if prepared is None else self.enqueue_requeue(run_id, prepared)

    def prepare_requeue(self, run_id: str) -> Optional[Prepared]:
        run = self.store.get(run_id)
        if run is None:
            return None
        if run["status"] not in ("failed", "cancelled"):
            raise reject("not_requeueable", "status", f"run {run_id} is {run['status']}",
                         "only failed or cancelled runs are re-queued", status=409)
        bundle = self.store.document(run["digest"])
        return self.prepare(graph=None, document=bundle, inputs=run["inputs"], outputs=run["wanted"], fast=run["fast"],
                            weights=run.get("weights"))

    def enqueue_requeue(self, run_id: str, prepared: Prepared) -> dict:
        run = self.store.get(run_id)
        return self.enqueue(prepared, priority=run["priority"], preview=run["preview"], requeued_from=run_id)

    def free(self) -> dict:
        import gc

        freed = {"models": self.models.clear(), "node_outputs": self.outputs_cache.clear()}
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        return freed

    def run_json(self, run: dict, base: str = "") -> dict:
        """A run as the API shows it: outputs with URLs, no internals."""
        outputs = {}
        for name, item in (run.get("outputs") or {}).items():
            if "files" in item:
                outputs[name] = [{"file": f, "url": f"{base}/outputs/{run['id']}/{f}"} for f in item["files"]]
            else:
                outputs[name] = item
        shown = {k: run.get(k) for k in ("id", "seq", "status", "priority", "graph", "inputs", "fast", "created",
                                        "started", "finished", "run_seconds", "error", "executed", "cached",
                                        "requeued_from", "weights", "memory")}
        shown["error"] = self.redactor.text(shown["error"])  # no server path (redact.py)
        shown["outputs"] = outputs
        shown["requested_outputs"] = run.get("wanted")
        return shown


def _remove_partial_files(out_dir: pathlib.Path) -> None:
    """A server killed while writing leaves the writer's temporary `.NAME.*.part` files: never outputs."""
    for path in out_dir.glob("*/.*.part"):
        path.unlink(missing_ok=True)
