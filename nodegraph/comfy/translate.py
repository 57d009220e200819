"""A ComfyUI workflow (API form) → a nodegraph graph document, with every KSampler's loop in the open.

Each literal of the workflow becomes a typed graph input (its value the default); each covered node becomes
one or a few nodegraph nodes; each KSampler / KSamplerAdvanced becomes ComfySigmas → ComfyNoise → a `repeat`
over the steps whose body is the included step graph graphs/comfy/ksampler_step.yaml. Everything is checked
before anything is written: unsupported classes and sampler/scheduler names are refused together, in one
message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nodegraph.comfy.checkpoints import COVERED_FAMILIES, read_checkpoint
from nodegraph.comfy.classes import model_folder
from nodegraph.comfy.constants import fold_constants
from nodegraph.comfy.coverage import CHOICES, COVERED, MODEL_KINDS, OUTPUT_CLASSES, SHORT_NAMES, checked_values
from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.models import ModelPaths, missing_models
from nodegraph.comfy.reader import Workflow
from nodegraph.comfy.translate_cond import ConditioningTranslations
from nodegraph.comfy.translate_control import ControlTranslations, node_suffix
from nodegraph.comfy.translate_flow import FlowTranslations, flow_refusals
from nodegraph.comfy.translate_gligen import GLIGENTranslations
from nodegraph.comfy.translate_image import ImageTranslations
from nodegraph.comfy.translate_inpaint import InpaintTranslations
from nodegraph.comfy.translate_vision import VisionTranslations
from nodegraph.shipped_graphs import SHIPPED_GRAPHS

STEP_GRAPH = SHIPPED_GRAPHS / "comfy" / "ksampler_step.yaml"
STEP_GRAPH_NAME = "comfy_ksampler_step.yaml"  # written beside the imported graph
MAX_NODES = 2000  # ComfyUI's largest official templates have a few hundred
_SHORT, _MODEL_KIND = SHORT_NAMES, MODEL_KINDS


@dataclass
class Saved:
    """One image output of the workflow: graph output `output`, written as ComfyUI names its files."""
    node_id: str
    class_type: str
    output: str
    prefix: str


@dataclass
class Translation:
    document: dict[str, Any]
    saves: list[Saved] = field(default_factory=list)


def refusals(api: dict[str, dict[str, Any]]) -> list[str]:
    """Every node id/class and sampler/scheduler name the import does not cover, in workflow order."""
    out = []
    for node_id, entry in api.items():
        kind = entry["class_type"]
        if kind not in COVERED:
            out.append(f"node {node_id}: {kind}")
            continue
        for name, allowed in checked_values(kind).items():
            value = entry["inputs"].get(name)
            if isinstance(value, str) and value not in allowed:
                out.append(f"node {node_id} ({kind}): {name} {value!r}")
    return out + flow_refusals(api)


def translate(workflow: Workflow, paths: ModelPaths, step_graph: str = f"./{STEP_GRAPH_NAME}",
              checkpoint=read_checkpoint) -> Translation:
    """The graph document for `workflow`; `checkpoint(path)` describes a checkpoint file (a Checkpoint)."""
    if len(workflow.api) > MAX_NODES:
        raise ComfyError(f"{workflow.origin}: {len(workflow.api)} nodes is more than a workflow this import takes "
                         f"({MAX_NODES})")
    refused = refusals(workflow.api)
    if refused:
        raise ComfyError(f"{workflow.origin}: {len(refused)} part{'s' if len(refused) > 1 else ''} of this workflow "
                         f"nodegraph cannot run yet (nothing was run):\n  " + "\n  ".join(refused)
                         + "\n  see docs/comfyui.md for what is covered")
    workflow = replace(workflow, api=fold_constants(workflow.api, workflow.origin))  # ResolutionSelector
    missing_models(workflow, paths)
    try:
        return _Translator(workflow, paths, step_graph, checkpoint).run()
    except RecursionError:  # links are followed recursively; a chain this long is not a real workflow
        raise ComfyError(f"{workflow.origin}: the chain of linked nodes is too long to import") from None


class _Translator(ControlTranslations, ImageTranslations, ConditioningTranslations, InpaintTranslations,
                  GLIGENTranslations, FlowTranslations, VisionTranslations):
    def __init__(self, workflow: Workflow, paths: ModelPaths, step_graph: str, checkpoint):
        self.wf, self.api, self.paths, self.step_graph = workflow, workflow.api, paths, step_graph
        self.checkpoint_of = checkpoint
        self.inputs: dict[str, dict] = {}
        self.nodes: dict[str, dict] = {}
        self.outputs: dict[str, str] = {}
        self.done: dict[str, tuple] = {}
        self.visiting: set[str] = set()
        counts: dict[str, int] = {}
        for entry in self.api.values():
            for name, value in entry["inputs"].items():
                if not isinstance(value, list):
                    counts[name] = counts.get(name, 0) + 1
        self.unique = {name for name, n in counts.items() if n == 1}

    def where(self, node_id: str, name: str | None = None) -> str:
        kind = self.api[node_id]["class_type"]
        return f"{self.wf.origin}: node {node_id} ({kind})" + (f" input `{name}`" if name else "")

    def run(self) -> Translation:
        saves = []
        for node_id, entry in self.api.items():
            if entry["class_type"] in OUTPUT_CLASSES:
                saves.append(self.save(node_id))
        if not saves:
            raise ComfyError(f"{self.wf.origin}: the workflow has no SaveImage or PreviewImage node, so it has no "
                             f"output; add one in ComfyUI")
        doc = {"nodegraph": 1,
               "description": f"Imported from the ComfyUI workflow {Path(self.wf.origin).name} by `nodegraph "
                              f"import-comfy`. Inputs are the workflow's values, named after ComfyUI's inputs "
                              f"(suffixed with the node id where several nodes share a name).",
               "inputs": self.inputs, "nodes": self.nodes, "outputs": self.outputs}
        return Translation(doc, saves)

    # -- values ---------------------------------------------------------------------------------------------
    def literal(self, node_id: str, name: str, default: Any = None) -> Any:
        """A graph input holding the node's literal `name` (type-checked); returns its `$inputs.` reference."""
        entry = self.api[node_id]
        covered = COVERED[entry["class_type"]]
        if name not in entry["inputs"]:
            if default is None:
                raise ComfyError(f"{self.where(node_id, name)} is missing; set it in ComfyUI and save again")
            value = default
        else:
            value = entry["inputs"][name]
        if isinstance(value, list):
            raise ComfyError(f"{self.where(node_id, name)} is linked to node {value[0]}; nodegraph takes a literal "
                             f"value here (convert the input back to a widget)")
        want = covered.literals[name]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
            raise ComfyError(f"{self.where(node_id, name)}: expected {_TYPE_WORDS[want]}, got {value!r}")
        if name in CHOICES and value not in CHOICES[name]:
            raise ComfyError(f"{self.where(node_id, name)}: {value!r} is not one of {', '.join(CHOICES[name])}")
        spec: dict[str, Any] = {"type": want.__name__, "default": value,
                                "description": f"ComfyUI node {node_id} ({entry['class_type']}) `{name}`."}
        folder = model_folder(entry["class_type"], name)  # comfy/classes.py
        if folder:
            found = self.paths.find(folder, value, self.where(node_id, name))
            spec["default"] = str(found)
            spec["description"] = f"ComfyUI node {node_id} `{name}` {value!r}: a model file."
        if name in CHOICES:
            spec["choices"] = list(CHOICES[name])
        graph_name = name if name in self.unique else f"{name}_{node_suffix(node_id)}"
        self.inputs[graph_name] = spec
        return f"$inputs.{graph_name}"

    def link(self, node_id: str, name: str, want: str) -> Any:
        """The translated value of the output a linked input reads (checked to be of type `want`)."""
        value = self.api[node_id]["inputs"].get(name)
        if value is None:
            raise ComfyError(f"{self.where(node_id, name)} is not connected; connect it in ComfyUI")
        if not isinstance(value, list):
            raise ComfyError(f"{self.where(node_id, name)}: expected a link to a {want} output, got the value "
                             f"{value!r}")
        src_id, index = value
        outputs = self.translate(src_id)
        kinds = COVERED[self.api[src_id]["class_type"]].outputs
        if not 0 <= index < len(kinds):
            raise ComfyError(f"{self.where(node_id, name)}: node {src_id} has no output {index}")
        if outputs[index] is None:
            raise ComfyError(f"{self.where(node_id, name)}: node {src_id}'s {kinds[index]} output is not covered yet")
        if kinds[index] != want:
            raise ComfyError(f"{self.where(node_id, name)}: expected {want}, but node {src_id} output {index} is "
                             f"{kinds[index]}")
        return outputs[index]

    def translate(self, node_id: str) -> tuple:
        if node_id in self.done:
            return self.done[node_id]
        if node_id in self.visiting:
            raise ComfyError(f"{self.where(node_id)}: the workflow's links form a cycle through this node")
        self.visiting.add(node_id)
        kind = self.api[node_id]["class_type"]
        self.done[node_id] = getattr(self, f"_{kind}")(node_id, f"{_SHORT[kind]}{node_suffix(node_id)}")
        self.visiting.discard(node_id)
        return self.done[node_id]

    def save(self, node_id: str) -> Saved:
        kind = self.api[node_id]["class_type"]
        image = self.link(node_id, "images", "IMAGE")
        name = f"{_SHORT[kind]}{node_suffix(node_id)}"
        self.outputs[name] = image
        prefix = self.api[node_id]["inputs"].get("filename_prefix", "ComfyUI") if kind != "PreviewImage" \
            else "ComfyUI_temp"
        if not isinstance(prefix, str) or not prefix or ".." in prefix or prefix.startswith(("/", "\\")):
            raise ComfyError(f"{self.where(node_id, 'filename_prefix')}: {prefix!r} is not a file name prefix")
        return Saved(node_id, kind, name, prefix)

    # -- one method per covered class: returns its outputs by index -------------------------------------------
    def _CheckpointLoaderSimple(self, node_id, nid):
        model = self.literal(node_id, "ckpt_name")
        path = self.inputs[model.split(".", 1)[1]]["default"]
        ckpt = self.checkpoint_of(Path(path))
        if ckpt.family in self.CHECKPOINT_FLOWS:  # SD3 / SD3.5, Flux.1 all-in-one files (translate_sd3.py)
            return self.flow_checkpoint(node_id, nid, model, ckpt)
        if ckpt.family not in COVERED_FAMILIES:
            raise ComfyError(f"{self.where(node_id, 'ckpt_name')}: {Path(path).name} is a {ckpt.family} checkpoint; "
                             f"the ComfyUI import runs SD1.x, SD2.x and SDXL base and refiner checkpoints for now "
                             f"(see docs/comfyui.md)")
        config = "config" if sum(e["class_type"] == "CheckpointLoaderSimple" for e in self.api.values()) == 1 \
            else f"config_{node_suffix(node_id)}"
        self.inputs[config] = {"type": "str", "default": "", "description": (
            f"Node {node_id}'s checkpoint only: a diffusers folder or hub repo whose configs replace the ones "
            f"inferred from the file (needed for non-standard model sizes; empty = inferred).")}
        sdxl = ckpt.family.startswith("sdxl")
        for part, loader in (("unet", "LoadUNet"), ("clip", "LoadSDXLCLIP" if sdxl else "LoadCLIP"), ("vae", "LoadVAE")):
            self.nodes[f"{nid}_{part}"] = {"type": loader, "model": model, "config": f"$inputs.{config}"}
        self.checkpoint = (model, f"$inputs.{config}")
        family = {"sdxl_base": "sdxl"}.get(ckpt.family, ckpt.family).removesuffix("_inpaint")
        clip = {"te": f"${nid}_clip.text_encoder", "tok": f"${nid}_clip.tokenizer", "family": family}
        if ckpt.family == "sdxl_base":
            clip.update(te2=f"${nid}_clip.text_encoder_2", tok2=f"${nid}_clip.tokenizer_2")
        elif ckpt.family == "sdxl_refiner":  # bigG alone
            self.nodes[f"{nid}_clip"]["first_encoder"] = False
            clip.update(te=f"${nid}_clip.text_encoder_2", tok=f"${nid}_clip.tokenizer_2")
        if ckpt.clip_layers:
            clip["clip_layers"] = ckpt.clip_layers
        model = {"unet": f"${nid}_unet.unet", "prediction": ckpt.prediction,
                 "inpaint": ckpt.family.endswith("_inpaint")}
        return model, clip, f"${nid}_vae.vae"

    def _VAELoader(self, node_id, nid):
        base = getattr(self, "checkpoint", None)
        if base is None:  # the VAE's config comes from the workflow's checkpoint
            for other, entry in self.api.items():
                if entry["class_type"] == "CheckpointLoaderSimple":
                    self.translate(other)
                    base = getattr(self, "checkpoint", None)
                    break
        if base is None and (getattr(self, "checkpoint_is_flow", False)  # a Flux file: its folder configures it
                             or any(e["class_type"] == "UNETLoader" for e in self.api.values())):
            return self.flow_vae(node_id, nid)
        if base is None:
            raise ComfyError(f"{self.where(node_id)}: a VAELoader needs a CheckpointLoaderSimple (or a Z-Image "
                             f"UNETLoader) in the workflow")
        self.nodes[nid] = {"type": "LoadVAE", "model": base[0], "config": base[1],
                           "override": self.literal(node_id, "vae_name")}
        return (f"${nid}.vae",)

    def _LoraLoader(self, node_id, nid):
        model, clip = self.link(node_id, "model", "MODEL"), self.link(node_id, "clip", "CLIP")
        if "transformer" in model:  # a flow model (translate_sd3.py)
            return self.flow_lora(node_id, nid, model, clip)
        # SDXL: CLIP-L is the LoRA's `te1` part, bigG its `te2` (a refiner's only encoder is bigG)
        encoders = {"text_encoder_2": clip["te"]} if clip["family"] == "sdxl_refiner" else {"text_encoder": clip["te"]}
        if "te2" in clip:
            encoders["text_encoder_2"] = clip["te2"]
        self.nodes[nid] = {"type": "LoadLoRA", "unet": model["unet"], **encoders,
                           "lora": self.literal(node_id, "lora_name"),
                           "strength_model": self.literal(node_id, "strength_model"),
                           "strength_clip": self.literal(node_id, "strength_clip")}
        patched = {("te" if port == "text_encoder" or clip["family"] == "sdxl_refiner" else "te2"): f"${nid}.{port}"
                   for port in encoders}
        return dict(model, unet=f"${nid}.unet"), dict(clip, **patched)

    def _LoraLoaderModelOnly(self, node_id, nid):
        model = self.link(node_id, "model", "MODEL")
        if "transformer" in model:  # a flow model (translate_sd3.py)
            return self.flow_lora(node_id, nid, model, None)
        self.nodes[nid] = {"type": "LoadLoRA", "unet": model["unet"], "lora": self.literal(node_id, "lora_name"),
                           "strength_model": self.literal(node_id, "strength_model")}
        return (dict(model, unet=f"${nid}.unet"),)

    def _CLIPSetLastLayer(self, node_id, nid):
        clip = self.link(node_id, "clip", "CLIP")
        return (dict(clip, layer=self.literal(node_id, "stop_at_clip_layer")),)

    def _CLIPTextEncode(self, node_id, nid):
        return self._encode(node_id, nid, text=self.literal(node_id, "text"))

    def _CLIPTextEncodeSDXL(self, node_id, nid):
        """bigG reads text_g, CLIP-L text_l; the prompt carries its own size ids (comfy_extras/nodes_clip_sdxl.py)."""
        sizes = {name: self.literal(node_id, name) for name in ("width", "height", "crop_w", "crop_h",
                                                                 "target_width", "target_height")}
        return self._encode(node_id, nid, sdxl_only=True, text=self.literal(node_id, "text_g"),
                            text_l=self.literal(node_id, "text_l"), **sizes)

    def _CLIPTextEncodeSDXLRefiner(self, node_id, nid):
        return self._encode(node_id, nid, sdxl_only=True, text=self.literal(node_id, "text"),
                            aesthetic_score=self.literal(node_id, "ascore"), width=self.literal(node_id, "width"),
                            height=self.literal(node_id, "height"))

    def _encode(self, node_id, nid, sdxl_only=False, **inputs):
        clip = self.link(node_id, "clip", "CLIP")
        if sdxl_only and not clip["family"].startswith("sdxl"):
            raise ComfyError(f"{self.where(node_id, 'clip')}: this node encodes for SDXL, but the CLIP is a "
                             f"{clip['family']} one; use CLIPTextEncode")
        if clip["family"] in ("z_image", "flux", "sd3"):
            return self.flow_encode(node_id, nid, clip, inputs)
        self.nodes[nid] = {"type": "ComfyTextEncode", "text_encoder": clip["te"], "tokenizer": clip["tok"],
                           **inputs, "family": clip["family"]}
        if "te2" in clip:
            self.nodes[nid].update(text_encoder_2=clip["te2"], tokenizer_2=clip["tok2"])
        for key, port in (("layer", "stop_at_clip_layer"), ("clip_layers", "clip_layers")):
            if key in clip:
                self.nodes[nid][port] = clip[key]
        self._embeddings(node_id, nid)
        cond = {"embeddings": f"${nid}.embeddings", "pooled": f"${nid}.pooled"}
        return (dict(cond, size=f"${nid}.size") if sdxl_only else cond,)

    def _EmptyLatentImage(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyEmptyLatent", "width": self.literal(node_id, "width"),
                           "height": self.literal(node_id, "height"),
                           "batch_size": self.literal(node_id, "batch_size", 1)}
        return (f"${nid}.latents",)

    def _KSampler(self, node_id, nid):
        return self._sampler(node_id, nid, seed="seed", schedule={"denoise": self.literal(node_id, "denoise", 1.0)},
                             add_noise="enable")

    def _KSamplerAdvanced(self, node_id, nid):
        schedule = {"start_step": self.literal(node_id, "start_at_step", 0),
                    "end_step": self.literal(node_id, "end_at_step", 10000),
                    "return_with_leftover_noise": self.literal(node_id, "return_with_leftover_noise", "disable")}
        return self._sampler(node_id, nid, seed="noise_seed", schedule=schedule,
                             add_noise=self.literal(node_id, "add_noise", "enable"))

    def _KSamplerSelect(self, node_id, nid):
        return (self.literal(node_id, "sampler_name"),)

    def _BasicScheduler(self, node_id, nid):
        model = self.link(node_id, "model", "MODEL")  # ComfyUI reads the σ table from the model; SD1.x's is built in
        if "transformer" in model:
            return (self.flow_sigmas(node_id, nid, model),)
        self.nodes[nid] = {"type": "ComfySigmas", "scheduler": self.literal(node_id, "scheduler"),
                           "steps": self.literal(node_id, "steps"), "denoise": self.literal(node_id, "denoise", 1.0)}
        return (nid,)

    def _SamplerCustom(self, node_id, nid):
        add_noise = self.api[node_id]["inputs"].get("add_noise", True)
        if not isinstance(add_noise, bool):
            raise ComfyError(f"{self.where(node_id, 'add_noise')}: expected true or false, got {add_noise!r}")
        latents = self._sampler(node_id, nid, seed="noise_seed", add_noise="enable" if add_noise else "disable",
                                sampler=self.link(node_id, "sampler", "SAMPLER"),
                                sigmas=self.link(node_id, "sigmas", "SIGMAS"))
        return latents + (None,)  # its `denoised_output` (the last x₀ estimate) is not covered

    def _sampler(self, node_id, nid, *, seed, add_noise, schedule=None, sampler=None, sigmas=None):
        """ComfySigmas (or the given SIGMAS node) → ComfyNoise → a repeat over the included step graph."""
        model = self.link(node_id, "model", "MODEL")
        if "transformer" in model:
            return self.flow_sampler(node_id, nid, model, seed)
        positive = self.link(node_id, "positive", "CONDITIONING")
        negative = self.link(node_id, "negative", "CONDITIONING")
        latent = self.link(node_id, "latent_image", "LATENT")
        if positive.get("control_to_uncond") and not negative.get("control"):
            negative = dict(negative, control=positive["control"])
        if sigmas is None:
            sigmas = f"{nid}_sigmas"
            self.nodes[sigmas] = {"type": "ComfySigmas", "scheduler": self.literal(node_id, "scheduler"),
                                  "steps": self.literal(node_id, "steps"), **schedule,
                                  "sampler": self.literal(node_id, "sampler_name")}  # dpm_2/uni_pc: own schedule
        sampler, seed = sampler or self.literal(node_id, "sampler_name"), self.literal(node_id, seed)
        positive, negative = self.with_unclip(nid, seed, positive, negative)  # comfy/translate_vision.py
        self.nodes[f"{nid}_noise"] = {"type": "ComfyNoise", "latents": latent, "sigmas": f"${sigmas}.sigmas",
                                      "seed": seed, "add_noise": add_noise}
        inpaint = self.inpaint(node_id, nid, model, latent, seed)
        self.nodes[nid] = {
            "type": "repeat",
            "description": f"ComfyUI's {self.api[node_id]['class_type']} {node_id}: one iteration per σ step.",
            "over": f"${sigmas}.steps",
            "state": {"latents": f"${nid}_noise.latents", "history": f"${nid}_noise.history"},
            "nodes": {f"{nid}_step": {
                "type": self.step_graph, "unet": model["unet"], "positive": positive.get("embeddings"),
                "negative": negative.get("embeddings"), "positive_pooled": positive.get("pooled"),
                "negative_pooled": negative.get("pooled"),
                "cfg": self.literal(node_id, "cfg"), "sampler": sampler,
                "latents": "$state.latents", "history": "$state.history", "sigmas": f"${sigmas}.sigmas",
                "index": "$loop.item", "noise": f"${nid}_noise.noise",
                **({"prediction": model["prediction"]} if model.get("prediction", "eps") != "eps" else {}),
                **({"inpaint": inpaint} if inpaint else {}),
                **{f"{half}_{key}": cond[key] for half, cond in (("positive", positive), ("negative", negative))
                   for key in ("control", "size", "list") if cond.get(key)}}},
            "next": {"latents": f"${nid}_step.latents", "history": f"${nid}_step.history"},
        }
        return (f"${nid}.latents",)

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
