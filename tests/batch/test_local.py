"""One-process batches on builtin:digits: files and manifest, models loaded once, resume after a kill, failures."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import PIL.Image
import pytest
from batch_helpers import DIGITS, ENV, GRID_ARGS, N_ITEMS, SD_GRAPH, batch_cli, batch_command, pngs

from nodegraph.batch import ManifestError, read_rows, run_batch


def test_batch_writes_one_png_and_one_manifest_row_per_item_loading_models_once(sd_graph, tmp_path, monkeypatch):
    import nodegraph.models.loading as loading
    from nodegraph import COMPONENTS, run_graph
    from nodegraph.exec.png_metadata import read_recipe
    from nodegraph.exec.writers import to_pil_images

    COMPONENTS.clear()
    loads = []
    real = loading.load_component
    monkeypatch.setattr(loading, "load_component", lambda *a, **k: loads.append(a[1]) or real(*a, **k))
    rows = run_batch(sd_graph, {"seed": [0, 1, 2]}, sets={**DIGITS, "prompt": "a 3"}, out=tmp_path / "out")

    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "00000-image.png", "00001-image.png", "00002-image.png", "manifest.jsonl"]
    assert rows == read_rows(tmp_path / "out" / "manifest.jsonl")
    assert [r["item"] for r in rows] == [0, 1, 2] and {r["status"] for r in rows} == {"done"}
    assert [r["inputs"]["seed"] for r in rows] == [0, 1, 2] and rows[1]["outputs"] == {"image": ["00001-image.png"]}
    assert all(r["worker"].startswith("local:") and r["seconds"] > 0 and r["attempts"] == 1 for r in rows)
    for component in ("unet", "vae", "text_encoder", "tokenizer"):
        assert loads.count(component) == 1, loads  # once for the whole batch, not once per item

    # Each PNG is what a single run with the item's inputs makes, and its metadata re-runs that item.
    png = tmp_path / "out" / "00002-image.png"
    assert read_recipe(png)["inputs"] == rows[2]["inputs"]
    single = to_pil_images(run_graph(SD_GRAPH, rows[2]["inputs"])["image"], "image")[0]
    with PIL.Image.open(png) as img:
        assert np.array_equal(np.asarray(img), np.asarray(single))
        with PIL.Image.open(tmp_path / "out" / "00001-image.png") as other:
            assert not np.array_equal(np.asarray(img), np.asarray(other))  # the seed reaches the image

    # The same call again: every item is already done, nothing runs, the manifest is unchanged.
    before = (tmp_path / "out" / "manifest.jsonl").read_bytes()
    assert run_batch(sd_graph, {"seed": [0, 1, 2]}, sets={**DIGITS, "prompt": "a 3"}, out=tmp_path / "out") == rows
    assert (tmp_path / "out" / "manifest.jsonl").read_bytes() == before


def test_a_folder_holding_another_batch_is_refused(sd_graph, tmp_path):
    run_batch(sd_graph, {"seed": [0]}, sets={**DIGITS, "prompt": "a 3"}, out=tmp_path / "out")
    with pytest.raises(ManifestError, match="holds another batch: its item 0"):
        run_batch(sd_graph, {"seed": [0]}, sets={**DIGITS, "prompt": "a 5"}, out=tmp_path / "out")
    assert len(read_rows(tmp_path / "out" / "manifest.jsonl")) == 1


def test_two_batches_cannot_write_to_one_folder_at_once(sd_graph, tmp_path):
    from nodegraph.batch.manifest import Manifest

    with Manifest(tmp_path / "out"):  # as a batch running in another process holds it
        with pytest.raises(ManifestError, match="another `nodegraph batch` is writing to"):
            run_batch(sd_graph, {"seed": [0]}, sets=DIGITS, out=tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.png"))


def test_killed_batch_resumes_without_missing_or_duplicated_items_and_same_pngs(reference_batch, tmp_path):
    out = tmp_path / "out"
    manifest = out / "manifest.jsonl"
    process = subprocess.Popen(batch_command(*GRID_ARGS, "--out", out, "-q"), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(read_rows(manifest)) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL  # killed, not finished
    finished_before = len(read_rows(manifest))
    assert 3 <= finished_before < N_ITEMS

    again = batch_cli(*GRID_ARGS, "--out", out, "-q")
    assert again.returncode == 0, again.stderr
    assert f"{N_ITEMS - finished_before} done, 0 failed, {finished_before} skipped" in again.stdout
    rows = read_rows(manifest)
    assert sorted(r["item"] for r in rows) == list(range(N_ITEMS))  # each item exactly once
    assert {r["status"] for r in rows} == {"done"} and len({r["worker"] for r in rows}) == 2  # two processes
    assert pngs(out) == pngs(reference_batch)  # same names, same bytes as the uninterrupted batch
    assert not list(out.glob(".*.part"))


def test_a_failing_item_is_recorded_and_the_rest_finish(tmp_path):
    missing = tmp_path / "no-such-model"
    result = batch_cli("--set", "steps=2", "--zip", "--grid", f"model=builtin:digits,{missing},builtin:digits",
                       "--grid", "seed=0..2", "--out", tmp_path / "out", "-q")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "item 1 failed:" in result.stderr and str(missing) in result.stderr
    assert result.stdout.startswith("2 done, 1 failed, 0 skipped; 2 files in") and "images/s" in result.stdout
    rows = {r["item"]: r for r in read_rows(tmp_path / "out" / "manifest.jsonl")}
    assert [rows[i]["status"] for i in range(3)] == ["done", "failed", "done"]
    assert str(missing) in rows[1]["error"] and rows[1]["outputs"] == {}
    assert sorted(pngs(tmp_path / "out")) == ["00000-image.png", "00002-image.png"]
    assert json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[1])["item"] == 1


def test_outputs_that_are_not_files_are_summarised_and_a_raising_node_fails_only_its_item(tmp_path):
    from nodegraph import loads_graph

    graph = loads_graph("nodegraph: 1\ninputs:\n  a: {type: float}\n  b: {type: float, default: 1.0}\n"
                        "nodes:\n  div: {type: Divide, a: $inputs.a, b: $inputs.b}\noutputs:\n  q: $div.value\n")
    rows = run_batch(graph, {"a": [1.0, 6.0], "b": [0.0, 2.0]}, out=tmp_path / "out")
    assert [(r["inputs"]["a"], r["inputs"]["b"], r["status"]) for r in rows] == [
        (1.0, 0.0, "failed"), (1.0, 2.0, "done"), (6.0, 0.0, "failed"), (6.0, 2.0, "done")]
    assert rows[1]["outputs"] == {"q": 0.5} and rows[3]["outputs"] == {"q": 3.0}
    assert "division by zero" in rows[0]["error"] and "`div`" in rows[0]["error"]
