"""`nodegraph batch --weights fp8` (run_batch(weights="fp8")): every item's UNet held as float8, recorded in its
PNG and manifest row; such a batch and a default one never resume each other's folder."""

from __future__ import annotations

import pytest
from batch_helpers import DIGITS, batch_cli

from nodegraph.batch import ManifestError, read_rows, run_batch
from nodegraph.batch.grid import GridError
from nodegraph.exec.png_metadata import read_recipe


def test_an_fp8_batch_records_its_weights_and_is_never_resumed_as_a_default_one(sd_graph, tmp_path):
    out = tmp_path / "out"
    result = batch_cli("--set", "model=builtin:digits", "--set", "steps=1", "--set", "prompt=a 3", "--grid",
                       "seed=0,1", "--weights", "fp8", "--out", out, "-q")
    assert result.returncode == 0, result.stderr
    rows = read_rows(out / "manifest.jsonl")
    assert [r["status"] for r in rows] == ["done", "done"] and all(r["weights"] == "fp8_e4m3fn" for r in rows)
    assert read_recipe(out / "00001-image.png")["weights"] == "fp8_e4m3fn"
    with pytest.raises(ManifestError, match="holds another batch"):  # the same grid without --weights
        run_batch(sd_graph, {"seed": [0, 1]}, sets={**DIGITS, "steps": 1, "prompt": "a 3"}, out=out)


def test_a_batch_loads_the_unet_as_fp8(sd_graph, tmp_path, monkeypatch):
    from nodegraph.models import fp8

    stores, real = [], fp8.install_fp8
    monkeypatch.setattr(fp8, "install_fp8", lambda *a, **k: stores.append(k.get("store")) or real(*a, **k))
    [row] = run_batch(sd_graph, {"seed": [0]}, sets={**DIGITS, "steps": 1}, out=tmp_path / "out", weights="fp8_e5m2")
    assert row["status"] == "done" and row["weights"] == "fp8_e5m2" and "fp8_e5m2" in stores


def test_an_unknown_weights_name_is_refused_before_anything_runs(sd_graph, tmp_path):
    with pytest.raises(GridError, match="`weights` must be one of fp8"):
        run_batch(sd_graph, {"seed": [0]}, sets=DIGITS, out=tmp_path / "out", weights="int4")
    assert not (tmp_path / "out").exists()
