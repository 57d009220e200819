"""The memory budget: sizes as people write them, an impossible budget refused before anything loads, and a
budgeted run (UNet and VAE streamed from their files) giving the unbudgeted run's pixels bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodegraph import RunMode, run_graph
from nodegraph.memory import SizeError, parse_size
from nodegraph.memory.budget import BudgetError

GRAPHS = Path(__file__).parents[2] / "graphs"
DIGITS = {"model": "builtin:digits", "prompt": "7", "steps": 2, "seed": 3}


@pytest.mark.parametrize("text, expected", [("6GB", 6 << 30), ("6 GiB", 6 << 30), ("1.5G", 3 << 29),
                                            ("512mb", 512 << 20), ("4096", 4096), ("2 TB", 2 << 40)])
def test_sizes_read_as_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["6 parsecs", "GB", "-1GB", "0", ""])
def test_a_malformed_size_says_how_to_write_one(text):
    with pytest.raises(SizeError, match="--max-memory") as error:
        parse_size(text)
    assert repr(text) in str(error.value) or "more than 0" in str(error.value)


def _sd_graph(tiling: str = "off"):
    """The shipped SD graph with the decode's tiling fixed (auto would tile under a small budget: within 1/255,
    not bit for bit)."""
    from nodegraph.spec.loader import loads_graph

    path = GRAPHS / "stable_diffusion.yaml"
    text = path.read_text().replace("    type: VAEDecode\n", f"    type: VAEDecode\n    tiling: \"{tiling}\"\n")
    return loads_graph(text, file=str(path), base_dir=GRAPHS)


def test_an_impossible_budget_is_refused_before_anything_loads(monkeypatch):
    from nodegraph.models import loading

    monkeypatch.setattr(loading, "load_component", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(BudgetError, match=r"Give --max-memory \d+MB or more"):
        run_graph(_sd_graph(), DIGITS, mode=RunMode(device="cpu", max_memory=100 << 20))


def test_a_budgeted_run_streams_and_gives_the_same_pixels(monkeypatch):
    import torch

    from nodegraph.exec.memory_plan import minimum_budget
    from nodegraph.memory.usage import rss_bytes
    from nodegraph.models import streaming

    graph = _sd_graph()
    free = run_graph(graph, DIGITS, mode=RunMode(device="cpu"))["image"]
    streamed = []
    real = streaming.install_streamed
    monkeypatch.setattr(streaming, "install_streamed", lambda *a, **k: streamed.append(1) or real(*a, **k))
    least, _ = minimum_budget(graph, DIGITS)
    assert rss_bytes() > least  # so the least budget leaves no room: the UNet and the VAE must stream
    budgeted = run_graph(graph, DIGITS, mode=RunMode(device="cpu", max_memory=least))["image"]
    assert len(streamed) == 2
    assert torch.equal(budgeted, free)
