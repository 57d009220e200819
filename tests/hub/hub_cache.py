"""A hand-built huggingface_hub cache: graph repos at given commits, laid out as huggingface_hub lays them."""

import hashlib
import os
import textwrap
from pathlib import Path

REPO = "alice/graphs"
COMMIT_V1 = "1111111111111111111111111111111111111111"
COMMIT_V2 = "2222222222222222222222222222222222222222"

# graph.yaml is the same at both commits; only the file it includes differs, so a result tells which
# commit the include was read from.
GRAPH = """
    description: Scales a number by the factor in parts/scale.yaml.
    inputs:
      x: {type: float, default: 2.0, description: The number to scale.}
    nodes:
      scale: {type: ./parts/scale.yaml, x: $inputs.x}
    outputs: {y: $scale.y}
    """
SCALE = """
    inputs:
      x: {type: float}
    nodes:
      k: {type: Float, value: %s}
      y: {type: Multiply, a: $inputs.x, b: $k.value}
    outputs: {y: $y.value}
    """
IMAGE = """
    inputs:
      value: {type: float, default: 0.004, min: 0, max: 0.01}
    nodes:
      scale: {type: ./parts/scale.yaml, x: $inputs.value}
      image: {type: SolidImage, value: $scale.y, width: 8, height: 8}
    outputs: {image: $image.image}
    """


def add_commit(cache: Path, repo: str, commit: str, files: dict[str, str], refs=("main",)) -> None:
    """Files stored as huggingface_hub stores them: content-addressed blobs, symlinked from the snapshot."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for name, text in files.items():
        data = textwrap.dedent(text).lstrip().encode()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (root / "refs" / ref).write_text(commit)


def move_ref(cache: Path, repo: str, ref: str, commit: str) -> None:
    (cache / f"models--{repo.replace('/', '--')}" / "refs" / ref).write_text(commit)
