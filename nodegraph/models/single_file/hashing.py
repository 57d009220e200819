"""Model file hashes: the full sha256, and the 10-hex short hash A1111 writes as `Model hash` and Civitai
searches by (A1111's "sha256 short hash": the first 10 hex digits of the file's sha256)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

SHORT = 10


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 (hex), computed once per process while the file is unchanged."""
    p = Path(path).expanduser().resolve()
    stat = p.stat()
    return _sha256(str(p), stat.st_size, stat.st_mtime_ns)


def short_hash(path: str | os.PathLike) -> str:
    return file_sha256(path)[:SHORT]


def model_hashes(inputs: dict) -> tuple[str, str] | None:
    """(short hash, sha256) of a run's `model` input when it is a single file, else None: what the PNG metadata
    records so that the image can be traced to the exact file."""
    from nodegraph.models.single_file.loader import is_single_file

    model = inputs.get("model")
    if not is_single_file(model):
        return None
    sha = file_sha256(model)
    return sha[:SHORT], sha
