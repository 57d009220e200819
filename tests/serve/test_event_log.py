"""A run's event log (serve/events.py): what live and late clients get, whatever order the worker and the
clients happen to run in on a loaded machine (each order is made here on purpose, nothing waits on a clock)."""

import asyncio
import threading

from nodegraph.serve.events import EventLog


def a_run_with_previews(log: EventLog, steps: int = 3) -> None:
    log.append({"type": "queued"})
    log.append({"type": "started"})
    for index in range(1, steps + 1):
        log.append({"type": "progress", "node": "denoise", "index": index, "total": steps, "preview": f"p{index}"})


def previews(events: list[dict]) -> list[bool]:
    return ["preview" in e for e in events if e["type"] == "progress"]


def run(scenario) -> None:
    """`asyncio.run(scenario())` on a thread of its own: a test before this one in the same process may still hold
    an event loop running in the main thread (the web tests' session-wide Playwright browser, under pytest-xdist)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as exc:  # re-raised in the test's thread, so pytest reports the assertion
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def read(stream, count: int) -> list[dict]:
    return [await stream.__anext__() for _ in range(count)]


def test_a_live_client_far_behind_still_gets_every_preview_and_the_drop_waits_for_it():
    async def scenario():
        log = EventLog()
        a_run_with_previews(log)
        stream = log.follow()
        seen = await read(stream, 1)  # connected during the run, then left behind
        log.append({"type": "finished"})
        log.drop_previews()  # the worker is done before the client reads on
        assert previews(log.events) == [True, True, True]  # not yet: a client is still reading
        seen += [event async for event in stream]
        assert [e["type"] for e in seen][-1] == "finished" and previews(seen) == [True, True, True]
        assert previews(log.events) == [False, False, True]  # the last client left: dropped, the last kept

    run(scenario)


def test_a_client_arriving_after_the_end_gets_only_the_last_preview_even_before_the_drop():
    async def scenario():
        log = EventLog()
        a_run_with_previews(log)
        log.append({"type": "finished"})
        late = [event async for event in log.follow()]  # before the worker dropped the previews
        assert previews(late) == [False, False, True] and late[-1]["type"] == "finished"
        assert previews(log.events) == [True, True, True]  # the replay took copies; the log is left to the drop
        log.drop_previews()
        again = [event async for event in log.follow()]
        assert previews(again) == [False, False, True] and previews(log.events) == [False, False, True]
        assert [e["seq"] for e in again] == list(range(len(again)))

    run(scenario)


def test_without_clients_the_previews_are_dropped_at_once():
    log = EventLog()
    a_run_with_previews(log, steps=4)
    log.append({"type": "failed", "error": "x"})
    log.drop_previews()
    assert previews(log.events) == [False, False, False, True]


def test_progress_events_close_together_reach_a_client_with_the_next_wake_and_none_is_lost(monkeypatch):
    from nodegraph.serve import events

    monkeypatch.setattr(events, "PROGRESS_WAKE_SECONDS", 3600)  # after one wake, no progress event wakes again

    async def scenario():
        log = EventLog()
        log.append({"type": "started"})
        stream = log.follow()
        assert (await stream.__anext__())["type"] == "started"
        waiting = asyncio.ensure_future(stream.__anext__())
        while not log._waiters:  # the client drained the log and waits (one loop turn: no clock involved)
            await asyncio.sleep(0)
        for index in (1, 2, 3):
            log.append({"type": "progress", "node": "denoise", "index": index, "total": 3})
        assert len(log._waiters) == 1 and not waiting.done()  # not woken: each wake costs the worker the GIL
        log.append({"type": "node_finished", "node": "denoise"})  # any other event wakes at once
        assert not log._waiters
        seen = [await waiting] + [e async for e in _until(stream, "finished", log)]
        assert [(e["type"], e.get("index")) for e in seen] == [("progress", 1), ("progress", 2), ("progress", 3),
                                                             ("node_finished", None), ("finished", None)]

    run(scenario)


async def _until(stream, last: str, log: EventLog):
    log.append({"type": last})
    async for event in stream:
        yield event
