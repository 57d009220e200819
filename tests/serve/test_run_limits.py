"""Per-run limits, checked before a run is queued (pixels, pixels × steps, batch) and while it runs (wall time)."""

import subprocess
import sys
import time

import httpx
import pytest
from serve_helpers import ROOT, wait_for

from nodegraph.client import ServerError

SOLID = ("nodegraph: 1\nnodes:\n  i: {{type: SolidImage, width: {w}, height: {h}, batch: {b}}}\n"
         "outputs: {{image: $i.image}}\n")


def refused(client, *args, **kwargs) -> list[dict]:
    before = client.health()["runs"]
    with pytest.raises(ServerError) as caught:
        client.submit(*args, **kwargs)
    assert caught.value.status == 422, caught.value
    assert client.health()["runs"] == before  # nothing queued
    return caught.value.errors


def test_memory_hungry_documents_are_refused_before_queueing(client):
    for size in ((2048, 2048), (1456, 1448), (8, 8192 * 64)):
        errors = refused(client, document=SOLID.format(w=size[0], h=size[1], b=1))
        assert [e["code"] for e in errors] == ["run_too_large"]
        assert f"{size[0] * size[1]:,} pixels" in errors[0]["message"]
    errors = refused(client, "stable_diffusion", model="builtin:digits", height=8192, width=8192, batch_size=64)
    assert {(e["code"], e["path"]) for e in errors} == {("run_too_large", "inputs.width/inputs.height"),
                                                        ("run_too_large", "inputs.batch_size")}
    by_path = {e["path"]: e for e in errors}
    assert "8192×8192 = 67,108,864 pixels" in by_path["inputs.width/inputs.height"]["message"]
    assert "--max-pixels" in by_path["inputs.width/inputs.height"]["hint"]
    assert "a batch of 64" in by_path["inputs.batch_size"]["message"]
    errors = refused(client, document=SOLID.format(w=100000, h=100000, b=1))
    # the server's limit, or a bound of the node's own (spec/limits.py) if it has one: refused either way
    assert {e["code"] for e in errors} <= {"run_too_large", "out_of_range"} and errors
    errors = refused(client, document=SOLID.format(w=64, h=64, b=5000))
    assert [(e["code"], e["path"]) for e in errors] == [("run_too_large", "nodes.i.batch")]


@pytest.mark.parametrize("size,steps", [(1448, 76), (1024, 151), (512, 601), (768, 267)])
def test_pixels_times_steps_above_the_limit_is_refused(client, size, steps):
    errors = refused(client, "stable_diffusion", model="builtin:digits", height=size, width=size, steps=steps)
    assert [e["code"] for e in errors] == ["run_too_large"]
    assert f"{size * size:,} pixels × {steps} steps" in errors[0]["message"]
    assert "--max-pixel-steps" in errors[0]["hint"] and errors[0]["path"] == "inputs.width/inputs.height, inputs.steps"


def test_runs_within_the_limits_are_queued(client):
    blocker = client.submit("sleep", seconds=120, value=time.time())  # holds the worker: the big runs stay queued
    wait_for(client, blocker.id, "running")
    for height, width, steps in ((1024, 1024, 150), (1448, 1448, 74), (2048, 1024, 64)):
        handle = client.submit("stable_diffusion", model="builtin:digits", height=height, width=width, steps=steps)
        assert handle.cancel()["status"] == "cancelled"  # accepted; not worth running here
    blocker.cancel()
    assert client.submit(document=SOLID.format(w=64, h=32, b=16)).result()["image"]


def test_operator_options_set_the_limits_and_the_wall_time(start_server):
    server = start_server(None, "--max-pixels", "4096", "--max-pixel-steps", "40000", "--max-batch", "2",
                          "--max-run-seconds", "3")  # room for the quick runs below on a loaded machine
    with server.client() as client:
        assert client.submit(document=SOLID.format(w=64, h=64, b=2)).result()["image"]
        assert refused(client, document=SOLID.format(w=65, h=64, b=1))[0]["code"] == "run_too_large"
        assert "at most 2" in refused(client, document=SOLID.format(w=8, h=8, b=3))[0]["message"]
        assert refused(client, "stable_diffusion", model="builtin:digits", height=64, width=64, steps=10)
        slow = client.submit("sleep", seconds=60, value=time.time())
        run = wait_for(client, slow.id, "failed", timeout=60)
        assert "longer than this server's limit of 3 s" in run["error"] and "--max-run-seconds" in run["error"]
        assert [e["type"] for e in slow.events()][-1] == "failed"
        assert client.health()["status"] == "ok"


@pytest.mark.parametrize("option,value", [("--max-batch", "0"), ("--max-pixels", "-5"), ("--max-pixel-steps", "ten"),
                                          ("--max-run-seconds", "-1"), ("--lookup-seconds", "nan")])
def test_bad_limit_options_are_refused_with_exit_2(tmp_path, option, value):
    done = subprocess.run([sys.executable, "-m", "nodegraph.cli", "serve", "--data", str(tmp_path), option, value],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and option in done.stderr and "Traceback" not in done.stderr


def test_health_still_answers(server):
    assert httpx.get(f"{server.url}/health", headers=server.headers).status_code == 200
