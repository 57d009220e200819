"""Safetensors headers from strangers: size and entry count bounded before they are read, every entry's
types checked, so `nodegraph inspect` and the loaders refuse a hostile file quickly with exit 2."""

import json
import struct
import time
import tracemalloc

import pytest

from nodegraph.cli import main
from nodegraph.models.errors import CheckpointError
from nodegraph.models.weight_files import read_safetensors_header

GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


def safetensors(path, header, data=b"\0" * 16, raw=None):
    text = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_a_100_mb_header_is_refused_before_it_is_read(tmp_path, capsys):
    import nodegraph.models.single_file.inspect  # noqa: F401  (imports torch: not what is measured)
    import nodegraph.models.single_file.loader  # noqa: F401

    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:  # a real 100 MB JSON header: one huge metadata string
        text = b'{"__metadata__": {"x": "' + b"a" * (100 << 20) + b'"}}'
        f.write(struct.pack("<Q", len(text)) + text)
    started = time.perf_counter()
    assert main(["inspect", str(path)]) == 2
    assert time.perf_counter() - started < 5  # a guard against parsing 100 MB (20 s before), not a speed goal
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError):
            read_safetensors_header(path, "big.safetensors")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # (1.7 GB before)
    err = capsys.readouterr().err
    assert "over the limit of 16,777,216" in err and "internal error" not in err


@pytest.mark.parametrize("header", [
    [1, 2, 3], "text", 5, None,
    {"w": [1, 2]}, {"w": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}},
    {"w": {"dtype": "F32", "shape": [2, "2"], "data_offsets": [0, 16]}},
    {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8, 16]}},
    {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [[0], 16]}},
    {"w": {"dtype": 32, "shape": [2, 2], "data_offsets": [0, 16]}},
    {"w": {"dtype": "F32", "shape": [2, 2]}},
    {"w": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}},
    {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 0]}},
    {"w": {"dtype": "Q4", "shape": [2, 2], "data_offsets": [0, 16]}},
    {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16], "extra": {}}},
    {"__metadata__": [1], **GOOD},
    {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, True]}},
])
def test_a_malformed_header_is_a_checkpoint_error(tmp_path, header, capsys):
    from nodegraph.models.single_file.reader import open_checkpoint

    path = safetensors(tmp_path / "m.safetensors", header)
    with pytest.raises(CheckpointError):
        open_checkpoint(path)
    assert main(["inspect", str(path)]) == 2
    assert "internal error" not in capsys.readouterr().err


@pytest.mark.parametrize("raw", [b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 16]}}',
                                 b"\xff\xfe{}", b"{" * 100_000, b'{"a": 1e99999}', b"", b"{}}"])
def test_malformed_json_in_a_header_is_a_checkpoint_error(tmp_path, raw):
    with pytest.raises(CheckpointError):
        read_safetensors_header(safetensors(tmp_path / "m.safetensors", None, raw=raw), "m.safetensors")


def test_the_entry_count_is_bounded_and_raised_by_the_environment(tmp_path, monkeypatch):
    header = {f"w{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(11)}
    path = safetensors(tmp_path / "m.safetensors", header)
    monkeypatch.setenv("NODEGRAPH_MAX_SAFETENSORS_ENTRIES", "10")
    with pytest.raises(CheckpointError, match="11 tensors, over the limit of 10"):
        read_safetensors_header(path, "m")
    monkeypatch.setenv("NODEGRAPH_MAX_SAFETENSORS_ENTRIES", "11")
    assert len(read_safetensors_header(path, "m").tensors) == 11


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_inspect_refuses_what_is_not_a_regular_file(tmp_path, special, capsys):
    import os

    if special == "fifo":
        special = str(tmp_path / "pipe.safetensors")
        os.mkfifo(special)
    assert main(["inspect", special]) == 2  # returns at once: a FIFO with no writer is never opened to block
    with pytest.raises(CheckpointError):
        read_safetensors_header(special, special)


@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', '{"lora_alpha": ' + "9" * 5000 + "}", "{not json"])
def test_a_lora_whose_adapter_metadata_is_malformed_keeps_its_default_alphas(raw):
    import torch

    from nodegraph.models.adapters.lora import LoraLayer, _apply_peft_alphas

    layer = LoraLayer(torch.zeros(4, 8), torch.zeros(8, 4))
    _apply_peft_alphas({"unet": {"a.b": layer}}, {"lora_adapter_metadata": raw})
    assert layer.alpha is None
    _apply_peft_alphas({"unet": {"a.b": layer}}, {"lora_adapter_metadata": '{"unet.lora_alpha": 8}'})
    assert layer.alpha == 8.0
