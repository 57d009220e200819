"""A slow lookup while a submission is checked (a `hf://` include while offline) never holds a request
handler: `/health` answers meanwhile, a POST gives up after `--lookup-seconds` with nothing queued, a check
waiting its turn that long never runs, and one submission more than `--max-pending-lookups` is a 503 at once.
The slow lookup is injected and held by an event."""

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
    with serving(tmp_path / "data", lookup_workers=1, lookup_seconds=3, max_pending_lookups=2) as (url, headers,
                                                                                                  service):
        answers = {}

        def post(name):
            answers[name] = httpx.post(f"{url}/runs", json={"graph": "sleep"}, headers=headers, timeout=60)

        held, waiting = (threading.Thread(target=post, args=(name,)) for name in ("held", "waiting"))
        held.start()
        assert entered.wait(60)
        assert health(url, headers)["lookups_pending"] == 1  # answered while the lookup hangs
        waiting.start()  # the one worker is held: this check waits its turn
        while health(url, headers)["lookups_pending"] < 2:
            pass
        busy = httpx.post(f"{url}/runs", json={"graph": "sleep"}, headers=headers, timeout=60)
        assert busy.status_code == 503 and busy.json()["errors"][0]["code"] == "server_busy"
        held.join(60)
        waiting.join(60)
        assert not release.is_set()  # both answered while the lookup still hung
        for name in ("held", "waiting"):
            body = answers[name].json()
            assert answers[name].status_code == 503 and body["errors"][0]["code"] == "lookup_timeout"
            assert "took over 3 s" in body["message"] and "nothing was queued" in body["message"]
        release.set()
        done = threading.Event()
        service.lookups._pool.submit(done.set)  # one worker: runs once the held lookup has ended
        assert done.wait(60)
        assert sum(health(url, headers)["runs"].values()) == 0  # the abandoned lookup queued nothing
        assert health(url, headers)["lookups_pending"] == 0
        accepted = httpx.post(f"{url}/runs", json={"graph": "sleep"}, headers=headers, timeout=60)
        assert accepted.status_code == 202
    assert calls == ["sleep", "sleep"]  # the waiting check was dropped, the busy one never reached the pool
