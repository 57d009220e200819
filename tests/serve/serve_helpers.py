"""Helpers of the server tests: `nodegraph serve` in a subprocess on a free loopback port, stopped after.

In a module of its own (not conftest) so that `from serve_helpers import ...` cannot pick another folder's
conftest when the whole suite runs.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import httpx

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


def wait_for(client, run_id: str, status: str, timeout: float = 30) -> dict:
    """Poll a run until it has `status`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(run_id)
        if run["status"] == status:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {run['status']}, not {status}")
