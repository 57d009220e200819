"""A warm process (server, batch) running `builtin:digits` again and again: once its UNet runs from a trace
(models/warm_trace.py), the images are the very pixels of the eager runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]


def test_digits_runs_from_a_trace_give_the_eager_images(monkeypatch, tmp_path):
    from nodegraph.core.context import ComponentCache
    from nodegraph.core.mode import RunMode
    from nodegraph.models import warm_trace
    from nodegraph.runner import Runner, open_target

    monkeypatch.setattr(warm_trace, "TRACE_AFTER_CALLS", 3)  # as a server's fourth 25-step run, at 4 steps
    monkeypatch.setattr(warm_trace, "SHORT_CALL_SECONDS", float("inf"))  # however slow the machine is today
    target = open_target(REPO / "graphs" / "stable_diffusion.yaml", tmp_path)
    runner = Runner(RunMode(device="cpu"), components=ComponentCache())  # its own UNet, called by nothing else
    sets = ["model=builtin:digits", "steps=4", "prompt=a handwritten digit 7"]

    def image(seed: int) -> np.ndarray:
        outputs = runner.run(target.graph, target.bind([*sets, f"seed={seed}"]))
        (out,) = [v for v in outputs.values() if isinstance(v, torch.Tensor)]
        return out.numpy()

    first = image(7)  # eager calls 1-3, the trace made at 3, verified on 4 (the eager result returned)
    traced = [e for entries in list(warm_trace._BY_MODEL.values()) for e in entries.values()
              if e.traced is not None and e.calls == 3]
    assert len(traced) == 1 and traced[0].traced.verified == 1
    second = image(7)  # one more verified call, then three from the trace alone
    assert traced[0].traced.verified == warm_trace.VERIFY_CALLS and traced[0].calls == 3
    assert np.array_equal(first, second)
    assert not np.array_equal(first, image(8))  # the image follows the seed: the trace froze no noise
