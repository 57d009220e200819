"""The models this server may load, each with its family: what `GET /models` lists and the page's pickers offer.

Three places, the same ones the path rules of documents.py allow: `builtin:` models, the `--models` folders
(ComfyUI's `models/` layout: `checkpoints/`, `diffusion_models/`, `text_encoders/`, `vae/`, `controlnet/`,
`loras/`, `embeddings/`, or any other subfolder; diffusers folders anywhere in them), and the Hugging Face
cache (repo ids with a downloaded snapshot). A file's family comes from its keys and shapes, as
`nodegraph inspect` finds it (models/single_file/detect.py, z_image.py, flux.py); a folder's from its
model_index.json or config.json. Only safetensors files are read (a pickle could run code), only their header.
Nothing outside a `--models` folder is offered: a link leading out of it is skipped.

What a graph input accepts (`accepts_of`) follows the input to the node ports it feeds (through included graphs
and repeat bodies) and intersects what each port takes (ACCEPTS): the SDXL graphs' `model` feeds
`SDXLCheckpoint` with `role: base`, so their pickers list SDXL base checkpoints only.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from typing import Any, Callable, Optional

from nodegraph.spec.reading import open_regular
from nodegraph.spec.location_ports import walk  # a graph level's nodes, repeat bodies included

BUILTIN = ({"value": "builtin:digits", "label": "builtin:digits (tiny, offline)", "family": "sd1",
            "source": "builtin", "kind": "pipeline"},)

# family -> what a person reads; also the order of the picker's groups
FAMILIES = {
    "sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x",
    "sdxl_base": "Stable Diffusion XL base", "sdxl_refiner": "Stable Diffusion XL refiner",
    "sd1_inpaint": "Stable Diffusion 1.x inpainting", "sd2_inpaint": "Stable Diffusion 2.x inpainting",
    "sdxl_base_inpaint": "Stable Diffusion XL base inpainting",
    "z_image": "Z-Image", "z_image_transformer": "Z-Image transformer",
    "qwen3_text_encoder": "Qwen3 text encoder (Z-Image)", "flux": "Flux", "flux_transformer": "Flux transformer",
    "sd3": "Stable Diffusion 3", "vae": "VAE (4-channel latents: SD, SDXL)",
    "vae16": "VAE (16-channel latents: Flux, Z-Image)", "controlnet": "ControlNet", "lora": "LoRA",
    "embedding": "Textual-inversion embedding", "unknown": "Other",
}
SD = ("sd1", "sd2", "sd1_inpaint", "sd2_inpaint")
SDXL = ("sdxl_base", "sdxl_refiner", "sdxl_base_inpaint")


def _unet_families(values: dict) -> tuple[str, ...]:
    return {"sd": SD, "sdxl": SDXL}.get(values.get("family") or "", SD + SDXL)


def _vae_override(values: dict) -> tuple[str, ...]:
    """A VAE replacing the model's: 16 latent channels when the model comes from a flow-matching checkpoint
    node (Z-Image, Flux, SD3), else 4 (SD, SDXL)."""
    flow = values.get("model<-") in ("ZImageCheckpoint", "FluxCheckpoint", "SD3Checkpoint")
    return ("vae16",) if flow else ("vae",)


def _transformer_override(values: dict) -> tuple[str, ...]:
    """A transformer replacing the model's: the checkpoint node's family (either one when `model` is not fed by
    a Z-Image or Flux checkpoint node)."""
    family = {"ZImageCheckpoint": "z_image_transformer", "FluxCheckpoint": "flux_transformer"}
    known = family.get(values.get("model<-"))
    return (known,) if known else tuple(family.values())


# (node type, port) -> the families the port takes, from the node's literal inputs (and, as "PORT<-", the type
# of the node whose output feeds PORT)
ACCEPTS: dict[tuple[str, str], Callable[[dict], tuple[str, ...]]] = {
    ("LoadUNet", "model"): _unet_families,
    ("LoadVAE", "model"): lambda v: SD + SDXL,
    ("LoadCLIP", "model"): lambda v: SD,  # one text encoder: SDXL graphs load theirs with LoadSDXLCLIP
    ("LoadScheduler", "model"): lambda v: SD + SDXL + ("z_image",),
    ("LoadVAE", "override"): _vae_override,
    ("SDXLCheckpoint", "model"): lambda v: ("sdxl_refiner",) if v.get("role") == "refiner" else ("sdxl_base",),
    ("ZImageCheckpoint", "model"): lambda v: ("z_image",),
    ("ZImageCheckpoint", "transformer"): lambda v: ("z_image_transformer",),
    ("ZImageCheckpoint", "text_encoder"): lambda v: ("qwen3_text_encoder",),
    ("ZImageCheckpoint", "vae"): lambda v: ("vae16",),
    ("LoadTransformer", "override"): _transformer_override,
    ("LoadTextEncoder", "override"): lambda v: ("qwen3_text_encoder",),
    ("FluxCheckpoint", "model"): lambda v: ("flux",),
    ("FluxCheckpoint", "transformer"): lambda v: ("flux_transformer",),
    ("FluxCheckpoint", "vae"): lambda v: ("vae16",),
    ("SD3Checkpoint", "model"): lambda v: ("sd3",),
    ("LoadControlNet", "model"): lambda v: ("controlnet",),
    ("LoadLoRA", "lora"): lambda v: ("lora",),
    ("LoadEmbedding", "embedding"): lambda v: ("embedding",),
}

MAX_DEPTH = 4  # folders below a --models folder that are looked into
MAX_ENTRIES = 5000  # files and folders looked at per --models folder: a huge tree is listed in part, quickly


class ModelList:
    """Lists the models; a file's family is read once while its size and modification time stay the same."""

    def __init__(self, model_dirs: list[pathlib.Path]):
        self.model_dirs = [pathlib.Path(p).resolve() for p in model_dirs]
        self._known: dict[tuple, Optional[str]] = {}
        self._lock = threading.Lock()

    def models(self) -> list[dict[str, Any]]:
        found = [dict(m) for m in BUILTIN]
        for root in self.model_dirs:
            found += self._folder_models(root)
        found += hub_models()
        for item in found:
            item["family_label"] = FAMILIES.get(item["family"], item["family"])
        order = list(FAMILIES)
        found.sort(key=lambda m: (order.index(m["family"]) if m["family"] in order else len(order),
                                  m["source"] != "builtin", m["label"].lower()))
        return found

    def _folder_models(self, root: pathlib.Path) -> list[dict[str, Any]]:
        found, seen = [], 0
        if not root.is_dir():
            return found
        for folder, dirs, files in os.walk(root):
            here = pathlib.Path(folder)
            depth = len(here.relative_to(root).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
            for name in [*dirs]:
                seen += 1
                path = here / name
                if not _inside(path, root):  # a link leading out: neither read nor offered
                    continue
                family = self._cached(path, folder_family, root)
                if family is not None:
                    dirs.remove(name)  # a diffusers folder is one model: its parts are not listed
                    found.append(_entry(path, root, family, "folder"))
            for name in sorted(files):
                seen += 1
                path = here / name
                if name.startswith(".") or path.suffix.lower() not in (".safetensors", ".sft"):
                    continue
                if not _inside(path, root):  # a link leading out of the folder: not offered
                    continue
                family = self._cached(path, file_family)
                found.append(_entry(path, root, family or "unknown", "file"))
            if seen > MAX_ENTRIES:
                break
        return found

    def _cached(self, path: pathlib.Path, read: Callable[..., Optional[str]], *args) -> Optional[str]:
        try:
            info = path.stat()
        except OSError:
            return None
        key = (str(path), info.st_size, info.st_mtime_ns, read.__name__)
        with self._lock:
            if key in self._known:
                return self._known[key]
        family = read(path, *args)
        with self._lock:
            if len(self._known) > 20_000:
                self._known.clear()
            self._known[key] = family
        return family


def _inside(path: pathlib.Path, root: pathlib.Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


def _entry(path: pathlib.Path, root: pathlib.Path, family: str, kind: str) -> dict[str, Any]:
    # the value is what a run takes: an absolute path inside the --models folder (documents.py's rule)
    label = path.relative_to(root).as_posix()
    return {"value": str(path), "label": label, "family": family, "source": "models", "kind": kind}


def file_family(path: pathlib.Path) -> Optional[str]:
    """The family of a safetensors file from its header's keys and shapes; None when it cannot be read."""
    from nodegraph.models.errors import CheckpointError
    from nodegraph.models.weight_files import read_safetensors_header

    try:
        header = read_safetensors_header(path, path.name)
    except (CheckpointError, OSError, ValueError):
        return None
    return family_of_shapes({k: tuple(v.shape) for k, v in header.tensors.items()})


def family_of_shapes(shapes: dict[str, tuple[int, ...]]) -> str:
    """The detection `nodegraph inspect` makes (flow-matching files first, then SD/SDXL checkpoints), then the
    parts a checkpoint is not: VAE, ControlNet, LoRA, embedding."""
    from nodegraph.models.errors import CheckpointError
    from nodegraph.models.single_file.detect import detect
    from nodegraph.models.single_file.flux import detect_flux_file
    from nodegraph.models.single_file.z_image import detect_flow_file

    flow = detect_flow_file(shapes)
    if flow is not None:
        return flow[0]
    if detect_flux_file(shapes) is not None:
        return "flux_transformer"
    try:
        return detect(shapes, "").name
    except CheckpointError:
        pass
    keys = list(shapes)
    if any(k.startswith("lora_") or ".lora_down." in k or ".lora_A." in k for k in keys):
        return "lora"
    if keys and (set(keys) <= {"emb_params", "clip_l", "clip_g"} or any(k.startswith("string_to_param") for k in keys)):
        return "embedding"
    if any(k.startswith(("control_model.", "controlnet_cond_embedding.")) or "input_hint_block." in k for k in keys):
        return "controlnet"
    for prefix in ("", "first_stage_model.", "vae."):
        conv = shapes.get(prefix + "decoder.conv_in.weight")
        if conv is not None and len(conv) == 4:
            return "vae16" if conv[1] == 16 else "vae"
    return "unknown"


def folder_family(path: pathlib.Path, root: Optional[pathlib.Path] = None) -> Optional[str]:
    """The family of a diffusers folder (model_index.json, or a component's config.json); None for any other.
    With `root`, a JSON file whose link leads out of it is not read."""
    index = _config(path / "model_index.json", root)
    if index is not None:
        return pipeline_family(path, str(index.get("_class_name", "")), index, root)
    config = _config(path / "config.json", root)
    if config is None:
        return None
    name = str(config.get("_class_name") or (config.get("architectures") or [""])[0])
    if name == "ControlNetModel":
        return "controlnet"
    if name.startswith("AutoencoderKL"):
        return "vae16" if config.get("latent_channels") == 16 else "vae"
    if name == "ZImageTransformer2DModel":
        return "z_image_transformer"
    if name == "FluxTransformer2DModel":
        return "flux_transformer"
    if name.startswith("Qwen3") or config.get("model_type") == "qwen3":
        return "qwen3_text_encoder"
    return None


def pipeline_family(path: pathlib.Path, class_name: str, index: dict, root: Optional[pathlib.Path] = None) -> str:
    if class_name.startswith("ZImage"):
        return "z_image"
    if class_name.startswith("Flux"):
        return "flux"
    if class_name.startswith("StableDiffusion3"):
        return "sd3"
    if not class_name.startswith("StableDiffusion"):
        return "unknown"
    unet = _config(path / "unet" / "config.json", root) or {}
    inpaint = "_inpaint" if unet.get("in_channels") == 9 else ""
    if unet.get("addition_embed_type") == "text_time" or class_name.startswith("StableDiffusionXL"):
        has_first = (index.get("text_encoder") or [None])[0] is not None
        return "sdxl_base" + inpaint if has_first else "sdxl_refiner"
    return ("sd2" if unet.get("cross_attention_dim") == 1024 else "sd1") + inpaint


def _config(path: pathlib.Path, root: Optional[pathlib.Path]) -> Optional[dict]:
    """A folder's JSON file, unless `root` is given and the file's link leads out of it (then None, unread)."""
    if root is not None and not _inside(path, root):
        return None
    return _json(path)


def _json(path: pathlib.Path) -> Optional[dict]:
    """A JSON object from a regular file of at most 1 MB (a config is a few kilobytes); None for anything else:
    a FIFO or a device is refused without blocking (spec/reading.py)."""
    try:
        with open_regular(path) as f:
            data = f.read(1_000_001)
        if len(data) > 1_000_000:
            return None
        data = json.loads(data.decode("utf-8"))
    except (OSError, ValueError):  # InputRefused is a ValueError
        return None
    return data if isinstance(data, dict) else None


def hub_models() -> list[dict[str, Any]]:
    """Repo ids the Hugging Face cache holds a snapshot of, with the family of their newest snapshot."""
    from huggingface_hub import constants

    cache = pathlib.Path(constants.HF_HUB_CACHE)
    found = []
    try:
        repos = sorted(p for p in cache.iterdir() if p.name.startswith("models--"))
    except OSError:
        return found
    for repo in repos[:MAX_ENTRIES]:
        snapshot = _newest_snapshot(repo / "snapshots")
        if snapshot is None:
            continue
        repo_id = repo.name[len("models--"):].replace("--", "/", 1)
        family = folder_family(snapshot) or "unknown"
        found.append({"value": repo_id, "label": repo_id, "family": family, "source": "hub cache",
                      "kind": "hub"})
    return found


def _newest_snapshot(folder: pathlib.Path) -> Optional[pathlib.Path]:
    try:
        snapshots = [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(snapshots, key=lambda p: p.stat().st_mtime, default=None)


def accepts_of(checked, name: str) -> Optional[list[str]]:
    """The families graph input `name` may take: the intersection over the ports it feeds that ACCEPTS knows;
    None when it feeds none of them (not a model input)."""
    sets = list(_port_families(checked, name))
    if not sets:
        return None
    common = set(sets[0]).intersection(*sets[1:])
    return [f for f in FAMILIES if f in common]


def _port_families(checked, name: str):
    from nodegraph.spec.document import Ref

    for node in walk(checked.nodes):
        for port, value in node.values.items():
            if not (isinstance(value, Ref) and value.scope == "inputs" and value.name == name):
                continue
            if node.kind == "graph" and node.subgraph is not None:
                yield from _port_families(node.subgraph, port)
            elif node.kind == "node" and node.node_type is not None:
                rule = ACCEPTS.get((node.node_type.name, port))
                if rule is not None:
                    yield rule(_known_values(node, checked))


def _known_values(node, checked) -> dict[str, Any]:
    """A node's literal inputs, and for an input fed by another node of the same graph, "PORT<-": its type."""
    from nodegraph.spec.document import Ref

    nodes = {n.id: n for n in walk(checked.nodes)}
    known: dict[str, Any] = {}
    for port, value in node.values.items():
        if not isinstance(value, Ref):
            known[port] = value
        elif value.scope == "node" and getattr(nodes.get(value.name), "node_type", None) is not None:
            known[port + "<-"] = nodes[value.name].node_type.name
    return known


def add_model_route(app, service) -> None:
    """GET /models (the token rule applies, as to every API route: app.py's Guard)."""
    from fastapi import Query

    from nodegraph.serve.documents import reject

    listing = ModelList(service.documents.model_dirs)

    @app.get("/models", summary="The models this server may load (builtin, --models folders, the hub cache), "
             "with their family; `family` keeps those of the given families")
    def models(family: Optional[list[str]] = Query(None)):
        unknown = [f for f in family or [] if f not in FAMILIES]
        if unknown:
            raise reject("bad_request", "family", f"unknown family {', '.join(unknown)[:200]}",
                         f"one of {', '.join(FAMILIES)}", status=400)
        found = listing.models()
        if family:
            found = [m for m in found if m["family"] in family]
        return {"models": found, "families": FAMILIES}
