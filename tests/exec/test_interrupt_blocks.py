"""Which modules of a cached model get the cancel check (exec/interrupt.py): blocks, not single layers."""

import torch

from nodegraph.exec.interrupt import instrument


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(2)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(2, 2)])  # a single layer in a list, as diffusers names it
        self.net = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.nn.Dropout(0.0)])

    def forward(self, x):
        return self.net[1](self.net[0](self.to_out[0](self.norm(x))))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = torch.nn.Linear(2, 2)  # a direct child: checked even though it is a single layer
        self.blocks = torch.nn.ModuleList([Block(), Block()])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.conv_in(x)


def test_blocks_and_direct_children_are_checked_but_single_layers_inside_lists_are_not():
    model = Model()
    instrument(model)
    hooked = {name for name, module in model.named_modules() if module._forward_pre_hooks}
    assert hooked == {"", "conv_in", "blocks", "blocks.0", "blocks.1", "blocks.0.net.0", "blocks.1.net.0"}
    assert model(torch.zeros(1, 2)).shape == (1, 2)


def _hooked(model):
    return {name for name, module in model.named_modules() if module._forward_pre_hooks}


def _cached(model):
    from nodegraph.core.context import ComponentCache

    components = ComponentCache()
    components.get_or_load("model", lambda: model)
    return components


def test_a_run_that_is_not_cancelled_carries_no_check_and_a_cancel_from_another_thread_adds_them_until_it_ends():
    import pytest
    import threading

    from nodegraph.exec.hooks import CancelToken, RunCancelledError
    from nodegraph.exec.interrupt import cancel_between_blocks, hooked_models

    model, token = Model(), CancelToken()
    with cancel_between_blocks(token, _cached(model)):
        model(torch.zeros(1, 2))
        assert _hooked(model) == set() and hooked_models() == 0  # torch's fast call path: no cost per module
        canceller = threading.Thread(target=token.cancel)  # as DELETE /runs/{id} does, from the server's thread
        canceller.start()
        canceller.join()
        assert _hooked(model) == {"", "conv_in", "blocks", "blocks.0", "blocks.1", "blocks.0.net.0", "blocks.1.net.0"}
        with pytest.raises(RunCancelledError):
            model(torch.zeros(1, 2))
    assert _hooked(model) == set() and hooked_models() == 0  # taken off when the run ends


def test_two_cancelled_runs_on_one_model_share_its_checks_until_the_last_one_ends():
    import threading

    from nodegraph.exec.hooks import CancelToken
    from nodegraph.exec.interrupt import cancel_between_blocks

    model = Model()
    components = _cached(model)
    inside, first_ended, seen = threading.Event(), threading.Event(), []

    def other_run():
        token = CancelToken()
        with cancel_between_blocks(token, components):
            token.cancel()
            inside.set()
            first_ended.wait(30)
            seen.append(len(_hooked(model)))  # the first run's end left this run's checks on

    thread = threading.Thread(target=other_run)
    thread.start()
    assert inside.wait(30)
    token = CancelToken()
    with cancel_between_blocks(token, components):
        token.cancel()
        assert len(_hooked(model)) == 7 and all(len(m._forward_pre_hooks) == 1 for m in model.modules()
                                                if m._forward_pre_hooks)  # shared, not added twice
    first_ended.set()
    thread.join()
    assert seen == [7] and _hooked(model) == set()


def test_a_ctrl_c_cancel_landing_while_this_thread_adds_checks_is_run_after_that_add_without_deadlock():
    import signal

    from nodegraph.exec.hooks import CancelToken
    from nodegraph.exec.interrupt import cancel_between_blocks, hooked_models

    first_token, second_token = CancelToken(), CancelToken()
    landed = []

    class Interrupted(Model):
        def register_forward_pre_hook(self, hook, **kwargs):  # called by the first token's add, lock held
            handle = super().register_forward_pre_hook(hook, **kwargs)
            if not landed:
                landed.append(1)
                signal.raise_signal(signal.SIGUSR1)  # its handler runs here, before raise_signal returns
            return handle

    first, second = Interrupted(), Model()
    previous = signal.signal(signal.SIGUSR1, lambda *_: second_token.cancel())
    try:
        with cancel_between_blocks(second_token, _cached(second)):
            with cancel_between_blocks(first_token, _cached(first)):
                first_token.cancel()  # a plain lock would deadlock here: the handler's add waits for this add
                assert landed and hooked_models() == 2
                assert _hooked(second) == _hooked(first) == {"", "conv_in", "blocks", "blocks.0", "blocks.1",
                                                            "blocks.0.net.0", "blocks.1.net.0"}
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert hooked_models() == 0 and _hooked(first) == _hooked(second) == set()


def test_a_cancel_arriving_while_a_forward_runs_stops_it_at_its_next_checked_child():
    import threading

    import pytest

    from nodegraph.exec.hooks import CancelToken, RunCancelledError
    from nodegraph.exec.interrupt import cancel_between_blocks

    entered, cancelled, ran = threading.Event(), threading.Event(), []

    class Waiting(Model):  # its forward is in flight (past blocks[0]) when the cancel comes from another thread
        def forward(self, x):
            x = self.blocks[0](x)
            entered.set()
            assert cancelled.wait(60)  # the canceller has returned: the checks went on during this forward
            ran.append("after wait")
            x = self.blocks[1](x)  # checked: raises before it runs
            ran.append("blocks.1")
            return self.conv_in(x)

    model, token = Waiting(), CancelToken()
    model.blocks[1].norm.register_forward_hook(lambda *_: ran.append("blocks.1.norm"))

    def canceller():
        assert entered.wait(60)
        token.cancel()
        cancelled.set()

    thread = threading.Thread(target=canceller)
    thread.start()
    with cancel_between_blocks(token, _cached(model)):
        with pytest.raises(RunCancelledError):
            model(torch.zeros(1, 2))
    thread.join()
    assert ran == ["after wait"]  # the same forward went on to its next checked child, which raised
