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
