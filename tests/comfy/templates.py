"""ComfyUI's official SD-family templates as the pinned `comfyui-workflow-templates` package ships them, run with
tiny random single files in ComfyUI's folder layout (named as the template names them)."""

from __future__ import annotations

import os
from pathlib import Path

import comfyui_workflow_templates  # the test extra's pinned copy (0.1.95 holds all 25 SD-family templates)

TEMPLATES = Path(comfyui_workflow_templates.get_templates_path())


def template(name: str) -> Path:
    return TEMPLATES / f"{name}.json"


def models_folder(root: Path, files: dict[str, Path]) -> Path:
    """root/models with each `kind/name` of `files` linked to the given tiny file; returns root/models."""
    models = root / "models"
    for relative, source in files.items():
        target = models / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.symlink(source, target)
    return models


def sets(**values) -> list[str]:
    """`--set` arguments: n5_width=64 → `5.width=64`, allow_pickle=True → `allow_pickle=true`."""
    out = []
    for key, value in values.items():
        value = str(value).lower() if isinstance(value, bool) else value
        if key.startswith("n") and "_" in key and key[1:].split("_", 1)[0].isdigit():
            node, name = key[1:].split("_", 1)
            out += ["--set", f"{node}.{name}={value}"]
        else:
            out += ["--set", f"{key}={value}"]
    return out


def run_template(folder: Path, name: str, models: Path, config: Path, *extra: str) -> list:
    """`nodegraph run` on the template → every image it saves, as (H, W, 3) uint8 arrays in file-name order."""
    import numpy as np
    from PIL import Image

    from nodegraph.cli import main

    from nodegraph.comfy.reader import read_workflow

    loaders = [k for k, e in read_workflow(template(name)).api.items() if e["class_type"] == "CheckpointLoaderSimple"]
    configs = [f"config={config}"] if len(loaders) == 1 else [f"config_{k}={config}" for k in loaders]
    out = folder / "out"
    code = main(["run", str(template(name)), "--models", str(models), "--out", str(out), "-q",
                 *[a for c in configs for a in ("--set", c)], *extra])
    assert code == 0
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.rglob("*.png"))]


def small_sizes(name: str, size: int = 64, steps: int = 2) -> list[str]:
    """`--set`s making a template tiny: every EmptyLatentImage size-by-size, every KSampler `steps` steps."""
    from nodegraph.comfy.reader import read_workflow

    values = {}
    for node_id, entry in read_workflow(template(name)).api.items():
        if entry["class_type"] == "EmptyLatentImage":
            values.update({f"n{node_id}_width": size, f"n{node_id}_height": size})
        if entry["class_type"] in ("KSampler", "KSamplerAdvanced"):
            values[f"n{node_id}_steps"] = steps
    return sets(**values)


def checkpoints_of(name: str) -> set[str]:
    from nodegraph.comfy.reader import read_workflow

    return {e["inputs"]["ckpt_name"] for e in read_workflow(template(name)).api.values()
            if e["class_type"] == "CheckpointLoaderSimple"}
