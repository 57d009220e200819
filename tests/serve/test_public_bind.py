"""Binding beyond loopback needs a token, or `--insecure` (which warns); loopback needs neither."""

import os
import subprocess
import sys

import httpx
import pytest
from serve_helpers import ROOT, Server, free_port

from nodegraph.serve.main import is_loopback


def test_loopback_addresses_and_others():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "10.0.0.1", "203.0.113.9",
                                            "example.org", "localhost.example.org", "", "0"))


@pytest.mark.parametrize("host", ["0.0.0.0", "example.org"])  # the others: test_loopback_addresses_and_others
def test_a_public_bind_without_a_token_is_refused_before_anything_starts(tmp_path, host):
    env = {k: v for k, v in os.environ.items() if k != "NODEGRAPH_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "nodegraph.cli", "serve", "--host", host, "--port", str(free_port()),
                           "--data", str(tmp_path / "data")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert f"--host {host} lets other machines reach the server" in done.stderr
    assert "--token" in done.stderr and "--insecure" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_insecure_serves_beyond_loopback_with_a_warning(tmp_path):
    server = Server(tmp_path / "data", "--host", "0.0.0.0", "--insecure", token=None).start()
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        server.stop()
    output = server.proc.stdout.read().decode()
    assert "warning: --insecure: serving 0.0.0.0 without a token" in output


@pytest.mark.parametrize("token", [["--token", "s3cret"], []])
def test_a_public_bind_with_a_token_passes_the_check(tmp_path, token):
    env = {**os.environ, "NODEGRAPH_TOKEN": "from-env"} if not token else \
        {k: v for k, v in os.environ.items() if k != "NODEGRAPH_TOKEN"}
    missing = tmp_path / "missing"  # the next check refuses it: the bind check passed, no server is started
    done = subprocess.run([sys.executable, "-m", "nodegraph.cli", "serve", "--host", "0.0.0.0", *token,
                           "--graphs", str(missing), "--data", str(tmp_path / "data")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"{missing} is not a folder" in done.stderr
    assert "lets other machines" not in done.stderr and "warning" not in done.stderr
