"""A server in the test's own process (uvicorn in a thread), for tests that must reach inside it: an injected
slow lookup, a model call the test holds. Started on a free loopback port; stopped on leaving."""

from __future__ import annotations

import contextlib
import threading

import httpx
from serve_helpers import ROOT, TEST_GRAPHS, TOKEN, free_port


@contextlib.contextmanager
def serving(data, **options):
    """Yields (url, headers, service)."""
    import uvicorn

    from nodegraph.serve.app import create_app
    from nodegraph.serve.service import ServeConfig

    config = ServeConfig(data=data, graphs=[TEST_GRAPHS, ROOT / "graphs"], token=TOKEN, **options)
    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    try:
        started = threading.Event()
        while not started.wait(0.02):  # uvicorn sets `started` once it listens (and the lifespan ran)
            if server.started:
                started.set()
            if not thread.is_alive():
                raise RuntimeError("the server thread ended before it started")
        service = getattr(app, "app", app).state.service  # create_app may wrap the app in its Guard
        yield f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}, service
    finally:
        server.should_exit = True
        thread.join(30)


def health(url: str, headers: dict) -> dict:
    response = httpx.get(f"{url}/health", headers=headers, timeout=10)
    assert response.status_code == 200
    return response.json()
