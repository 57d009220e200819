"""Batch test fixtures: one uninterrupted one-process batch that the resume and Ray tests compare their
images with, and the SD graph loaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from batch_helpers import GRID_ARGS, N_ITEMS, RAY_AUTH, SD_GRAPH, batch_cli, pngs  # noqa: E402

# This process is a Ray driver too, and Ray reads its auth settings once, when it is first imported (which
# may be by any test), so they are set here, at collection.
os.environ.update(RAY_AUTH)


@pytest.fixture(scope="session")
def reference_batch(tmp_path_factory) -> Path:
    """`nodegraph batch` over GRID_ARGS, run once, uninterrupted, in one process."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = batch_cli(*GRID_ARGS, "--out", out, "-q")
    assert result.returncode == 0, result.stderr
    assert len(pngs(out)) == N_ITEMS
    return out


@pytest.fixture
def sd_graph():
    from nodegraph import load_graph

    return load_graph(SD_GRAPH)
