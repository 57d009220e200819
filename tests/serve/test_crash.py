"""SIGKILL mid-run, restart on the same --data: every accepted run is accounted for."""

from serve_helpers import wait_for

from nodegraph.client import RunHandle


def test_a_killed_server_keeps_its_queue_fails_the_interrupted_run_and_can_requeue_it(start_server, tmp_path):
    data = tmp_path / "data"
    first = start_server(data)
    with first.client() as client:
        interrupted = client.submit("sleep", seconds=60, value=1)
        wait_for(client, interrupted.id, "running")
        low = client.submit("sleep", seconds=0, value=2)
        high = client.submit("sleep", seconds=0, value=3, priority=5)
    # what a kill during an output write leaves behind: the writer's temporary file, never the output itself
    partial = data / "outputs" / interrupted.id / f".image.png.{interrupted.id}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x89PNG half")
    first.kill()

    second = start_server(data)
    with second.client() as client:
        runs = {r["id"]: r for r in client.runs(limit=10)["runs"]}
        assert set(runs) == {interrupted.id, low.id, high.id}
        wait_for(client, low.id, "finished")
        done = {run_id: client.get(run_id) for run_id in runs}
        assert done[interrupted.id]["status"] == "failed" and done[interrupted.id]["error"] == "server stopped"
        assert done[high.id]["status"] == "finished" and done[high.id]["started"] < done[low.id]["started"]
        assert done[low.id]["outputs"]["value"] == {"value": 2.0}
        assert not partial.exists()
        assert [e["type"] for e in RunHandle(client, interrupted.id).events()] == ["failed"]
        again = client.request("POST", f"/runs/{interrupted.id}/requeue")
        assert again["requeued_from"] == interrupted.id and again["inputs"]["seconds"] == 60
        wait_for(client, again["id"], "running")  # it runs again (and is cancelled here: a minute is long)
        RunHandle(client, again["id"]).cancel()
        wait_for(client, again["id"], "cancelled")
        assert client.get(interrupted.id)["status"] == "failed"  # history stays as it happened
