"""The run store: every accepted run, its document, inputs, status, events and outputs, in SQLite.

A run is written (and committed) before POST /runs answers, so a crash loses nothing that was accepted.
WAL journaling: a committed transaction survives the process being killed. One connection, one lock: the
HTTP threads and the worker take turns; every statement is short.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any, Optional

STATUSES = ("queued", "running", "finished", "failed", "cancelled")
DONE = ("finished", "failed", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    digest TEXT PRIMARY KEY,         -- sha256 of the bundle's canonical JSON
    bundle TEXT NOT NULL             -- {"format", "main", "files": {path: text}} (spec/bundle.py)
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order; also the paging cursor
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    graph TEXT NOT NULL,             -- what the user submitted: a graph name or the document's file name
    digest TEXT NOT NULL REFERENCES documents(digest),
    inputs TEXT NOT NULL,            -- JSON: the bound input values, defaults filled in
    wanted TEXT,                     -- JSON list of requested outputs, or null for all
    preview INTEGER NOT NULL DEFAULT 0,
    fast INTEGER NOT NULL DEFAULT 0,  -- fast mode (nodegraph/fast): faster kernels, not bit-equal to diffusers
    weights TEXT,                    -- fp8 storage of the denoiser (core/mode.py), null = the files' own
    requeued_from TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    run_seconds REAL,                -- the executor's own time
    error TEXT,
    outputs TEXT,                    -- JSON: {name: [file names] or a small summary}
    executed INTEGER,                -- top-level nodes that ran
    cached INTEGER,                  -- top-level nodes served from the node cache
    events TEXT,                     -- JSON list of the run's events (previews left out)
    memory TEXT                      -- JSON: the run's peak and each node's (exec/memory_report.py), bytes
);
CREATE INDEX IF NOT EXISTS runs_queue ON runs(status, priority DESC, seq);
"""


class RunStore:
    def __init__(self, path):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable against a killed process
            self._db.executescript(SCHEMA)
            columns = {row["name"] for row in self._db.execute("PRAGMA table_info(runs)")}
            if "fast" not in columns:  # a data folder from before fast mode: its runs were all default ones
                self._db.execute("ALTER TABLE runs ADD COLUMN fast INTEGER NOT NULL DEFAULT 0")
            if "weights" not in columns:  # from before fp8 runs: its runs held the files' own weights
                self._db.execute("ALTER TABLE runs ADD COLUMN weights TEXT")
            if "memory" not in columns:  # from before the memory report: its runs have none
                self._db.execute("ALTER TABLE runs ADD COLUMN memory TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args=()) -> Optional[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _write(self, sql: str, args=()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # documents
    def put_document(self, digest: str, bundle: dict) -> None:
        self._write("INSERT OR IGNORE INTO documents(digest, bundle) VALUES (?, ?)", (digest, json.dumps(bundle)))

    def document(self, digest: str) -> Optional[dict]:
        row = self._one("SELECT bundle FROM documents WHERE digest = ?", (digest,))
        return json.loads(row["bundle"]) if row else None

    # runs
    def add(self, run_id: str, *, graph: str, digest: str, inputs: dict, priority: int = 0,
            wanted: Optional[list] = None, preview: bool = False, fast: bool = False,
            requeued_from: Optional[str] = None, weights: Optional[str] = None) -> None:
        self._write("INSERT INTO runs(id, status, priority, graph, digest, inputs, wanted, preview, fast, "
                    "requeued_from, created, weights) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, priority, graph, digest, json.dumps(inputs), json.dumps(wanted), int(preview),
                     int(fast), requeued_from, time.time(), weights))

    def get(self, run_id: str) -> Optional[dict]:
        row = self._one("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _as_dict(row) if row else None

    def page(self, statuses: Optional[list[str]], limit: int, before: Optional[int]) -> tuple[list[dict], Optional[int]]:
        """Newest first; `before` is the cursor returned by the previous page."""
        where, args = [], []
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args += statuses
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        sql = ("SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY seq DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_as_dict(r) for r in rows], (rows[-1]["seq"] if more and rows else None)

    def claim_next(self) -> Optional[dict]:
        """Mark the next queued run (highest priority, then earliest) running and return it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT * FROM runs WHERE status = 'queued' "
                                       "ORDER BY priority DESC, seq LIMIT 1").fetchone()
                if row is not None:
                    self._db.execute("UPDATE runs SET status = 'running', started = ? WHERE seq = ?",
                                     (time.time(), row["seq"]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if row is None:
            return None
        run = _as_dict(row)
        run["status"] = "running"
        return run

    def finish(self, run_id: str, status: str, *, error: Optional[str] = None, outputs: Optional[dict] = None,
               executed: int = 0, cached: int = 0, run_seconds: Optional[float] = None,
               events: Optional[list] = None, memory: Optional[dict] = None) -> None:
        self._write("UPDATE runs SET status = ?, finished = ?, error = ?, outputs = ?, executed = ?, cached = ?, "
                    "run_seconds = ?, events = ?, memory = ? WHERE id = ?",
                    (status, time.time(), error, json.dumps(outputs) if outputs is not None else None, executed,
                     cached, run_seconds, json.dumps(events) if events is not None else None,
                     json.dumps(memory) if memory is not None else None, run_id))

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a run that has not started; False if it is not queued (any more)."""
        return self._write("UPDATE runs SET status = 'cancelled', finished = ?, error = 'cancelled before it "
                           "started' WHERE id = ? AND status = 'queued'", (time.time(), run_id)) == 1

    def fail_interrupted(self) -> int:
        """At start-up: runs left `running` by a server that stopped mid-run are failed, not run again."""
        now = time.time()
        events = json.dumps([{"type": "failed", "error": "server stopped", "time": now, "seq": 0}])
        return self._write("UPDATE runs SET status = 'failed', finished = ?, error = 'server stopped', events = ? "
                           "WHERE status = 'running'", (now, events))

    def waiting(self) -> list[dict]:
        """The running run(s), then the queued ones in the order the worker takes them (claim_next's)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs WHERE status IN ('running', 'queued') "
                                    "ORDER BY status = 'queued', priority DESC, seq").fetchall()
        return [_as_dict(r) for r in rows]

    def set_priority(self, run_id: str, priority: int) -> bool:
        """Change a queued run's priority; False if it is not queued (any more)."""
        return self._write("UPDATE runs SET priority = ? WHERE id = ? AND status = 'queued'", (priority, run_id)) == 1

    def history(self, query: str, limit: int, before: Optional[int]) -> tuple[list[dict], Optional[int], int]:
        """Runs, newest first, whose prompt contains `query` (any case; empty: all): a page, the cursor of the
        next one, and how many match in all."""
        where, args = ["1"], []
        if query:
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("json_extract(inputs, '$.prompt') LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        condition = " AND ".join(where)
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM runs WHERE {condition}", args).fetchone()[0]
            if before is not None:
                condition += " AND seq < ?"
                args.append(before)
            rows = self._db.execute(f"SELECT * FROM runs WHERE {condition} ORDER BY seq DESC LIMIT ?",
                                    (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_as_dict(r) for r in rows], (rows[-1]["seq"] if more and rows else None), total

    def delete(self, run_id: str) -> bool:
        """Forget a run that ended (its row; the caller removes its files); False if it has not ended."""
        return self._write(f"DELETE FROM runs WHERE id = ? AND status IN ({', '.join('?' for _ in DONE)})",
                           (run_id, *DONE)) == 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status").fetchall()
        return {status: 0 for status in STATUSES} | {r["status"]: r["n"] for r in rows}


def _as_dict(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    for key in ("inputs", "wanted", "outputs", "events", "memory"):
        if run.get(key) is not None:
            run[key] = json.loads(run[key])
    run["preview"] = bool(run["preview"])
    run["fast"] = bool(run["fast"])
    return run
