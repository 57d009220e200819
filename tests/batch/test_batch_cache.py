"""A batch keeps node outputs between its items (nodegraph.runner + exec/lru_caches.py): what every item computes
alike — the LoRA read and fused, the fixed prompts encoded — runs once per batch, and the images stay what a
single run with each item's inputs makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from batch_helpers import DIGITS, SD_GRAPH

from nodegraph.batch import run_batch

DIGITS_FOLDER = Path(__file__).resolve().parents[2] / "nodegraph" / "builtin" / "digits"


@pytest.fixture(scope="module")
def digits_lora(tmp_path_factory) -> Path:
    """A random kohya-format LoRA for builtin:digits' UNet and text encoder (layers named by diffusers)."""
    from tests.models.adapters.lora_files import lora_targets, write_kohya

    return write_kohya(tmp_path_factory.mktemp("lora") / "digits_lora.safetensors", lora_targets(DIGITS_FOLDER), seed=3)


@pytest.fixture
def spies(monkeypatch):
    """Counts of LoRA file reads, LoRA applications (one per model part) and prompt encodings."""
    import nodegraph.models.adapters.lora as lora
    import nodegraph.prompts.encode as encode

    counts = {"read_lora": 0, "apply_lora": 0, "encode": 0}

    def spy(module, name, key):
        real = getattr(module, name)

        def counted(*args, **kwargs):
            counts[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    spy(lora, "read_lora", "read_lora")
    spy(lora, "apply_lora", "apply_lora")
    spy(encode, "encode_plain", "encode")
    spy(encode, "encode_a1111", "encode")
    return counts


def test_a_batch_reads_and_fuses_its_lora_once_and_encodes_fixed_prompts_once(digits_lora, spies, tmp_path):
    from nodegraph import run_graph
    from nodegraph.exec.writers import to_pil_images

    sets = {**DIGITS, "prompt": "a 3", "lora": str(digits_lora), "lora_scale": 0.8}
    run_batch(SD_GRAPH, {"seed": [0]}, sets=sets, out=tmp_path / "one")
    per_item = dict(spies)
    assert per_item["read_lora"] == 1 and per_item["apply_lora"] >= 2 and per_item["encode"] >= 1, per_item

    for key in spies:
        spies[key] = 0
    rows = run_batch(SD_GRAPH, {"seed": [0, 1, 2, 3]}, sets=sets, out=tmp_path / "four")
    assert {r["status"] for r in rows} == {"done"}
    assert dict(spies) == per_item  # four items cost what one does: nothing shared ran again

    # the cache changes no pixel: item 3 is what a single uncached run with its inputs makes
    single = to_pil_images(run_graph(SD_GRAPH, rows[3]["inputs"])["image"], "image")[0]
    with PIL.Image.open(tmp_path / "four" / "00003-image.png") as img:
        assert np.array_equal(np.asarray(img), np.asarray(single))
    with PIL.Image.open(tmp_path / "four" / "00002-image.png") as other, \
            PIL.Image.open(tmp_path / "four" / "00003-image.png") as img:
        assert not np.array_equal(np.asarray(img), np.asarray(other))  # the seed still reaches every image
