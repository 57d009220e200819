"""The server against fresh processes: `.venv/bin/python benchmarks/bench_serve.py [--steps 10] [--repeats 5]`

On `builtin:digits` (models loaded once by a warm-up run), medians of `--repeats`:
1. a fresh `nodegraph run` process, start to exit (imports, model load, run, PNG written): the baseline;
2. a warm server run with a new seed (submit -> PNG written, as the client sees it);
3. a prompt-change re-run (text branch and below) and a full re-run (new prompt, negative prompt and seed:
   every node but the model loaders runs), both warm;
4. an identical re-run (every node from the node cache; a new PNG is still written);
5. server overhead per run: what the client waits beyond the executor's own time (`run_seconds`), on a graph
   of one node that does nothing (a `Sleep` of 0 s with a new value each time), median of 30.
Prints seconds and ratios. The server runs in a subprocess on a free loopback port, like the tests'.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
NODEGRAPH = [sys.executable, "-m", "nodegraph.cli"]
SLEEP = "nodegraph: 1\ninputs: {v: {type: float}}\nnodes:\n  s: {type: Sleep, seconds: 0, value: $inputs.v}\n" \
        "outputs: {v: $s.value}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def submit_and_wait(http: httpx.Client, body: dict) -> tuple[float, dict]:
    """Seconds from POST to the run's final event, and the run."""
    start = time.perf_counter()
    run_id = http.post("/runs", json=body).json()["id"]
    with http.stream("GET", f"/runs/{run_id}/events", timeout=None) as events:
        for line in events.iter_lines():
            if line.startswith("event: ") and line[7:] in ("finished", "failed", "cancelled"):
                break
    seconds = time.perf_counter() - start
    run = http.get(f"/runs/{run_id}").json()
    if run["status"] != "finished":
        sys.exit(f"run failed: {run['error']}")
    return seconds, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    digits = {"model": "builtin:digits", "steps": args.steps, "prompt": "a handwritten digit 3"}

    with tempfile.TemporaryDirectory() as scratch:
        fresh = []
        for k in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([*NODEGRAPH, "run", str(REPO / "graphs" / "stable_diffusion.yaml"), "-q",
                            "--set", "model=builtin:digits", "--set", f"steps={args.steps}", "--set", f"seed={k}",
                            "--out", f"{scratch}/cli"], env=env, check=True, capture_output=True)
            fresh.append(time.perf_counter() - start)

        port = free_port()
        server = subprocess.Popen([*NODEGRAPH, "serve", "--port", str(port), "--data", f"{scratch}/data"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            for _ in range(300):
                try:
                    http.get("/health")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            sd = lambda **inputs: {"graph": "stable_diffusion", "inputs": {**digits, **inputs}}  # noqa: E731
            submit_and_wait(http, sd(seed=999))  # warm-up: imports and model loads
            warm, prompt, full, same, executor = [], [], [], [], []
            for k in range(args.repeats):
                seconds, run = submit_and_wait(http, sd(seed=100 + k))
                warm.append(seconds)
                executor.append(run["run_seconds"])
                prompt.append(submit_and_wait(http, sd(seed=100 + k, prompt=f"a handwritten digit {k}"))[0])
                full.append(submit_and_wait(http, sd(seed=200 + k, prompt=f"digit {k}", negative_prompt=f"n{k}"))[0])
                same.append(submit_and_wait(http, sd(seed=200 + k, prompt=f"digit {k}", negative_prompt=f"n{k}"))[0])
            overhead = []
            for k in range(30):
                seconds, run = submit_and_wait(http, {"document": SLEEP, "inputs": {"v": float(k)}})
                overhead.append(seconds - run["run_seconds"])
        finally:
            server.terminate()
            server.wait(30)

    med = statistics.median
    print(f"builtin:digits, {args.steps} steps, median of {args.repeats}")
    print(f"fresh `nodegraph run` process       {med(fresh):8.3f} s")
    print(f"warm server run, new seed           {med(warm):8.3f} s   {med(fresh) / med(warm):6.1f}x faster "
          f"(executor's own time {med(executor):.3f} s)")
    print(f"warm full re-run                    {med(full):8.3f} s")
    print(f"warm prompt-change re-run           {med(prompt):8.3f} s   {med(full) / med(prompt):6.2f}x the full re-run")
    print(f"identical re-run (all cached)       {med(same):8.3f} s   {med(full) / med(same):6.1f}x the full re-run")
    print(f"server overhead per run (median of 30, one-node graph, HTTP + SSE included) "
          f"{med(overhead) * 1000:.1f} ms (target <= 5 ms)")


if __name__ == "__main__":
    main()
