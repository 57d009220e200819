"""DELETE stops a running run inside a model call (at the next layer), and says whether it has stopped."""

import threading
import time

import httpx
from inprocess import serving
from serve_helpers import DIGITS, wait_for

from nodegraph.exec.interrupt import cancel_between_blocks
from nodegraph.exec.hooks import CancelToken, RunCancelledError


def test_a_cancelled_token_stops_a_cached_model_between_its_blocks_on_its_own_thread_only():
    import pytest
    import torch

    from nodegraph.core.context import ComponentCache

    ran = []
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)])
    for index, layer in enumerate(model):
        layer.register_forward_hook(lambda m, a, o, index=index: ran.append(index))
    token = CancelToken()
    model[1].register_forward_hook(lambda *_: token.cancel())  # cancelled while the model runs
    components = ComponentCache()
    components.get_or_load("model", lambda: model)
    other = []
    with cancel_between_blocks(token, components):
        with pytest.raises(RunCancelledError):
            model(torch.zeros(1, 2))
        assert ran == [0, 1]  # layers 2 and 3 never ran
        thread = threading.Thread(target=lambda: other.append(model(torch.zeros(1, 2)).shape))
        thread.start()
        thread.join()
    assert other == [(1, 2)]  # another thread's run of the same model is not this run: it went on
    ran.clear()
    model(torch.zeros(1, 2))  # outside: no check at all
    assert ran == [0, 1, 2, 3]


def test_delete_stops_a_run_inside_the_unet_call_and_says_pending_until_it_has(tmp_path):
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    held, proceed, cancel_sent = threading.Event(), threading.Event(), threading.Event()
    state = {"unet": False}
    completed_after_cancel = []

    def hold(module, args):  # in the worker: hold the first MidBlock call, half-way through the UNet's forward
        if threading.current_thread().name != "nodegraph-worker":
            return
        name = type(module).__name__
        if name == "UNet2DConditionModel":
            state["unet"] = True
        elif name == "MidBlock" and state["unet"] and not held.is_set():
            held.set()
            proceed.wait(60)

    def finished(module, args, output):
        if cancel_sent.is_set() and threading.current_thread().name == "nodegraph-worker":
            completed_after_cancel.append(type(module).__name__)

    handles = [register_module_forward_pre_hook(hold), register_module_forward_hook(finished)]
    try:
        with serving(tmp_path / "data", cancel_wait_seconds=0.2) as (url, headers, service):
            response = httpx.post(f"{url}/runs", headers=headers, timeout=30,
                                  json={"graph": "stable_diffusion", "inputs": {**DIGITS, "steps": 2}})
            run_id = response.json()["id"]
            assert held.wait(120)  # the worker is inside the UNet call of the first step
            cancel_sent.set()
            pending = httpx.delete(f"{url}/runs/{run_id}", headers=headers, timeout=30)
            assert pending.status_code == 202 and pending.json()["cancel"] == "pending"
            assert pending.json()["status"] == "running"
            proceed.set()
            with httpx.stream("GET", f"{url}/runs/{run_id}/events", headers=headers, timeout=60) as stream:
                kinds = [line[7:] for line in stream.iter_lines() if line.startswith("event: ")]
            assert kinds[-1] == "cancelled" and "progress" not in kinds  # the first step never finished
            run = httpx.get(f"{url}/runs/{run_id}", headers=headers).json()
            assert run["status"] == "cancelled" and run["error"].startswith("run cancelled")
    finally:
        for handle in handles:
            handle.remove()
    assert completed_after_cancel == []  # not one layer ran after the cancel: the MidBlock never started


def test_delete_answers_once_a_running_run_has_stopped(client, server):
    running = client.submit("sleep", seconds=60, value=time.time())
    wait_for(client, running.id, "running")
    response = httpx.delete(f"{server.url}/runs/{running.id}", headers=server.headers, timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["cancel"] == "done"
    queued = client.submit("sleep", seconds=60, value=time.time())
    response = httpx.delete(f"{server.url}/runs/{queued.id}", headers=server.headers, timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
