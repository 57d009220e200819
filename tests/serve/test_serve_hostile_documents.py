"""Hostile documents submitted over HTTP: a 422 with the messages `nodegraph validate` gives (the readers'
own checks, spec/), nothing queued, and the server keeps serving."""

import json
import sys

import pytest
from serve_helpers import TEST_GRAPHS, TOKEN

from nodegraph.client import ServerError
from nodegraph.spec.errors import ValidationFailed

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8))
HOSTILE = {
    "range_1e12": "nodegraph: 1\nnodes:\n  r: {type: Range, stop: 1000000000000}\noutputs: {v: $r.values}\n",
    "range_1e9": "nodegraph: 1\nnodes:\n  r: {type: Range, start: 5, stop: 1000000005}\noutputs: {v: $r.values}\n",
    "format_globals": "nodegraph: 1\nnodes:\n  f: {type: FormatString, template: '{x.__init__.__globals__}', x: 1}\n"
                      "outputs: {t: $f.text}\n",
    "format_item": "nodegraph: 1\nnodes:\n  f: {type: FormatString, template: '{y[0]}', y: [1]}\noutputs: {t: $f.text}\n",
    "format_width": "nodegraph: 1\nnodes:\n  f: {type: FormatString, template: '{x:>2500000000}', x: 1}\n"
                    "outputs: {t: $f.text}\n",
    "hub_revision": "nodegraph: 1\nnodes:\n  s: {type: 'hf://a/b@%2Fetc%2Fpasswd/g.yaml'}\noutputs: {v: $s.value}\n",
    "hub_dots": "nodegraph: 1\nnodes:\n  s: {type: 'hf://a/b@..%2F..%2Fx/g.yaml'}\noutputs: {v: $s.value}\n",
    "deep": "nodegraph: 1\nnodes: " + "[" * 5000 + "]" * 5000 + "\n",
    "laughs": LAUGHS + "nodegraph: 1\n",
}


def validate_messages(text: str) -> set:
    from nodegraph.spec.loader import loads_graph

    with pytest.raises(ValidationFailed) as caught:
        loads_graph(text, file="submitted.yaml", base_dir=TEST_GRAPHS)
    return {(e.code, e.message) for e in caught.value.issues if e.is_error}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_document_is_422_with_validates_messages_and_nothing_queued(client, name):
    before = client.health()["runs"]
    with pytest.raises(ServerError) as caught:
        client.submit(document=HOSTILE[name])
    assert caught.value.status == 422
    assert {(e["code"], e["message"]) for e in caught.value.errors} == validate_messages(HOSTILE[name])
    assert client.health()["runs"] == before
    assert TOKEN not in str(caught.value) + json.dumps(caught.value.errors)  # the server's secret stays in


def peak_bytes(pid: int) -> int:
    """The process's peak resident memory so far (Linux's VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc")
def test_every_hostile_document_together_costs_the_server_little_memory(client, server):
    for text in HOSTILE.values():  # once each first: imports and caches warm
        with pytest.raises(ServerError):
            client.submit(document=text)
    with open(f"/proc/{server.proc.pid}/clear_refs", "w") as clear:
        clear.write("5")  # the peak starts again from the memory held now (not an earlier run's peak)
    before = peak_bytes(server.proc.pid)
    for _ in range(3):
        for text in HOSTILE.values():
            with pytest.raises(ServerError):
                client.submit(document=text)
    grown = peak_bytes(server.proc.pid) - before
    assert grown < 64 * 2**20, f"the server's peak grew {grown / 2**20:.0f} MiB refusing hostile documents"
    assert client.health()["status"] == "ok"


def test_a_number_no_reader_expected_is_refused_not_a_500(client):
    document = '{"nodegraph": 1, "nodes": {"a": {"type": "Add", "a": ' + "9" * 5000 + ', "b": 1}}, ' \
               '"outputs": {"v": "$a.value"}}'
    with pytest.raises(ServerError) as caught:
        client.submit(document=document)
    assert caught.value.status == 422 and "Traceback" not in str(caught.value)
    assert client.health()["status"] == "ok"


@pytest.mark.parametrize("address", ["hf://a/b/g.yaml", "hf://a/b@main/g.yaml", "hf://a/b@" + "0" * 40 + "/g.yaml"])
def test_a_hub_graph_in_a_document_is_refused_unless_the_operator_allows_it(client, address):
    document = f"nodegraph: 1\nnodes:\n  s: {{type: '{address}'}}\noutputs: {{v: $s.value}}\n"
    with pytest.raises(ServerError) as caught:
        client.submit(document=document)
    assert caught.value.status == 422
    assert [e["code"] for e in caught.value.errors] == ["hub_refused"]
    assert "--allow-hub-graphs" in caught.value.errors[0]["hint"]
