"""CancelToken.on_cancel: what a run's cancel-time work (exec/interrupt.py's checks) relies on."""

import threading

from nodegraph.core.cancel import CancelToken


def test_a_callback_runs_once_in_the_cancelling_thread_and_a_taken_back_one_never():
    token, ran, taken_back = CancelToken(), [], []
    token.on_cancel(lambda: ran.append(threading.current_thread().name))
    forget = token.on_cancel(lambda: taken_back.append(1))
    forget()
    thread = threading.Thread(target=token.cancel, name="canceller")
    thread.start()
    thread.join()
    token.cancel()  # a second cancel calls nothing again
    assert ran == ["canceller"] and taken_back == [] and token.cancelled


def test_a_callback_added_to_a_cancelled_token_runs_at_once():
    token, ran = CancelToken(), []
    token.cancel()
    token.on_cancel(lambda: ran.append(1))()  # its take-back does nothing
    assert ran == [1]


def test_a_failing_callback_is_logged_and_neither_breaks_the_cancel_nor_skips_the_others(caplog):
    token, ran = CancelToken(), []

    def broken():
        raise RuntimeError("broken callback")

    token.on_cancel(broken)
    token.on_cancel(lambda: ran.append(1))
    token.cancel()  # must not raise: DELETE /runs/{id} calls it
    assert ran == [1] and token.cancelled
    assert "broken callback" in caplog.text


def test_a_cancel_landing_between_registering_and_its_check_loses_no_callback():
    token, ran = CancelToken(), []

    class CancelledOnAppend(list):  # a cancel (e.g. a Ctrl-C handler) landing inside on_cancel, at its append
        def append(self, item):
            token.cancel()
            super().append(item)

    token._callbacks = CancelledOnAppend()
    token.on_cancel(lambda: ran.append(1))
    assert ran == [1]  # the cancel that landed during registration ran it: not lost
    token.cancel()
    assert ran == [1]  # and a later cancel does not run it twice


def test_a_cancel_from_a_signal_handler_runs_its_callbacks():
    import signal

    token, ran = CancelToken(), []
    token.on_cancel(lambda: ran.append(threading.current_thread() is threading.main_thread()))
    previous = signal.signal(signal.SIGUSR1, lambda *_: token.cancel())
    try:
        signal.raise_signal(signal.SIGUSR1)  # the handler runs before raise_signal returns
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert token.cancelled and ran == [True]
