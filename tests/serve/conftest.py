"""A real server for the tests: `nodegraph serve` in a subprocess on a free loopback port, stopped after."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

ROOT = pathlib.Path(__file__).parents[2]
TEST_GRAPHS = pathlib.Path(__file__).parent / "graphs"
TOKEN = "test-token"
DIGITS = {"model": "builtin:digits", "steps": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: pathlib.Path, *extra: str, token: str | None = TOKEN):
        self.data, self.extra, self.token = data, extra, token
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Server:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-m", "nodegraph.cli", "serve", "--port", str(port), "--data", str(self.data),
                "--graphs", str(TEST_GRAPHS), "--graphs", str(ROOT / "graphs"), *self.extra]
        if self.token:
            args += ["--token", self.token]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                if httpx.get(f"{self.url}/health", headers=self.headers, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start in 60 s")

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self):
        from nodegraph.client import Client

        return Client(self.url, token=self.token)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("serve"), "--max-request-bytes", "200000", "--max-nodes", "50").start()
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture
def start_server(tmp_path):
    """Start (and afterwards stop) servers of this test's own."""
    started: list[Server] = []

    def start(data=None, *extra, token=TOKEN):
        s = Server(data or tmp_path / "data", *extra, token=token).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
