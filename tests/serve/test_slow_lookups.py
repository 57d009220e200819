"""A slow lookup while a submission is checked (a `hf://` include while offline) never holds a request
handler: `/health` answers meanwhile, the POST gives up after `--lookup-seconds` with nothing queued, and
more submissions than `--lookup-workers` are a 503 at once. The slow lookup is injected and held by an event."""

import threading

import httpx
from inprocess import health, serving

from nodegraph.serve.documents import Documents


def test_a_held_lookup_leaves_health_answering_is_bounded_and_queues_nothing(tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    original, calls = Documents.submit, []

    def slow_first(self, graph, document):
        calls.append(graph)
        if len(calls) == 1:  # the first submission's lookup hangs until the test lets it go
            entered.set()
            release.wait(120)
        return original(self, graph, document)

    monkeypatch.setattr(Documents, "submit", slow_first)
    with serving(tmp_path / "data", lookup_workers=1, lookup_seconds=0.5) as (url, headers, service):
        answers = {}
        first = threading.Thread(target=lambda: answers.update(first=httpx.post(
            f"{url}/runs", json={"graph": "sleep"}, headers=headers, timeout=60)))
        first.start()
        assert entered.wait(60)
        assert health(url, headers)["lookups_pending"] == 1  # answered while the lookup hangs
        busy = httpx.post(f"{url}/runs", json={"graph": "sleep"}, headers=headers, timeout=60)
        assert busy.status_code == 503 and busy.json()["errors"][0]["code"] == "server_busy"
        first.join(60)
        assert not release.is_set()  # the POST answered while its lookup still hung
        timed_out = answers["first"]
        assert timed_out.status_code == 503
        assert timed_out.json()["errors"][0]["code"] == "lookup_timeout"
        assert "took over 0.5 s" in timed_out.json()["message"] and "nothing was queued" in timed_out.json()["message"]
        release.set()
        done = threading.Event()
        service.lookups._pool.submit(done.set)  # one worker: runs once the held lookup has ended
        assert done.wait(60)
        assert sum(health(url, headers)["runs"].values()) == 0  # the abandoned lookup queued nothing
        accepted = httpx.post(f"{url}/runs", json={"graph": "sleep"}, headers=headers, timeout=60)
        assert accepted.status_code == 202
    assert calls == ["sleep", "sleep"]  # the busy one never reached the lookup
