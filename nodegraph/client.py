"""A Python client for `nodegraph serve` (httpx; the `serve` extra).

    from nodegraph.client import Client
    client = Client("http://127.0.0.1:8188")                 # token=... or $NODEGRAPH_TOKEN
    outputs = client.run("stable_diffusion", model="builtin:digits", prompt="a handwritten digit 3")
    handle = client.submit("graphs/my_graph.yaml", steps=20)   # a local file goes with its includes
    client.run("stable_diffusion", fast=True, ...)            # fast mode (docs/performance.md), in the PNG too
    for event in handle.events(): ...                         # dicts, as docs/server.md lists them
    handle.cancel(); handle.result()

`graph` is a graph name known to the server (GET /graphs) or a path to a local graph file, which is sent
whole (with every file it includes).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterator, Optional

import httpx

TOKEN_ENV = "NODEGRAPH_TOKEN"


class ServerError(RuntimeError):
    """The server refused a request: `status`, and the located `errors` it listed."""

    def __init__(self, status: int, message: str, errors: Optional[list[dict]] = None):
        super().__init__(message)
        self.status, self.errors = status, errors or []


class RunFailed(RuntimeError):
    """The run ended failed or cancelled; `run` is its final state."""

    def __init__(self, run: dict):
        super().__init__(f"run {run['id']} {run['status']}: {run.get('error')}")
        self.run = run


def graph_payload(graph: Any) -> dict:
    """{"graph": name} or {"document": bundle} for a graph name, a local file or a Graph loaded from one."""
    path = getattr(graph, "file", graph)
    if isinstance(path, os.PathLike) or (isinstance(path, str) and os.path.isfile(path)):
        from nodegraph.spec.bundle import bundle_graph

        return {"document": bundle_graph(pathlib.Path(path))}
    if isinstance(graph, str):
        return {"graph": graph}
    return {"document": graph.to_yaml()}


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8188", token: Optional[str] = None, timeout: float = 30.0):
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method: str, path: str, **kwargs) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(0, f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text}
            raise ServerError(response.status_code, body.get("message") or response.reason_phrase,
                              body.get("errors"))
        return response.json()

    def submit(self, graph: Any = None, *, document: Any = None, inputs: Optional[dict] = None, priority: int = 0,
               outputs: Optional[list[str]] = None, preview: bool = False, fast: bool = False,
               **more_inputs) -> RunHandle:
        """Queue a run. `fast=True`: fast mode (faster kernels instead of bit-equality: docs/performance.md).
        A graph input named like one of this method's keywords (`document`, `inputs`, `priority`, `outputs`,
        `preview`, `fast`) is given in `inputs={...}`; the keywords are the run's own settings."""
        body: dict[str, Any] = graph_payload(graph) if document is None else {"document": document}
        body.update(inputs={**(inputs or {}), **more_inputs}, priority=priority, outputs=outputs, preview=preview)
        if fast is not False:  # left out by default: a server from before fast mode takes the request as it was
            body["fast"] = fast
        return RunHandle(self, self.request("POST", "/runs", json=body)["id"])

    def run(self, graph: Any, **inputs) -> dict:
        """Submit, wait, and return the outputs (files as [{file, url}], other values as summaries)."""
        return self.submit(graph, **inputs).result()

    def get(self, run_id: str) -> dict:
        return self.request("GET", f"/runs/{run_id}")

    def runs(self, status: Optional[str] = None, limit: int = 50, cursor: Optional[int] = None) -> dict:
        params = {k: v for k, v in (("status", status), ("limit", limit), ("cursor", cursor)) if v is not None}
        return self.request("GET", "/runs", params=params)

    def nodes(self) -> list[dict]:
        return self.request("GET", "/nodes")["nodes"]

    def graphs(self) -> list[dict]:
        return self.request("GET", "/graphs")["graphs"]

    def health(self) -> dict:
        return self.request("GET", "/health")

    def free(self) -> dict:
        return self.request("POST", "/free")

    def download(self, url: str) -> bytes:
        response = self.http.get(url)
        if response.status_code >= 400:
            raise ServerError(response.status_code, f"cannot fetch {url}")
        return response.content


class RunHandle:
    def __init__(self, client: Client, run_id: str):
        self.client, self.id = client, run_id

    def status(self) -> dict:
        return self.client.get(self.id)

    def cancel(self) -> dict:
        return self.client.request("DELETE", f"/runs/{self.id}")

    def events(self) -> Iterator[dict]:
        """Every event of the run from the first (replayed if it already happened) to the last."""
        with self.client.http.stream("GET", f"/runs/{self.id}/events", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise ServerError(response.status_code, response.text)
            data = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    event = json.loads("\n".join(data))
                    data = []
                    yield event
                    if event["type"] in ("finished", "failed", "cancelled"):
                        return

    def result(self) -> dict:
        """Wait for the end; the outputs, or RunFailed."""
        for _ in self.events():
            pass
        run = self.status()
        if run["status"] != "finished":
            raise RunFailed(run)
        return run["outputs"]
