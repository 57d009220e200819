"""The queue and the history, as the page shows them: the waiting runs with their positions, a queued run's
priority changed (the worker takes the highest first, then the earliest), every run newest first, paged and
searched by prompt, and a run that ended deleted with its files. Cancelling is `DELETE /runs/{id}` (app.py).

The token rule applies to every route here, as to all of the API (app.py's Guard).
"""

from __future__ import annotations

import shutil
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

MAX_SQLITE_INT = 2**63 - 1


class PriorityChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priority: int = Field(ge=-1000, le=1000, description="higher runs first; equal ones in arrival order")


def add_queue_routes(app, service) -> None:
    from fastapi import Query

    from nodegraph.serve.documents import reject

    def waiting() -> list[dict]:
        """The running run (position 0) and the queued ones (1, 2, …) in the order they will run."""
        shown, position = [], 0
        for run in service.store.waiting():
            if run["status"] == "queued":
                position += 1
            shown.append({**service.run_json(run), "position": 0 if run["status"] == "running" else position})
        return shown

    def known(run_id: str) -> dict:
        run = service.store.get(run_id)
        if run is None:
            raise reject("unknown_run", "id", f"no run {run_id[:40]}", "GET /runs lists them", status=404)
        return run

    @app.get("/queue", summary="The running run (position 0), then the queued ones in the order they will run")
    def queue():
        return {"runs": waiting()}

    @app.patch("/runs/{run_id}", summary="Change a queued run's priority (its place in the queue)")
    def change(run_id: str, body: PriorityChange):
        run = known(run_id)
        if not service.store.set_priority(run_id, body.priority):
            raise reject("not_queued", "status", f"run {run_id} is {run['status']}, not queued",
                         "only a queued run's priority can change", status=409)
        return next((r for r in waiting() if r["id"] == run_id), None) or service.run_json(known(run_id))

    @app.get("/history", summary="Runs, newest first, searched by prompt; `next` pages on; `total` matches")
    def history(q: str = Query("", max_length=200, description="text the prompt contains (any case)"),
                limit: int = Query(20, ge=1, le=500),
                cursor: Optional[int] = Query(None, ge=0, le=MAX_SQLITE_INT, description="the previous `next`")):
        runs, following, total = service.store.history(q.strip(), limit, cursor)
        return {"runs": [service.run_json(r) for r in runs], "next": following, "total": total}

    @app.delete("/history/{run_id}", summary="Delete a run that ended, with its output files")
    def delete(run_id: str):
        run = known(run_id)
        if not service.store.delete(run_id):
            raise reject("not_ended", "status", f"run {run_id} is {run['status']}",
                         "cancel it first (DELETE /runs/ID), then delete it", status=409)
        folder = service.out_dir / run["id"]  # the id as stored: never a path the request made up
        files = sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return {"deleted": run["id"], "files": files}
