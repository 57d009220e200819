"""Shared test settings.

Two cores are all a developer or CI machine has: torch's intra-op threads are capped so that the test
process never oversubscribes them (oversubscription makes torch 8-10x slower on these machines).
"""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture
def weight_files_read(monkeypatch):
    """The list, filled as models load, of the local weight files every folder load reads (through
    `read_entries`), resolved, in order: what a prefetch must match (nodegraph/models/prefetch.py)."""
    from nodegraph.models import checkpoint

    seen = []
    real = checkpoint.read_entries

    def recording(src, weights):
        seen.extend(src.fetch(p).resolve() for p in weights.paths)
        return real(src, weights)

    for module in ("nodegraph.models.checkpoint", "nodegraph.models.loading", "nodegraph.models.text"):
        monkeypatch.setattr(f"{module}.read_entries", recording)
    return seen


with open(os.path.join(os.path.dirname(__file__), "slow_tests.txt"), encoding="utf-8") as listed:
    _SLOW = {line.strip() for line in listed if line.strip() and not line.startswith("#")}


def pytest_collection_modifyitems(config, items):
    """`slow` on the tests listed in slow_tests.txt, so `pytest -m "not slow"` is a quick subset (CI runs all);
    `gpu` tests skipped, with the reason, where torch sees no CUDA device."""
    for item in items:
        if item.nodeid.split("[", 1)[0] in _SLOW:
            item.add_marker(pytest.mark.slow)
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA device: torch sees none here (run `pytest -m gpu` on one)")
            for item in gpu:
                item.add_marker(skip)
