"""No answer of the server shows its own paths (nodegraph's files, the hub cache, the data and documents
folders) or a Python object's address; a bundle holds at most the readers' limit of files."""

import json
import os
import pathlib
import sys

import httpx
import pytest
from serve_helpers import ROOT, Server, wait_for

from nodegraph.client import ServerError
from nodegraph.serve.redact import Redactor


def server_paths(server) -> list[str]:
    return [str(ROOT / "nodegraph"), str(server.data), sys.prefix, os.path.expanduser("~"), ".cache/huggingface",
            "object at 0x", "Traceback", ".py:"]


@pytest.fixture(scope="module")
def offline_server(tmp_path_factory):
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # a hub id fails at once, from the cache, as it does offline
    try:
        running = Server(tmp_path_factory.mktemp("offline")).start()
    finally:
        if before is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = before
    yield running
    running.stop()


def test_a_failed_runs_error_names_no_server_path(offline_server):
    with offline_server.client() as client:
        handle = client.submit("stable_diffusion", model="nobody/nothing-here", steps=1)
        run = wait_for(client, handle.id, "failed", timeout=120)
        failed = [e for e in handle.events() if e["type"] == "failed"][0]
        raw = httpx.get(f"{offline_server.url}/runs/{handle.id}/events", headers=offline_server.headers).text
    for text in (run["error"], failed["error"], raw):
        assert "`nobody/nothing-here` is not a local folder" in text and "<hub cache>" in text
        assert not [p for p in server_paths(offline_server) if p in text], text


def test_bundles_over_the_file_limit_and_computed_locations_are_refused_without_internals(offline_server):
    with offline_server.client() as client:
        stored = set((offline_server.data / "documents").iterdir())
        for count in (257, 20_000):
            files = {f"f{i}.yaml": "nodegraph: 1\n" for i in range(count)}
            with pytest.raises(ServerError) as caught:
                client.submit(document={"format": 1, "main": "f0.yaml", "files": files})
            assert caught.value.status == 422 and caught.value.errors[0]["code"] == "bad_bundle"
            assert f"the bundle holds {count:,} files, over the limit of 256" in str(caught.value)
            assert set((offline_server.data / "documents").iterdir()) == stored  # nothing written
        computed = ("nodegraph: 1\nnodes:\n  p: {type: String, value: secret.png}\n"
                    "  i: {type: LoadImage, path: $p.value}\noutputs: {image: $i.image}\n")
        with pytest.raises(ServerError) as caught:
            client.submit(document=computed)
        assert caught.value.errors[0]["code"] == "computed_location"
        assert caught.value.errors[0]["message"].startswith("`path`: is computed by another node")
        text = json.dumps(caught.value.errors) + str(caught.value)
        assert not [p for p in server_paths(offline_server) if p in text]
        assert client.health()["status"] == "ok"


def test_the_redactor_hides_internal_folders_and_keeps_the_ones_clients_name(tmp_path):
    data, graphs = tmp_path / "data", tmp_path / "graphs"
    documents = data / "documents"
    redactor = Redactor(data, documents, [graphs, data / "inputs"])
    digest = "ab" * 32
    package = pathlib.Path(__import__("nodegraph").__file__).parent
    text = (f"failed: KeyError (at {package}/models/sources.py:116 in _list_files) reading {documents}/{digest}/"
            f"step.yaml, {data}/runs.sqlite, {data}/inputs/a.png, {graphs}/g.yaml, {data}x/other")
    assert redactor.text(text) == (f"failed: KeyError reading step.yaml, <data>/runs.sqlite, {data}/inputs/a.png, "
                                   f"{graphs}/g.yaml, {data}x/other")
    trace = "internal error: Traceback (most recent call last):\n  File \"/x/y.py\", line 3, in f\nValueError: bad\n"
    assert redactor.text(trace) == "internal error: ValueError: bad"
    assert redactor.text(None) is None
    assert redactor.text("cannot identify image file <_io.BytesIO object at 0x7fe2e1c0>") == \
        "cannot identify image file"


def test_an_upload_that_is_no_image_is_refused_without_an_object_address(server):
    response = httpx.post(f"{server.url}/inputs", headers=server.headers, content=b"\x89PNG\r\n\x1a\n" + bytes(50))
    assert response.status_code == 422 and response.json()["errors"][0]["code"] == "not_an_image"
    assert "object at 0x" not in response.text and "not a readable image" in response.text
