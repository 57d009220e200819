"""LoRA and textual-inversion files (and the memory estimate) read a safetensors header only through the checked
reader: a header over the limit, or one that is a JSON list, is refused with a CheckpointError before safetensors
(or json) reads it whole."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from nodegraph.models.errors import CheckpointError

OVER_LIMIT = 17 << 20  # a header over spec/limits.py's 16 MiB, under safetensors' own 100 MB


def _file(tmp_path, name: str, header: bytes):
    path = tmp_path / name
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return str(path)


@pytest.fixture(params=["lora", "embedding", "estimate"])
def reader(request):
    from nodegraph.memory.estimate import layer_bytes
    from nodegraph.models.adapters.lora import read_lora
    from nodegraph.models.adapters.textual_inversion import read_embedding

    return {"lora": read_lora, "embedding": read_embedding, "estimate": lambda p: layer_bytes(p, 4)}[request.param]


def test_a_header_over_the_limit_is_refused_without_reading_it(reader, tmp_path):
    header = json.dumps({"__metadata__": {"pad": "x" * OVER_LIMIT}}).encode()
    path = _file(tmp_path, "big.safetensors", header)
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="limit"):
        reader(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20  # the header was not read into memory


def test_a_header_that_is_a_json_list_is_a_checkpoint_error(reader, tmp_path):
    path = _file(tmp_path, "list.safetensors", json.dumps([1, 2, 3]).encode())
    with pytest.raises(CheckpointError, match="JSON list"):
        reader(path)
