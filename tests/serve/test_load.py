"""100 submissions from 10 concurrent clients on the digits model, loopback only, bounded in time."""

import threading
import time

import psutil
from serve_helpers import DIGITS, wait_for

from nodegraph.client import RunHandle

CLIENTS, EACH = 10, 10


def test_hundred_runs_from_ten_clients_all_finish_once_in_priority_order_with_stable_memory(server):
    with server.client() as client:
        blocker = client.submit("sleep", seconds=60, value=time.time())  # holds the worker while all arrive
        wait_for(client, blocker.id, "running")
        submitted: list[tuple[str, int]] = []
        lock = threading.Lock()

        def submit(k: int):
            with server.client() as own:
                for j in range(EACH):
                    priority = (k + j) % 3
                    handle = own.submit("stable_diffusion", **{**DIGITS, "steps": 2}, seed=1000 + k * EACH + j,
                                        priority=priority)
                    with lock:
                        submitted.append((handle.id, priority))

        threads = [threading.Thread(target=submit, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(submitted) == CLIENTS * EACH and len({i for i, _ in submitted}) == CLIENTS * EACH
        blocker.cancel()
        ids = {i for i, _ in submitted}

        process = psutil.Process(server.proc.pid)
        deadline = time.monotonic() + 240
        rss_after_first = None
        while time.monotonic() < deadline:
            counts = client.health()["runs"]
            if rss_after_first is None and sum(r["status"] == "finished" and r["id"] in ids for r in
                                               client.runs(status="finished", limit=500)["runs"]) >= 20:
                rss_after_first = process.memory_info().rss
            if counts["queued"] == 0 and counts["running"] == 0:
                break
            time.sleep(0.5)
        rss_end = process.memory_info().rss
        runs = [client.get(i) for i, _ in submitted]
        assert [r["status"] for r in runs] == ["finished"] * len(runs)
        for run_id, _ in submitted[:: EACH]:  # ran exactly once, by its own events
            assert [e["type"] for e in RunHandle(client, run_id).events()].count("started") == 1
        order = sorted(runs, key=lambda r: r["started"])  # seq: arrival order
        assert [(-r["priority"], r["seq"]) for r in order] == sorted((-r["priority"], r["seq"]) for r in runs)
        assert rss_after_first is not None
        growth = rss_end - rss_after_first
        print(f"server RSS after 20 runs {rss_after_first / 2**20:.0f} MiB, after 100 {rss_end / 2**20:.0f} MiB")
        assert growth < 40 * 2**20, f"server RSS grew {growth / 2**20:.0f} MiB over 80 runs"
