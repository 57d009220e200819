"""Find models by ComfyUI's names under `--models` dirs laid out as ComfyUI's `models/`, or extra_model_paths.yaml.

A name may hold subfolders (`sd15/model.safetensors`, either slash); it never leaves the folder it is looked
up in. ComfyUI's folder names: checkpoints, loras, vae, controlnet, embeddings, upscale_models, diffusion_models (or its
older name unet), text_encoders (or clip).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodegraph.comfy.errors import ComfyError

KINDS = ("checkpoints", "loras", "vae", "controlnet", "embeddings", "upscale_models", "diffusion_models",
         "text_encoders", "input")  # input: LoadImage's
ALIASES = {"diffusion_models": ("diffusion_models", "unet"), "text_encoders": ("text_encoders", "clip")}  # + legacy


@dataclass
class ModelPaths:
    roots: list[Path] = field(default_factory=list)  # ComfyUI `models/` folders
    extra: dict[str, list[Path]] = field(default_factory=dict)  # kind → folders, from extra_model_paths.yaml

    inputs: list[Path] = field(default_factory=list)  # where LoadImage's files are (ComfyUI's input/ folder)
    allow_pickle: bool = False  # the run's `--set allow_pickle=true`: a ControlNetLoader's pickle may be read

    def folders(self, kind: str) -> list[Path]:
        if kind == "input":
            return list(self.inputs)
        names = ALIASES.get(kind, (kind,))
        return [root / name for root in self.roots for name in names] + [
            folder for name in names for folder in self.extra.get(name, [])]

    def find(self, kind: str, name: str, where: str) -> Path:
        """The file for `name` in the first folder of `kind` that has it; ComfyError listing every place looked."""
        parts = Path(name.replace("\\", "/")).parts
        if not name or Path(name.replace("\\", "/")).is_absolute() or ".." in parts:
            raise ComfyError(f"{where}: {name!r} is not a model name (a file name under {kind}/, no `..`, not "
                             f"absolute)")
        looked = []
        for folder in self.folders(kind):
            candidate = folder.joinpath(*parts)
            looked.append(str(candidate))
            if candidate.is_file():
                return candidate.resolve()
        what, fix = (("image", "pass --input DIR, ComfyUI's input/ folder holding it") if kind == "input" else
                     ("model", f"pass --models DIR whose {kind}/ holds it"))
        if not looked:
            raise ComfyError(f"{where}: {name!r} needs a folder to look in: {fix}"
                             + ("" if kind == "input" else " (or --extra-model-paths extra_model_paths.yaml)"))
        raise ComfyError(f"{where}: {what} {name!r} not found; looked in:\n    " + "\n    ".join(looked)
                         + f"\n  put the file in one of them, or {fix}")


def read_extra_model_paths(path: str | Path) -> dict[str, list[Path]]:
    """ComfyUI's extra_model_paths.yaml: sections of `base_path` + kind: path(s), one per line; relative paths
    are taken from base_path, and base_path from the yaml's folder."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ComfyError(f"{path}: cannot read extra model paths ({exc})") from None
    except yaml.YAMLError as exc:
        raise ComfyError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ComfyError(f"{path}: expected sections like `comfyui: {{base_path: ..., checkpoints: ...}}`")
    out: dict[str, list[Path]] = {}
    for section_name, section in doc.items():
        if not isinstance(section, dict):
            raise ComfyError(f"{path}: section `{section_name}` is not a mapping")
        base = path.parent / str(section.get("base_path", "")).strip()
        for kind, value in section.items():
            if kind in ("base_path", "is_default") or not isinstance(value, str):
                continue
            kind = "controlnet" if kind == "t2i_adapter" else kind
            for line in value.splitlines():
                if line.strip():
                    out.setdefault(kind, []).append((base / line.strip()).expanduser())
    return out


def missing_models(workflow, paths: ModelPaths) -> None:
    """Every model and image file the workflow names that is not found, in one message (each with the folders
    looked in), before anything loads."""
    from nodegraph.comfy.classes import file_inputs  # the classes' tables, filled by the translator modules
    from nodegraph.comfy.coverage import COVERED

    missing = []
    for node_id, entry in workflow.api.items():
        for name, kind in file_inputs(entry["class_type"]).items():  # comfy/classes.py
            value = entry["inputs"].get(name)
            if isinstance(value, str) and entry["class_type"] in COVERED:
                try:
                    paths.find(kind, value, f"{workflow.origin}: node {node_id} ({entry['class_type']}) input `{name}`")
                except ComfyError as exc:
                    missing.append(str(exc))
    if len(missing) == 1:
        raise ComfyError(missing[0])
    if missing:
        raise ComfyError(f"{len(missing)} files of this workflow are missing (nothing was run):\n"
                         + "\n".join(missing))
