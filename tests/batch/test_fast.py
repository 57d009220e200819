"""`nodegraph batch --fast` (run_batch(fast=True)): every item in fast mode, recorded in its PNG and its manifest
row; a fast batch and a default one never resume each other's folder."""

from __future__ import annotations

import pytest
from batch_helpers import DIGITS, batch_cli

from nodegraph.batch import ManifestError, read_rows, run_batch
from nodegraph.batch.grid import GridError
from nodegraph.exec.png_metadata import read_recipe


def test_a_fast_batch_records_fast_mode_and_is_never_resumed_as_a_default_one(sd_graph, tmp_path):
    out = tmp_path / "out"
    result = batch_cli("--set", "model=builtin:digits", "--set", "steps=2", "--set", "prompt=a 3", "--grid",
                       "seed=0,1", "--fast", "--out", out, "-q")
    assert result.returncode == 0, result.stderr
    rows = read_rows(out / "manifest.jsonl")
    assert [r["status"] for r in rows] == ["done", "done"] and all(r["fast"] is True for r in rows)
    assert read_recipe(out / "00001-image.png")["fast"] is True

    with pytest.raises(ManifestError, match="holds another batch"):  # the same grid without --fast
        run_batch(sd_graph, {"seed": [0, 1]}, sets={**DIGITS, "prompt": "a 3"}, out=out)
    again = run_batch(sd_graph, {"seed": [0, 1]}, sets={**DIGITS, "prompt": "a 3"}, out=out, fast=True)
    assert again == rows  # resumed: both items were done, nothing ran


def test_a_default_batch_rows_and_pngs_say_nothing_of_fast_mode(sd_graph, tmp_path):
    [row] = run_batch(sd_graph, {"seed": [0]}, sets={**DIGITS, "prompt": "a 3"}, out=tmp_path / "out")
    assert "fast" not in row and "fast" not in read_recipe(tmp_path / "out" / "00000-image.png")


def test_fast_must_be_a_boolean(sd_graph, tmp_path):
    with pytest.raises(GridError, match="`fast` must be True or False, got 'yes'"):
        run_batch(sd_graph, {"seed": [0]}, sets=DIGITS, out=tmp_path / "out", fast="yes")
    assert not (tmp_path / "out").exists()
