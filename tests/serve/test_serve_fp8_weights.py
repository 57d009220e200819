"""`weights: fp8` through the server: a per-run option checked before queueing, shown by the API, recorded in
the PNG, and kept apart from default runs in the server's caches."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from serve_helpers import DIGITS

from nodegraph.client import RunHandle, ServerError

INPUTS = {**DIGITS, "prompt": "a 6", "seed": 61}


def _submit(client, **settings) -> RunHandle:
    body = {"graph": "stable_diffusion", "inputs": INPUTS, **settings}
    return RunHandle(client, client.request("POST", "/runs", json=body)["id"])


def _png(client, outputs) -> Image.Image:
    [image] = outputs["image"]
    return Image.open(io.BytesIO(client.download(image["url"])))


def test_an_fp8_run_is_shown_recorded_and_kept_apart_from_a_default_run(client):
    fp8_run = _submit(client, weights="fp8")
    fp8_png = _png(client, fp8_run.result())
    assert client.get(fp8_run.id)["weights"] == "fp8_e4m3fn"
    assert json.loads(fp8_png.text["nodegraph"])["weights"] == "fp8_e4m3fn"
    default_run = _submit(client)  # same inputs: only the run's weights differ
    default_png = _png(client, default_run.result())
    assert client.get(default_run.id)["weights"] is None
    assert "weights" not in json.loads(default_png.text["nodegraph"])
    assert not np.array_equal(np.asarray(fp8_png), np.asarray(default_png))  # not served from the fp8 run's cache


@pytest.mark.parametrize("weights", ["int4", 8, True])
def test_an_unknown_weights_value_is_a_422_naming_it_and_nothing_is_queued(client, weights):
    before = client.request("GET", "/runs")["runs"]
    with pytest.raises(ServerError) as refused:
        _submit(client, weights=weights)
    assert refused.value.status == 422 and "weights" in str(refused.value)
    assert client.request("GET", "/runs")["runs"] == before
