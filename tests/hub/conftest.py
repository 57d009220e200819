"""Fixtures: a graph repo at two commits in a hand-built hub cache (read offline), and a graph-file writer."""

import pytest
from hub_cache import COMMIT_V1, COMMIT_V2, GRAPH, IMAGE, REPO, SCALE, add_commit


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """alice/graphs: commit 1 (tag v1, factor 10) and commit 2 (main, factor 100); offline, in-process.

    image.yaml is a gray image of brightness 0.004 x factor: 0.04 at commit 1, 0.4 at commit 2.
    """
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    add_commit(cache, REPO, COMMIT_V1, {"graph.yaml": GRAPH, "parts/scale.yaml": SCALE % 10.0, "image.yaml": IMAGE},
               refs=("v1",))
    add_commit(cache, REPO, COMMIT_V2, {"graph.yaml": GRAPH, "parts/scale.yaml": SCALE % 100.0, "image.yaml": IMAGE})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def write(tmp_path):
    """Write a graph file (text used as given: layout matters to `upgrade`) and return its path."""

    def write(name, text):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write
