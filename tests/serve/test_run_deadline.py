"""The server's wall-time limit of a run (serve/run_limits.py Watchdog): one long-lived thread cancels the runs
past their limit. The tests wait on the tokens' events, never on the clock's luck: a loaded machine only makes
them slower."""

import threading

from nodegraph.core.cancel import CancelToken
from nodegraph.serve.run_limits import Watchdog

WAIT = 60  # seconds a test waits for what must happen; a pass takes milliseconds


def expired_within(token: CancelToken) -> bool:
    return token._event.wait(WAIT)


def watchdog_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_a_run_past_its_limit_is_cancelled_and_marked_expired():
    watchdog = Watchdog()
    try:
        token = CancelToken()
        deadline = watchdog.deadline(token, 0.05)
        assert expired_within(token)
        assert deadline.expired and "limit of 0.05 s" in deadline.message and "--max-run-seconds" in deadline.message
        deadline.stop()  # after expiry: stays expired
        assert deadline.expired and token.cancelled
    finally:
        watchdog.close()


def test_a_stopped_deadline_never_cancels_its_run():
    watchdog = Watchdog()
    try:
        stopped, later = CancelToken(), CancelToken()
        first = watchdog.deadline(stopped, 1.0)  # long enough that a busy machine cannot fire it before stop()
        first.stop()  # the run ended in time
        watchdog.deadline(later, 1.2)  # due after the stopped one: once it fires, the first one's time has passed
        assert expired_within(later)
        assert not stopped.cancelled and not first.expired
    finally:
        watchdog.close()


def test_a_run_with_a_short_limit_expires_while_an_earlier_longer_one_waits():
    watchdog = Watchdog()
    try:
        long_run, short_run = CancelToken(), CancelToken()
        long_deadline = watchdog.deadline(long_run, 3600)
        watchdog.deadline(short_run, 0.05)  # set second, due first: must not wait behind the first
        assert expired_within(short_run)
        assert not long_run.cancelled and not long_deadline.expired
        long_deadline.stop()
        assert not watchdog._due
    finally:
        watchdog.close()


def test_every_run_shares_one_watchdog_thread_and_no_limit_watches_nothing():
    watchdog = Watchdog(name="test-deadlines-shared")
    try:
        before = threading.active_count()
        for _ in range(50):
            watchdog.deadline(CancelToken(), 3600).stop()
        assert len(watchdog_threads("test-deadlines-shared")) == 1 and threading.active_count() <= before + 1
        unlimited = watchdog.deadline(CancelToken(), None)
        assert not watchdog._due and not unlimited.expired
        unlimited.stop()
        assert not watchdog._due  # stopped deadlines leave nothing behind
    finally:
        watchdog.close()
    assert not watchdog_threads("test-deadlines-shared")  # close() ends the thread
