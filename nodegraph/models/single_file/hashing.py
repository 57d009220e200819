"""Model file hashes: the full sha256, and the 10-hex short hash A1111 writes as `Model hash` and Civitai
searches by (A1111's "sha256 short hash": the first 10 hex digits of the file's sha256).

Hashing a multi-GB checkpoint takes seconds, so results are remembered, as A1111 does in its cache.json: in the
process, and in `model-hashes.json` under $NODEGRAPH_CACHE_DIR (default ~/.cache/nodegraph), keyed by the
file's absolute path, size and modification time, so a changed file is hashed again. An unwritable cache is
skipped silently: it only saves time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

SHORT = 10


def cache_file() -> Path:
    root = os.environ.get("NODEGRAPH_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                         Path.home() / ".cache") / "nodegraph"
    return Path(root) / "model-hashes.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(key: str, sha: str) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = sha
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(data, f)
        os.replace(f.name, path)  # atomic: a concurrent reader sees the old or the new file, never half of one
    except OSError:
        pass


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    key = f"{path}|{size}|{mtime_ns}"
    cached = _read_cache(cache_file()).get(key)
    if isinstance(cached, str) and len(cached) == 64:
        return cached
    with open(path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    _remember(key, sha)
    return sha


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 (hex), computed once while the file is unchanged."""
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
