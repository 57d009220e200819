"""Every route of `nodegraph serve`, and its errors, through a real server and the real client."""

import base64
import io
import json
import time

import httpx
import pytest
from serve_helpers import DIGITS, ROOT, wait_for

from nodegraph.client import RunFailed, ServerError


def test_every_route_needs_the_token(server):
    routes = [("GET", "/health"), ("GET", "/runs"), ("GET", "/runs/x"), ("DELETE", "/runs/x"), ("GET", "/nodes"),
              ("GET", "/graphs"), ("POST", "/free"), ("POST", "/runs"), ("GET", "/runs/x/events"),
              ("GET", "/outputs/x/image.png"), ("GET", "/openapi.json"), ("GET", "/docs")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = httpx.request(method, server.url + path, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.json()["errors"][0]["code"] == "unauthorized"
    assert httpx.get(f"{server.url}/health?access_token={server.token}").status_code == 200
    assert httpx.get(f"{server.url}/openapi.json", headers=server.headers).json()["paths"]["/runs"]


def test_a_run_by_name_gives_the_executors_image_with_its_metadata(client):
    from PIL import Image

    from nodegraph import load_graph

    inputs = {**DIGITS, "prompt": "a handwritten digit 4", "seed": 11}
    outputs = client.run("stable_diffusion", **inputs)
    [image] = outputs["image"]
    png = Image.open(io.BytesIO(client.download(image["url"])))
    recipe = json.loads(png.text["nodegraph"])
    assert recipe["inputs"]["prompt"] == "a handwritten digit 4" and recipe["inputs"]["seed"] == 11
    assert "a handwritten digit 4" in png.text["parameters"]
    import numpy as np

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the test server runs: the same float sums, so the same pixels
    try:
        local = load_graph(ROOT / "graphs" / "stable_diffusion.yaml").run(**inputs)["image"]
    finally:
        torch.set_num_threads(threads)
    expected = (local[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(png.convert("RGB")), expected)


def test_an_invalid_document_is_422_with_located_errors_and_never_queued(client):
    before = client.health()["runs"]
    document = "nodegraph: 1\nnodes:\n  a: {type: Ad, a: 1, b: 2}\n  b: {type: Add, a: $a.value, b: ten}\n" \
               "outputs: {x: $b.value}\n"
    with pytest.raises(ServerError) as caught:
        client.submit(document=document)
    assert caught.value.status == 422
    errors = {(e["code"], e["file"], e["line"], e["col"]) for e in caught.value.errors}
    assert ("unknown_node_type", "submitted.yaml", 3, 13) in errors
    assert any(code == "invalid_value" and line == 4 for code, _, line, _ in errors)
    assert "did you mean `Add`" in str(caught.value)
    assert client.health()["runs"] == before


def test_bad_input_values_are_422_located_in_the_graph_file_without_server_paths(client, server):
    with pytest.raises(ServerError) as caught:
        client.submit("stable_diffusion", model="builtin:digits", steps=0, stepz=3)
    assert caught.value.status == 422
    by_code = {e["code"]: e for e in caught.value.errors}
    assert by_code["out_of_range"]["file"] == "stable_diffusion.yaml" and by_code["out_of_range"]["line"]
    assert "did you mean `steps`" in by_code["unknown_graph_input"]["hint"]
    assert str(server.data) not in json.dumps(caught.value.errors)


@pytest.mark.parametrize("method,path", [("GET", "/runs/nope"), ("DELETE", "/runs/nope"),
                                         ("GET", "/runs/nope/events"), ("POST", "/runs/nope/requeue"),
                                         ("GET", "/outputs/nope/image.png"), ("GET", "/outputs/..%2F..%2Fetc/passwd")])
def test_unknown_runs_and_files_are_404(server, method, path):
    response = httpx.request(method, server.url + path, headers=server.headers)
    assert response.status_code == 404
    assert response.json()["errors"]


def test_unknown_graph_name_is_404_and_bad_body_is_400(client, server):
    with pytest.raises(ServerError) as caught:
        client.submit("no_such_graph")
    assert caught.value.status == 404 and "stable_diffusion" in caught.value.errors[0]["hint"]
    response = httpx.post(f"{server.url}/runs", headers=server.headers, json={"graph": "sleep", "priority": "high"})
    assert response.status_code == 400 and response.json()["errors"][0]["path"] == "body.priority"


def test_models_files_and_includes_outside_the_allowed_folders_are_refused(client, tmp_path):
    for model in ("/etc", "../models/x", str(tmp_path)):
        with pytest.raises(ServerError) as caught:
            client.submit("stable_diffusion", model=model)
        assert caught.value.status == 422 and caught.value.errors[0]["code"] == "model_not_allowed", model
    image = "nodegraph: 1\nnodes:\n  i: {type: LoadImage, path: /etc/hostname}\noutputs: {image: $i.image}\n"
    with pytest.raises(ServerError) as caught:
        client.submit(document=image)
    assert [e["code"] for e in caught.value.errors] == ["path_not_allowed"]
    assert caught.value.errors[0]["path"] == "nodes.i.path"
    computed = "nodegraph: 1\nnodes:\n  p: {type: String, value: secret.png}\n" \
               "  i: {type: LoadImage, path: $p.value}\noutputs: {image: $i.image}\n"
    with pytest.raises(ServerError) as caught:
        client.submit(document=computed)
    assert [(e["code"], e["path"]) for e in caught.value.errors] == [("computed_location", "nodes.i.path")]
    with pytest.raises(ServerError) as caught:
        client.submit("stable_diffusion", model="builtin:digits", vae="/etc", lora="relative.safetensors")
    assert sorted(e["code"] for e in caught.value.errors) == ["model_not_allowed", "path_not_allowed"]
    include = "nodegraph: 1\nnodes:\n  s: {type: ../../tests/serve/graphs/sleep.yaml}\noutputs: {v: $s.value}\n"
    with pytest.raises(ServerError) as caught:
        client.submit(document=include)
    assert "include_outside" in [e["code"] for e in caught.value.errors]
    bundle = {"format": 1, "main": "g.yaml", "files": {"g.yaml": "nodegraph: 1", "../escape.yaml": "x: 1"}}
    with pytest.raises(ServerError) as caught:
        client.submit(document=bundle)
    assert caught.value.errors[0]["code"] == "bad_bundle"


def test_request_and_graph_size_limits(client, server):
    response = httpx.post(f"{server.url}/runs", headers=server.headers,
                          json={"document": "nodegraph: 1\n# " + "x" * 300_000})
    assert response.status_code == 413 and response.json()["errors"][0]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit holds while the body arrives
        yield b'{"document": "nodegraph: 1\\n# '
        for _ in range(30):
            yield b"x" * 10_000
        yield b'"}'

    response = httpx.post(f"{server.url}/runs", headers={**server.headers, "content-type": "application/json"},
                          content=chunks())
    assert response.status_code == 413
    nodes = "".join(f"  n{i}: {{type: Add, a: {i}, b: 1}}\n" for i in range(60))
    with pytest.raises(ServerError) as caught:
        client.submit(document=f"nodegraph: 1\nnodes:\n{nodes}outputs: {{x: $n59.value}}\n")
    assert caught.value.status == 422 and caught.value.errors[0]["code"] == "graph_too_large"


def test_cancel_a_queued_and_a_running_run_and_only_that_run(client):
    running = client.submit("sleep", seconds=120, value=time.time())
    wait_for(client, running.id, "running")
    queued = client.submit("sleep", seconds=0, value=time.time())
    after = client.submit("sleep", seconds=0, value=time.time() + 1)
    assert client.get(queued.id)["status"] == "queued"
    assert queued.cancel()["status"] == "cancelled"
    started = time.monotonic()
    running.cancel()
    wait_for(client, running.id, "cancelled", timeout=60)
    assert time.monotonic() - started < 30  # at the node's next check, not after its 120 s, however loaded the machine
    assert after.result()["value"] == {"value": pytest.approx(client.get(after.id)["inputs"]["value"])}
    with pytest.raises(RunFailed):
        queued.result()
    assert [e["type"] for e in queued.events()] == ["queued", "cancelled"]
    assert [e["type"] for e in running.events()][-1] == "cancelled"
    with pytest.raises(ServerError) as caught:
        running.cancel()
    assert caught.value.status == 409


def test_live_and_late_clients_get_every_event_progress_and_previews(client):
    from PIL import Image

    # the blocker holds the queue until the live client is subscribed (a fixed sleep raced a loaded machine)
    blocker = client.submit("sleep", seconds=120, value=time.time())
    handle = client.submit("stable_diffusion", **DIGITS, prompt="a handwritten digit 1", seed=21, preview=True)
    stream = handle.events()
    live = [next(stream)]  # "queued", replayed: the stream is open and the run has not started
    blocker.cancel()
    live += list(stream)
    late = list(handle.events())  # after the end: all of it, replayed
    for events in (live, late):
        kinds = [e["type"] for e in events]
        assert kinds[:2] == ["queued", "started"] and kinds[-1] == "finished"
        assert [(e["node"], e["index"], e["total"]) for e in events if e["type"] == "progress"] == [
            ("denoise", 1, 3), ("denoise", 2, 3), ("denoise", 3, 3)]
        finished = [e["node"] for e in events if e["type"] == "node_finished"]
        assert finished[-1] == "decode" and "denoise" in finished
        assert [e["seq"] for e in events] == list(range(len(events)))
    assert ["preview" in e for e in live if e["type"] == "progress"] == [True, True, True]
    assert ["preview" in e for e in late if e["type"] == "progress"] == [False, False, True]  # only the last kept
    last = [e for e in live if e["type"] == "progress"][-1]["preview"]
    assert last.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(last.split(",", 1)[1]))).size[0] >= 64


def test_history_pages_newest_first_and_filters_by_status(client):
    ids = [client.submit("sleep", value=time.time() + i).id for i in range(3)]
    for run_id in ids:
        wait_for(client, run_id, "finished")
    first = client.runs(limit=2)
    second = client.runs(limit=2, cursor=first["next"])
    assert [r["id"] for r in first["runs"]] == ids[::-1][:2]
    assert second["runs"][0]["id"] == ids[0]
    finished = client.runs(status="finished", limit=500)["runs"]
    assert {r["status"] for r in finished} == {"finished"} and set(ids) <= {r["id"] for r in finished}
    response = httpx.get(f"{client.url}/runs?status=done", headers=client.http.headers)
    assert response.status_code == 400


def test_nodes_and_graphs_describe_what_a_form_needs(client):
    nodes = {n["name"]: n for n in client.nodes()}
    steps = {p["name"]: p for p in nodes["SchedulerSetTimesteps"]["inputs"]}["steps"]
    assert steps["type"] == "int" and steps["constraints"]
    assert nodes["LoadImage"]["pure"] is False and nodes["Add"]["pure"] is True
    graphs = {g["name"]: g for g in client.graphs()}
    assert graphs["stable_diffusion"]["inputs"]["steps"]["min"] == 1
    assert graphs["sleep"]["outputs"] == ["value"]


def test_free_drops_models_and_cached_outputs(client):
    inputs = {**DIGITS, "prompt": "a handwritten digit 9"}
    client.run("stable_diffusion", **inputs)
    assert client.health()["models_loaded"] > 0 and client.health()["node_cache_entries"] > 0
    freed = client.free()["freed"]
    assert freed["models"] > 0 and freed["node_outputs"] > 0
    assert client.health()["models_loaded"] == 0 and client.health()["node_cache_entries"] == 0
    handle = client.submit("stable_diffusion", **inputs)
    handle.result()
    run = handle.status()
    assert run["cached"] == 0 and run["executed"] >= 12
