"""Fast mode through the server: a per-run option, shown by the API, recorded in the PNG, and kept apart from
default runs in both of the server's caches (models and node outputs)."""

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import DIGITS, ROOT, TOKEN, wait_for

from nodegraph.client import ServerError

INPUTS = {**DIGITS, "prompt": "a handwritten digit 5", "seed": 21}


def _pixels(client, outputs) -> tuple[np.ndarray, Image.Image]:
    [image] = outputs["image"]
    png = Image.open(io.BytesIO(client.download(image["url"])))
    return np.asarray(png.convert("RGB")), png


def _local_default_pixels() -> np.ndarray:
    """The default bf16 run alone (in this process, never fast), on one thread as the test server runs."""
    import torch

    from nodegraph import run_graph

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        image = run_graph(ROOT / "graphs" / "stable_diffusion.yaml", INPUTS, dtype="bf16")["image"]
    finally:
        torch.set_num_threads(threads)
    return (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_a_default_run_after_a_fast_run_is_bit_equal_to_a_default_run_alone(start_server):
    """In bf16, where the digits model's fast image differs from its default one (in fp32 they are equal)."""
    server = start_server(None, "--dtype", "bf16")
    client = server.client()
    fast_run = client.submit("stable_diffusion", fast=True, **INPUTS)
    fast_outputs = fast_run.result()
    assert client.get(fast_run.id)["fast"] is True
    fast, png = _pixels(client, fast_outputs)
    assert json.loads(png.text["nodegraph"])["fast"] is True
    assert "nodegraph fast mode: on" in png.text["parameters"]

    default_run = client.submit("stable_diffusion", **INPUTS)  # same inputs: every node signature is the same
    default, png = _pixels(client, default_run.result())
    shown = client.get(default_run.id)
    assert shown["fast"] is False
    assert "fast" not in json.loads(png.text["nodegraph"]) and "fast mode" not in png.text["parameters"]
    alone = _local_default_pixels()
    assert np.array_equal(default, alone)
    assert not np.array_equal(fast, alone)  # the fast image is another one: the check above can fail

    again = client.submit("stable_diffusion", fast=True, **INPUTS)  # fast again: its own cached outputs serve it
    assert np.array_equal(_pixels(client, again.result())[0], fast)
    assert client.get(again.id)["cached"] > 0


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_a_fast_value_that_is_not_a_boolean_is_422_at_fast_and_never_queued(client, server, value):
    before = client.health()["runs"]
    response = httpx.post(f"{server.url}/runs", headers=server.headers,
                          json={"graph": "stable_diffusion", "inputs": DIGITS, "fast": value})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["code"], error["path"], error["file"]) == ("invalid_value", "fast", "<request>")
    assert f"got {json.dumps(value)}" in error["message"] and "true or false" in error["message"]
    assert client.health()["runs"] == before
    with pytest.raises(ServerError) as caught:
        client.submit("stable_diffusion", fast="yes", **DIGITS)
    assert caught.value.status == 422 and caught.value.errors[0]["path"] == "fast"


def test_a_requeued_fast_run_stays_fast(client):
    run = client.submit("sleep", fast=True, value=1, seconds=30)
    wait_for(client, run.id, "running")
    run.cancel()
    wait_for(client, run.id, "cancelled")
    requeued = client.request("POST", f"/runs/{run.id}/requeue")
    assert requeued["fast"] is True and requeued["requeued_from"] == run.id
    client.request("DELETE", f"/runs/{requeued['id']}")


def test_run_on_a_server_with_fast_writes_a_fast_png(server, tmp_path):
    from test_remote import cli

    result = cli("--server", server.url, "--token", TOKEN, "graphs/stable_diffusion.yaml", "--fast", "--set",
                 "model=builtin:digits", "--set", "steps=2", "--out", str(tmp_path), "-q")
    assert result.returncode == 0, result.stderr
    assert json.loads(Image.open(tmp_path / "image.png").text["nodegraph"])["fast"] is True


def test_a_data_folder_from_before_fast_mode_opens_with_its_runs_default(tmp_path):
    import sqlite3

    from nodegraph.serve.queue import SCHEMA, RunStore

    old = sqlite3.connect(tmp_path / "runs.sqlite")
    old.executescript("\n".join(line for line in SCHEMA.splitlines() if not line.strip().startswith("fast ")))
    assert "fast" not in {row[1] for row in old.execute("PRAGMA table_info(runs)")}
    old.execute("INSERT INTO runs(id, status, priority, graph, digest, inputs, created) "
                "VALUES ('r1', 'finished', 0, 'g', 'd', '{}', 0)")
    old.commit()
    old.close()
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.get("r1")["fast"] is False
    store.add("r2", graph="g", digest="d", inputs={}, fast=True)
    assert store.get("r2")["fast"] is True
    store.close()
