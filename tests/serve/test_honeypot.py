"""Requests that name a file outside the server's allowed folders never open it: a honeypot folder outside
them, watched by an audit hook in the server's own process (the server runs in this process here)."""

import sys

import httpx
import pytest
from inprocess import serving

WATCHED = ("open", "os.listdir", "os.scandir", "os.walk", "shutil.copyfile", "os.rename")
MARKER = "honeypot-content-5e1f0c"
touched: list[tuple[str, str]] = []
honeypots: list[str] = []


def audit(event: str, args: tuple) -> None:
    if event in WATCHED and honeypots:
        for arg in args:
            if isinstance(arg, (str, bytes)) and any(h in str(arg) for h in honeypots):
                touched.append((event, str(arg)))


@pytest.fixture(scope="module")
def honeypot(tmp_path_factory):
    outside = tmp_path_factory.mktemp("honeypot")
    (outside / "secret.yaml").write_text(f"nodegraph: 1\ndescription: {MARKER}\n"
                                         "nodes:\n  a: {type: Add, a: 1, b: 2}\noutputs: {x: $a.value}\n")
    (outside / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\n" + MARKER.encode())
    (outside / "model").mkdir()
    (outside / "model" / "model_index.json").write_text("{}")
    sys.addaudithook(audit)  # cannot be removed (once a session: module scope); it looks only at `honeypots`
    honeypots.append(str(outside))
    yield outside
    honeypots.remove(str(outside))


def test_no_request_opens_a_file_outside_the_allowed_folders(tmp_path, honeypot):
    secret = honeypot / "secret.yaml"
    graph = "nodegraph: 1\nnodes:\n  {node}\noutputs: {{v: $n.{port}}}\n"
    documents = [
        graph.format(node=f"n: {{type: LoadImage, path: '{honeypot / 'secret.png'}'}}", port="image"),
        graph.format(node=f"n: {{type: '{secret}'}}", port="x"),
        graph.format(node="n: {type: ../../../../../../../../" + str(secret).lstrip("/") + "}", port="x"),
        graph.format(node="n: {type: 'hf://a/b@%2F" + str(secret).lstrip("/").replace("/", "%2F") + "/g.yaml'}",
                     port="x"),
        {"format": 1, "main": "g.yaml", "files": {"g.yaml": "nodegraph: 1", "../secret.yaml": "x: 1"}},
    ]
    with serving(tmp_path / "data") as (url, headers, service):
        answers = [httpx.post(f"{url}/runs", headers=headers, json={"document": d}, timeout=60) for d in documents]
        answers += [httpx.post(f"{url}/runs", headers=headers, timeout=60, json={
            "graph": "stable_diffusion", "inputs": {"model": "builtin:digits", name: value}})
            for name, value in (("lora", str(honeypot / "secret.png")), ("embedding", str(secret)),
                                ("vae", str(honeypot / "model")), ("model", str(honeypot / "model")),
                                ("lora", f"{tmp_path}/../{honeypot.name}/secret.png"))]
        answers += [httpx.get(f"{url}{path}", headers=headers, timeout=60) for path in (
            f"/outputs/..%2F..%2F{honeypot.name}/secret.png", f"/graphs/..%2F{honeypot.name}%2Fsecret/picture.svg")]
        statuses = [a.status_code for a in answers]
        assert all(400 <= s < 500 for s in statuses), statuses
        assert not [a.text for a in answers if MARKER in a.text]  # a refused value is named, never read
        assert httpx.get(f"{url}/health", headers=headers).status_code == 200
    assert touched == []
    with open(secret):  # the hook does see an open of the honeypot (the check above can fail)
        pass
    assert touched and touched[-1][0] == "open"
    touched.clear()
