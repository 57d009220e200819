"""Batches on a real local Ray cluster (a head node and a worker node on 127.0.0.1, one CPU each, started here
and stopped after): items spread over two actors, an actor killed mid-item, images equal to the one-process
batch's."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from batch_helpers import DIGITS, ENV, GRID_ARGS, N_ITEMS, SD_GRAPH, batch_cli, pngs

from nodegraph.batch import ItemStarted, read_rows, run_batch

RAY = str(Path(sys.executable).parent / "ray")
STARTUP_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(*args, log: Path) -> subprocess.Popen:
    """`ray start --block`: the node lives as long as this process, and SIGTERM stops everything it started."""
    return subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             "--object-store-memory=80000000", "--disable-usage-stats", *args],
                            env=ENV, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _wait_for_port(address: str, process: subprocess.Popen, log: Path) -> None:
    host, port = address.split(":")
    deadline = time.monotonic() + STARTUP_S
    while True:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.2)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The address of a two-node cluster (head + worker), one CPU each; this process stays connected."""
    import ray

    folder = tmp_path_factory.mktemp("ray")
    # Ray's AF_UNIX sockets live under --temp-dir and their paths must stay under 108 bytes: a short folder of
    # its own, since tmp_path_factory's is longer under pytest-xdist (.../popen-gw0/...)
    sockets = tempfile.mkdtemp(prefix="ray-")
    address = f"127.0.0.1:{_free_port()}"
    nodes = [_node("--head", f"--port={address.split(':')[1]}", "--include-dashboard=false",
                   f"--temp-dir={sockets}", log=folder / "head.log")]
    try:
        _wait_for_port(address, nodes[0], folder / "head.log")
        nodes.append(_node(f"--address={address}", log=folder / "worker.log"))
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        deadline = time.monotonic() + STARTUP_S
        while ray.cluster_resources().get("CPU", 0) < 2:
            assert time.monotonic() < deadline and nodes[1].poll() is None, (folder / "worker.log").read_text()
            time.sleep(0.2)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(sockets, ignore_errors=True)


def test_killed_actors_items_run_elsewhere_at_most_retries_times_each_item_once(ray_cluster, reference_batch,
                                                                               tmp_path):
    times = {2: 1, 5: 2}  # item 2's worker is killed once (it runs again elsewhere), item 5's on both attempts
    kills: dict[int, list[str]] = {2: [], 5: []}

    def kill_actor(event):
        if isinstance(event, ItemStarted) and event.index in kills and len(kills[event.index]) < times[event.index]:
            kills[event.index].append(event.worker)
            os.kill(int(event.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    grid = {"prompt": ["a 7", "the number four"], "seed": range(4)}
    rows = run_batch(SD_GRAPH, grid, sets=DIGITS, out=tmp_path / "out", ray=ray_cluster, workers=2, retries=1,
                     hooks=[kill_actor])

    assert len(kills[2]) == 1 and len(kills[5]) == 2
    manifest = read_rows(tmp_path / "out" / "manifest.jsonl")
    assert sorted(r["item"] for r in manifest) == list(range(N_ITEMS))  # each item exactly once
    assert rows == sorted(manifest, key=lambda r: r["item"])
    by_item = {r["item"]: r for r in rows}
    assert by_item[2]["status"] == "done" and by_item[2]["attempts"] == 2
    assert by_item[2]["worker"] != kills[2][0]
    assert by_item[5]["status"] == "failed" and by_item[5]["attempts"] == 2
    assert "its Ray worker died 2 times" in by_item[5]["error"] and kills[5][0] != kills[5][1]  # two actors
    others = [r for r in rows if r["item"] not in kills]
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in others)
    expected = {name: data for name, data in pngs(reference_batch).items() if not name.startswith("00005")}
    assert pngs(tmp_path / "out") == expected  # the one-process batch's bytes, metadata included


def test_command_line_batch_on_a_cluster_matches_the_one_process_batch(ray_cluster, reference_batch, tmp_path):
    result = batch_cli(*GRID_ARGS, "--ray", ray_cluster, "--workers", "2", "--out", tmp_path / "out", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{N_ITEMS} done, 0 failed, 0 skipped")
    rows = read_rows(tmp_path / "out" / "manifest.jsonl")
    assert sorted(r["item"] for r in rows) == list(range(N_ITEMS))
    # Two actors (which one takes how many items depends on when each is up: scheduling is dynamic).
    assert len({r["worker"] for r in rows}) <= 2 and all(r["worker"].startswith("ray:") for r in rows)
    assert pngs(tmp_path / "out") == pngs(reference_batch)
