"""The server against fresh processes: `.venv/bin/python benchmarks/bench_serve.py [--steps 25] [--repeats 5]
[--threads 1]`

On `builtin:digits` (models loaded once by a warm-up run), medians of `--repeats`:
1. a fresh `nodegraph run` process, start to exit (imports, model load, run, PNG written): the baseline;
2. a warm server run with a new seed (submit -> final event -> the PNG downloaded, as the client sees it), from
   the sixth run on, when the UNet runs from its trace (models/warm_trace.py); the second run (eager UNet) is
   printed too, once;
3. a prompt-change re-run (text branch and below) and a full re-run (new prompt, negative prompt and seed:
   every node but the model loaders runs), both warm;
4. an identical re-run (every node from the node cache; a new PNG is still written);
5. server overhead per run: what the client waits beyond the executor's own time (`run_seconds`), on a graph
   of one node that does nothing (a `Sleep` of 0 s with a new value each time), median of 30, and the server
   process's CPU time per such run (mean of 30: its CPU clock ticks every 10 ms).
Prints wall seconds and CPU seconds (the server process's, or the fresh process's, user + system), with ratios:
on a shared, loaded machine the CPU figures are the steadier ones. The server runs in a subprocess on a free
loopback port, like the tests'.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
NODEGRAPH = [sys.executable, "-m", "nodegraph.cli"]
SLEEP = "nodegraph: 1\ninputs: {v: {type: float}}\nnodes:\n  s: {type: Sleep, seconds: 0, value: $inputs.v}\n" \
        "outputs: {v: $s.value}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def submit_and_wait(http: httpx.Client, body: dict, server: psutil.Process) -> tuple[float, float, dict]:
    """Wall seconds from POST to the run's output files downloaded (after its final event and the run's record), the
    server's CPU seconds meanwhile, and the run."""
    cpu = sum(server.cpu_times()[:2])
    start = time.perf_counter()
    run_id = http.post("/runs", json=body).json()["id"]
    with http.stream("GET", f"/runs/{run_id}/events", timeout=None) as events:
        for line in events.iter_lines():
            if line.startswith("event: ") and line[7:] in ("finished", "failed", "cancelled"):
                break
    run = http.get(f"/runs/{run_id}").json()
    if run["status"] != "finished":
        sys.exit(f"run failed: {run['error']}")
    for output in run["outputs"].values():  # the client downloads what the run wrote (the PNG)
        for item in output if isinstance(output, list) else ():
            http.get(item["url"]).raise_for_status()
    seconds = time.perf_counter() - start
    cpu = sum(server.cpu_times()[:2]) - cpu
    return seconds, cpu, run


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both sides (default: 1)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(args.threads)}
    digits = {"model": "builtin:digits", "steps": args.steps, "prompt": "a handwritten digit 3"}

    with tempfile.TemporaryDirectory() as scratch:
        fresh, fresh_cpu = [], []
        for k in range(args.repeats):
            cpu, start = children_cpu(), time.perf_counter()
            subprocess.run([*NODEGRAPH, "run", str(REPO / "graphs" / "stable_diffusion.yaml"), "-q",
                            "--set", "model=builtin:digits", "--set", f"steps={args.steps}", "--set", f"seed={k}",
                            "--out", f"{scratch}/cli"], env=env, check=True, capture_output=True)
            fresh.append(time.perf_counter() - start)
            fresh_cpu.append(children_cpu() - cpu)

        port = free_port()
        server = subprocess.Popen([*NODEGRAPH, "serve", "--port", str(port), "--data", f"{scratch}/data"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process = psutil.Process(server.pid)
        try:
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            for _ in range(300):
                try:
                    http.get("/health")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            sd = lambda **inputs: {"graph": "stable_diffusion", "inputs": {**digits, **inputs}}  # noqa: E731
            submit_and_wait(http, sd(seed=999), process)  # warm-up: imports and model loads
            # the UNet calls of runs 2-4 are eager; the 100th call makes the trace, run 5 verifies it
            # (models/warm_trace.py): the second run is the eager warm figure, from the sixth on they are traced
            eager = [submit_and_wait(http, sd(seed=990 + k), process) for k in range(4)][0]
            kinds = ("warm", "prompt", "full", "same")
            wall: dict[str, list] = {k: [] for k in kinds}
            cpu: dict[str, list] = {k: [] for k in kinds}
            executor = []
            for k in range(args.repeats):
                bodies = {"warm": sd(seed=100 + k), "prompt": sd(seed=100 + k, prompt=f"a handwritten digit {k}"),
                          "full": sd(seed=200 + k, prompt=f"digit {k}", negative_prompt=f"n{k}"),
                          "same": sd(seed=200 + k, prompt=f"digit {k}", negative_prompt=f"n{k}")}
                for kind in kinds:
                    seconds, used, run = submit_and_wait(http, bodies[kind], process)
                    wall[kind].append(seconds)
                    cpu[kind].append(used)
                    if kind == "warm":
                        executor.append(run["run_seconds"])
            overhead, overhead_cpu = [], 0.0
            for k in range(30):
                seconds, used, run = submit_and_wait(http, {"document": SLEEP, "inputs": {"v": float(k)}}, process)
                overhead.append(seconds - run["run_seconds"])
                overhead_cpu += used  # CPU clocks tick every 10 ms: only the total over 30 runs means something
        finally:
            server.terminate()
            server.wait(30)

    med = statistics.median
    rows = [("fresh `nodegraph run` process", med(fresh), med(fresh_cpu)),
            ("warm server run, new seed", med(wall["warm"]), med(cpu["warm"])),
            ("  its 2nd run (UNet not traced yet)", eager[0], eager[1]),
            ("warm full re-run (all but loaders)", med(wall["full"]), med(cpu["full"])),
            ("warm prompt-change re-run", med(wall["prompt"]), med(cpu["prompt"])),
            ("identical re-run (all cached)", med(wall["same"]), med(cpu["same"]))]
    print(f"builtin:digits, {args.steps} steps, median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'':38} {'wall s':>8} {'CPU s':>8}")
    for name, seconds, used in rows:
        print(f"{name:38} {seconds:8.3f} {used:8.3f}")
    print(f"fresh process / warm server run:       {med(fresh) / med(wall['warm']):6.1f}x wall "
          f"{med(fresh_cpu) / med(cpu['warm']):6.1f}x CPU (executor's own time {med(executor):.3f} s)")
    print(f"full re-run / prompt-change re-run:    {med(wall['full']) / med(wall['prompt']):6.2f}x wall "
          f"{med(cpu['full']) / med(cpu['prompt']):6.2f}x CPU")
    same_cpu = med(cpu["same"])  # the CPU clock ticks every 10 ms: an all-cached re-run may read 0
    print(f"full re-run / identical re-run:        {med(wall['full']) / med(wall['same']):6.1f}x wall "
          + (f"{med(cpu['full']) / same_cpu:6.1f}x CPU" if same_cpu else "   (CPU below the clock's 10 ms tick)"))
    print(f"server overhead per run (one-node graph, median of 30): {med(overhead) * 1000:.1f} ms wall beyond "
          f"the executor's own time (HTTP, SSE and the run record fetched), {overhead_cpu / 30 * 1000:.1f} ms server CPU "
          f"(mean; target <= 5 ms)")


if __name__ == "__main__":
    main()
