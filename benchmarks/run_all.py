"""Issue 7's benchmarks in one command: time-to-image (whole process) and executor overhead.

    .venv/bin/python benchmarks/run_all.py [--threads N] [--quick]

Both checkpoints (random weights) are built once into ~/.cache/nodegraph-bench. --quick: the tiny checkpoint
only (about a minute); without it the SD1.5-size runs take about 15 minutes on 2 CPU cores.
Use the same --threads for every comparison you quote; the tables print it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="the tiny checkpoint only")
    args = parser.parse_args()
    common = ["--threads", str(args.threads)] + (["--only", "tiny"] if args.quick else [])
    for script, extra in (("bench_time_to_image.py", []), ("bench_graph_overhead.py", ["--repeats", "2"])):
        subprocess.run([sys.executable, str(HERE / script), *common, *extra], check=True)


if __name__ == "__main__":
    main()
