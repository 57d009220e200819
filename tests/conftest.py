"""Shared test settings.

Two cores are all a developer or CI machine has: torch's intra-op threads are capped so that the test
processes never oversubscribe them (oversubscription makes torch 8-10x slower on these machines). One process
gets both cores; under pytest-xdist (`-n 2 --dist loadfile`) each worker gets one, and so does every process a
test starts from a worker.
"""

import os
import random
import sys
import zlib

import pytest

_CORES = 2
_THREADS_GIVEN = "OMP_NUM_THREADS" in os.environ
os.environ.setdefault("OMP_NUM_THREADS", str(_CORES))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def pytest_configure(config):
    """Split the cores between xdist's workers: set here, in the controller, before it starts them (they inherit
    its environment), unless the caller chose OMP_NUM_THREADS."""
    workers = getattr(config.option, "numprocesses", None) or 0
    if workers and not _THREADS_GIVEN:
        os.environ["OMP_NUM_THREADS"] = str(max(1, _CORES // int(workers)))


def _seed(name: str) -> None:
    """Every random generator the tests use, seeded from `name`: a fixture's random weights and a test's own draws
    then do not depend on which tests ran before in the same process (under xdist that order changes from run to
    run, and a tiny model's sensitivity margins moved with it: 20/255 in one run, 23/255 in another)."""
    seed = zlib.crc32(name.encode())
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _seed(fixturedef.argname)
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    _seed(item.nodeid)


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
