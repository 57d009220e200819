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
