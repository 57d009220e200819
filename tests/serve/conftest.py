"""Fixtures of the server tests: one shared server per session, and servers of a test's own."""

import pytest
from serve_helpers import TOKEN, Server


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
