"""What the A1111 `parameters` text says about conditioning: `<lora:name:w>` on the prompt line (what users paste
back into A1111), and `Clip skip`, `Lora hashes`, `TI hashes` fields, from a run's graph inputs."""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any


def prompt_suffix(inputs: dict[str, Any]) -> str:
    lora = inputs.get("lora")
    if not lora:
        return ""
    return f" <lora:{_stem(lora)}:{float(inputs.get('lora_scale', 1.0)):g}>"


def fields(inputs: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if inputs.get("clip_skip"):
        out.append(("Clip skip", int(inputs["clip_skip"]) + 1))  # A1111 counts the last layer as 1
    if inputs.get("lora"):
        out.append(("Lora hashes", f'"{_stem(inputs["lora"])}: {_weights_hash(inputs["lora"])}"'))
    if inputs.get("embedding"):
        out.append(("TI hashes", f'"{_stem(inputs["embedding"])}: {_file_hash(inputs["embedding"])}"'))
    return [(k, v) for k, v in out if v is not None]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0]


def _weights_hash(path: str) -> str | None:
    """A1111's LoRA short hash: sha256 of a .safetensors file past its JSON header, first 12 hex digits."""
    try:
        with open(path, "rb") as f:
            (header,) = struct.unpack("<Q", f.read(8))
            f.seek(8 + header)
            return _sha256(f)
    except (OSError, struct.error):
        return None


def _file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return _sha256(f)
    except OSError:
        return None


def _sha256(f) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()[:12]
