"""Batch test helpers: the shipped SD graph on `builtin:digits` (2 steps, 32 px) and the CLI in a subprocess.

(A module of its own, not conftest: `from conftest import` would pick whichever test folder's conftest was
loaded last.)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
DIGITS = {"model": "builtin:digits", "steps": 2}
# 8 items: 2 prompts x 4 seeds. One torch thread everywhere (CLI, Ray actors): a different thread count
# may round a pixel differently, and the tests compare images byte for byte.
GRID_ARGS = ["--set", "model=builtin:digits", "--set", "steps=2", "--grid", "prompt=a 7,the number four",
             "--grid", "seed=0..3"]
N_ITEMS = 8
# The Ray test cluster's nodes and every driver share one token of their own (Ray's token authentication), so
# the tests depend on no ~/.ray/auth_token left by other Ray use on the machine.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **RAY_AUTH}


def batch_command(*args) -> list[str]:
    return [sys.executable, "-m", "nodegraph.cli", "batch", str(SD_GRAPH), *map(str, args)]


def batch_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(batch_command(*args), capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.png"))}
