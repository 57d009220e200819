"""HTTP routes (FastAPI). Routes only: the work is in service.py and the modules it puts together.

Every route needs `Authorization: Bearer TOKEN` when the server has a token (`?access_token=` also works,
for browsers' EventSource, which cannot set headers). Errors are JSON `{"message", "errors": [{code, path,
message, hint, file, line, col}]}` with a 4xx status; never a traceback.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any, Optional, Union

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from nodegraph.serve.documents import Rejected, reject
from nodegraph.serve.editor_routes import add_editor_routes
from nodegraph.serve.model_list import add_model_route
from nodegraph.serve.queue_routes import add_queue_routes
from nodegraph.serve.picture import add_picture_route
from nodegraph.serve.uploads import add_upload_route
from nodegraph.serve.queue import STATUSES
from nodegraph.serve.service import ServeConfig, Service
from nodegraph.web.routes import add_page, is_public

FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
MAX_SQLITE_INT = 2**63 - 1  # SQLite's integers are 64-bit: a larger cursor is refused, never sent to it
EVENT_ID = re.compile(r"[0-9]{1,18}")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    graph: Optional[str] = Field(None, description="a graph name from GET /graphs")
    document: Optional[Union[str, dict[str, Any]]] = Field(
        None, description="a whole graph: YAML/JSON text, or a bundle {format: 1, main, files}")
    inputs: dict[str, Any] = Field(default_factory=dict, description="graph input values")
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first; equal ones in arrival order")
    outputs: Optional[list[str]] = Field(None, description="outputs to compute (default: all)")
    preview: bool = Field(False, description="send a small latent preview with each progress event")
    # checked by the service (422 at `fast`), not here: a bad value is a rejected run like any bad input value
    fast: Any = Field(False, description="fast mode: faster kernels, the image not bit-equal to the default one "
                                         "(within 2/255 in fp32; in bf16 about as far as bf16 is from fp32); "
                                         "recorded in the PNG (docs/performance.md)")
    weights: Any = Field(None, description="fp8 (fp8_e4m3fn, fp8_e5m2): the UNet / transformer held as float8, "
                                           "upcast per layer; not the same pixels; recorded in the PNG "
                                           "(docs/memory.md)")


def error(status: int, code: str, message: str, hint: str = "") -> JSONResponse:
    return JSONResponse(reject(code, "", message, hint, status).as_json(), status_code=status)


class Guard:
    """ASGI middleware: the bearer token on every route, and the request size limit."""

    def __init__(self, app, token: Optional[str], max_bytes: int):
        self.app, self.token, self.max_bytes = app, token, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.token is not None and not is_public(scope["path"]) and not self._authorized(scope, headers):
            response = error(401, "unauthorized", "this server needs a token",
                             "send `Authorization: Bearer TOKEN` (or ?access_token=TOKEN)")
            response.headers["WWW-Authenticate"] = "Bearer"
            return await response(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error(413, "request_too_large", f"the request is {int(length):,} bytes; the limit is "
                               f"{self.max_bytes:,}", "graphs are a few kilobytes")(scope, receive, send)
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):  # chunked: read it, within the limit
            body = bytearray()
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > self.max_bytes:
                    return await error(413, "request_too_large", f"the request is over {self.max_bytes:,} bytes",
                                       "graphs are a few kilobytes")(scope, receive, send)
                if not message.get("more_body"):
                    break
            replayed = False

            async def receive_body():
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            return await self.app(scope, receive_body, send)
        return await self.app(scope, receive, send)

    def _authorized(self, scope, headers) -> bool:
        given = headers.get(b"authorization", b"").decode("latin-1")
        if given.lower().startswith("bearer "):
            given = given[7:].strip()
        else:
            from urllib.parse import parse_qs

            given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("access_token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())


def create_app(config: ServeConfig) -> FastAPI:
    from contextlib import asynccontextmanager

    service = Service(config)

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        yield
        service.stop()

    app = FastAPI(title="nodegraph", description="Run nodegraph graphs: a persistent queue, live progress, "
                  "partial re-execution. See docs/server.md.", lifespan=lifespan)
    app.state.service = service

    _add_error_handlers(app, service)
    _add_run_routes(app, service)
    _add_info_routes(app, service)
    add_picture_route(app, service)
    add_upload_route(app, service)
    add_editor_routes(app, service)
    add_model_route(app, service)
    add_queue_routes(app, service)
    add_page(app)
    return Guard(app, config.token, config.max_request_bytes) if config.token or config.max_request_bytes else app


def _add_error_handlers(app: FastAPI, service: Service) -> None:
    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected):
        return JSONResponse(service.redactor.errors_json(exc.as_json()), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        hint = ("the body must be one JSON object as GET /docs shows (integers of at most 4,300 digits)"
                if exc.status_code == 400 else "GET /docs lists the routes")
        return error(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}", hint)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        errors = [{"code": "bad_request", "path": ".".join(map(str, e["loc"])), "message": e["msg"], "hint": "",
                   "file": "<request>", "line": None, "col": None} for e in exc.errors()]
        return JSONResponse({"message": "; ".join(f"{e['path']}: {e['message']}" for e in errors),
                             "errors": errors}, status_code=400)


def _add_run_routes(app: FastAPI, service: Service) -> None:
    """Submitting, listing, following, cancelling and re-queueing runs."""

    @app.post("/runs", status_code=202, summary="Queue a run (validated first: 422 lists every problem)")
    async def submit(body: RunRequest):
        prepared = await service.lookups.run(service.prepare, graph=body.graph, document=body.document,
                                             inputs=body.inputs, outputs=body.outputs, fast=body.fast,
                                             weights=body.weights)
        return service.run_json(service.enqueue(prepared, priority=body.priority, preview=body.preview))

    @app.get("/runs", summary="Runs, newest first; `next` is the cursor of the following page")
    def runs(status: Optional[list[str]] = Query(None), limit: int = Query(50, ge=1, le=500),
             cursor: Optional[int] = Query(None, ge=0, le=MAX_SQLITE_INT,
                                           description="the `next` of the previous page")):
        bad = [s for s in status or [] if s not in STATUSES]
        if bad:
            raise reject("bad_request", "status", f"unknown status {', '.join(bad)}",
                         f"one of {', '.join(STATUSES)}", status=400)
        items, following = service.store.page(status, limit, cursor)
        return {"runs": [service.run_json(r) for r in items], "next": following}

    @app.get("/runs/{run_id}", summary="A run: status, timings, outputs with URLs, error")
    def get_run(run_id: str):
        return service.run_json(found(service, run_id))

    @app.delete("/runs/{run_id}", summary="Cancel this run: 200 once it has stopped (a running one stops at the "
                "next model layer), 202 with `cancel: pending` if it has not yet")
    def cancel(run_id: str):
        run = found(service, run_id)
        if run["status"] not in ("queued", "running"):
            raise reject("not_cancellable", "status", f"run {run_id} is already {run['status']}", status=409)
        run = service.run_json(service.cancel(run_id))
        if run["status"] in ("queued", "running"):
            return JSONResponse({**run, "cancel": "pending"}, status_code=202)
        return {**run, "cancel": "done"}

    @app.post("/runs/{run_id}/requeue", status_code=202, summary="Queue a failed or cancelled run again")
    async def requeue(run_id: str):
        found(service, run_id)
        prepared = await service.lookups.run(service.prepare_requeue, run_id)
        return service.run_json(service.enqueue_requeue(run_id, prepared))

    @app.get("/runs/{run_id}/events", summary="Server-Sent Events of a run; a late client gets all so far first")
    async def events(run_id: str, request: Request):
        from nodegraph.serve.events import EventLog

        run = found(service, run_id)
        log = service.logs.get(run_id)
        if log is None:
            log = EventLog(run["events"] or []) if run["status"] in ("finished", "failed", "cancelled") \
                else service.logs.open(run_id)
        start = resume_after(request.headers.get("last-event-id", ""))

        async def stream():
            async for event in log.follow(start):
                if event is None:
                    yield ": keep-alive\n\n"
                    continue
                if "error" in event:  # no server path (redact.py)
                    event = {**event, "error": service.redactor.text(event["error"])}
                yield f"id: {event['seq']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _add_info_routes(app: FastAPI, service: Service) -> None:
    """Outputs, node types, graphs, health, freeing memory."""

    @app.get("/outputs/{run_id}/{file}", summary="An output file (PNG with its nodegraph metadata)")
    def output(run_id: str, file: str):
        if not (FILE_NAME.match(run_id) and FILE_NAME.match(file)):
            raise reject("unknown_output", "file", f"no output {run_id}/{file}", status=404)
        path = service.out_dir / run_id / file
        if not path.is_file():
            raise reject("unknown_output", "file", f"no output {run_id}/{file}", status=404)
        return FileResponse(path, media_type="image/png" if file.endswith(".png") else None)

    @app.get("/nodes", summary="Every node type with its ports and constraints")
    def nodes():
        from nodegraph.core.registry import REGISTRY

        return {"nodes": [node_json(t) for t in REGISTRY.all()]}

    @app.get("/graphs", summary="The graphs runs may name, with their inputs")
    def graphs():
        return {"graphs": service.documents.describe_graphs()}

    @app.get("/health")
    def health():
        from nodegraph import __version__

        return {"status": "ok", "version": __version__, "runs": service.store.counts(),
                "running": service.worker.running, "lookups_pending": service.lookups.pending,
                "models_loaded": len(service.models),
                "model_bytes": service.models.used, "node_cache_entries": len(service.outputs_cache),
                "node_cache_bytes": service.outputs_cache.used}

    @app.post("/free", summary="Drop loaded models and cached node outputs")
    def free():
        return {"freed": service.free()}


def found(service: Service, run_id: str) -> dict:
    run = service.store.get(run_id)
    if run is None:
        raise reject("unknown_run", "id", f"no run {run_id}", "GET /runs lists them", status=404)
    return run


def resume_after(last_event_id: str) -> int:
    """The index of the first event to send to a client that saw event `Last-Event-ID` (none: 0)."""
    if not last_event_id.strip():
        return 0
    if not EVENT_ID.fullmatch(last_event_id.strip()):
        shown = last_event_id if len(last_event_id) <= 40 else last_event_id[:40] + "…"
        raise reject("bad_request", "Last-Event-ID", f"`Last-Event-ID` {shown!r} is not an event id",
                     "send the `id` of the last event received (a number), or no header to start at the first",
                     status=400)
    return int(last_event_id) + 1


def node_json(t) -> dict:
    inputs = []
    for port in t.inputs.values():
        item = {"name": port.name, "type": str(port.type), "required": port.required, "nullable": port.nullable,
                "description": port.description, "constraints": list(port.constraints)}
        if not port.required:
            item["default"] = port.default if _jsonable(port.default) else repr(port.default)
        inputs.append(item)
    return {"name": t.name, "version": t.version, "label": t.label, "doc": t.doc, "inputs": inputs,
            "outputs": [{"name": n, "type": str(p), "description": t.output_docs.get(n, "")}
                        for n, p in t.outputs.items()],
            "pure": bool(getattr(t.cls, "pure", True))}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
