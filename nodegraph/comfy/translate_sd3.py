"""ComfyUI's all-in-one flow-model checkpoints (SD3 / SD3.5, Flux.1) and their sampling nodes → nodegraph nodes: a
mixin of translate.py's translator.

CheckpointLoaderSimple of an SD3 / SD3.5 file (`model.diffusion_model.joint_blocks.…`, `first_stage_model.`, and
`text_encoders.{clip_l,clip_g,t5xxl}.transformer.` where the file holds them) gives SD3Checkpoint + LoadTransformer,
LoadSD3CLIP (+ LoadSD3T5 when the file holds a T5: ComfyUI's SD3 CLIP then has one, else none) and LoadVAE, all
reading the file and configured from the graph input `config` (a diffusers SD3 folder or hub repo; empty = the hub
repo of the detected model). Its MODEL samples on ComfyUI's discrete flow (shift 3, multiplier 1000), its CLIP encodes
with ComfySD3TextEncode (nodes/comfy_sd3.py). An all-in-one Flux.1 file loads through the Flux split-file loaders
with the file as every part's override. TripleCLIPLoader reads ComfyUI's split SD3 text encoder files (one CLIP-L,
one bigG, one T5-XXL, in any order, told apart by their tensors), configured from the graph input `config_text`.
ModelSamplingSD3 sets an SD3 model's shift; ModelSamplingFlux sets a Flux model's μ from the image size
(ComfyFluxShift). The KSampler loop is translate_flow.py's.
"""

from __future__ import annotations

from nodegraph.comfy.classes import comfy_class
from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.flow import FLUX_SHIFT, SD3_LATENT, SD3_MULTIPLIER, SD3_SHIFT
from nodegraph.comfy.translate_control import node_suffix


class CheckpointFlowTranslations:
    CHECKPOINT_FLOWS = ("sd3", "flux_dev", "flux_schnell")  # read_checkpoint families CheckpointLoaderSimple runs here

    def flow_checkpoint(self, node_id, nid, model: str, ckpt) -> tuple:
        """CheckpointLoaderSimple's (MODEL, CLIP, VAE) for an SD3 or Flux.1 all-in-one file (graph input `model`,
        described by `ckpt`, a comfy/checkpoints.py Checkpoint)."""
        family = ckpt.family
        if family == "sd3":
            return self._sd3_checkpoint(node_id, nid, model, ckpt.text_encoders)
        self.checkpoint_is_flow = True  # the Flux folder input is `config`, not `config_flux`
        config = self.flow_config("flux", node_id, "black-forest-labs/FLUX.1-schnell" if family == "flux_schnell"
                                  else None)
        self.nodes[f"{nid}_model"] = {"type": "LoadTransformer", "model": config, "override": model}
        self.nodes[f"{nid}_clip"] = {"type": "LoadFluxText", "model": config, "clip_override": model,
                                     "t5_override": model}
        self.nodes[f"{nid}_vae"] = {"type": "LoadVAE", "model": config, "override": model}
        sampling = {"sampling": "flux", "shift": FLUX_SHIFT} if family == "flux_dev" else \
            {"sampling": "discrete", "shift": 1.0}  # dev: ModelSamplingFlux μ 1.15; schnell: discrete flow, shift 1
        clip = {"family": "flux", **{key: f"${nid}_clip.{key}" for key in ("clip", "clip_tokenizer", "t5",
                                                                         "t5_tokenizer")}}
        return ({"transformer": f"${nid}_model.transformer", "family": "flux", "multiplier": 1.0, **sampling},
                clip, f"${nid}_vae.vae")

    def _sd3_checkpoint(self, node_id, nid, model: str, held) -> tuple:
        held = set(("clip_l", "clip_g", "t5xxl") if held is None else held)
        config = "config" if sum(e["class_type"] == "CheckpointLoaderSimple" for e in self.api.values()) == 1 \
            else f"config_{node_suffix(node_id)}"
        self.inputs[config] = {"type": "str", "default": "", "description": (
            f"Node {node_id}'s SD3 checkpoint: the diffusers SD3 folder or hub repo of its tokenizers and configs "
            f"(empty = the hub repo of the detected model).")}
        self.nodes[f"{nid}_check"] = {"type": "SD3Checkpoint", "model": model, "config": f"$inputs.{config}",
                                      "input_name": model.split(".", 1)[1]}
        source = {"model": f"${nid}_check.model", "config": f"$inputs.{config}"}
        self.nodes[f"{nid}_model"] = {"type": "LoadTransformer", **source}
        self.nodes[f"{nid}_vae"] = {"type": "LoadVAE", **source}
        self.checkpoint = (model, f"$inputs.{config}")  # a VAELoader beside it is configured from it
        clip = {"family": "sd3", "held": sorted(held)}
        if {"clip_l", "clip_g"} <= held:
            self.nodes[f"{nid}_clip"] = {"type": "LoadSD3CLIP", **source}
            clip.update({key: f"${nid}_clip.{port}" for key, port in (
                ("te", "text_encoder"), ("tok", "tokenizer"), ("te2", "text_encoder_2"), ("tok2", "tokenizer_2"))})
        if "t5xxl" in held:
            self.nodes[f"{nid}_t5"] = {"type": "LoadSD3T5", **source}
            clip.update(te3=f"${nid}_t5.text_encoder_3", tok3=f"${nid}_t5.tokenizer_3")
        model_out = {"transformer": f"${nid}_model.transformer", "family": "sd3", "sampling": "discrete",
                     "shift": SD3_SHIFT, "multiplier": SD3_MULTIPLIER, "latent": SD3_LATENT}
        return model_out, clip, f"${nid}_vae.vae"

    def sd3_unet(self, node_id, nid, override: str) -> dict:
        """UNETLoader of SAI's SD3 / SD3.5 transformer file (diffusion_models/, no prefix), configured from the SD3
        folder or repo `config` (its transformer config must be the file's: SD3.5 Large by default)."""
        self.nodes[nid] = {"type": "LoadTransformer", "model": self.flow_config("sd3", node_id), "override": override}
        return {"transformer": f"${nid}.transformer", "family": "sd3", "sampling": "discrete", "shift": SD3_SHIFT,
                "multiplier": SD3_MULTIPLIER, "latent": SD3_LATENT}

    def sd3_encode(self, node_id, nid, clip: dict, text: str) -> dict:
        """CLIPTextEncode with an SD3 CLIP: ComfySD3TextEncode (CLIP-L + bigG, and T5 where the CLIP has one)."""
        if "te" not in clip:
            raise ComfyError(f"{self.where(node_id, 'clip')}: the SD3 checkpoint holds no CLIP-L and bigG text "
                             f"encoders ({', '.join(clip['held']) or 'none'} found); load a checkpoint that has them")
        if "layer" in clip:
            raise ComfyError(f"{self.where(node_id, 'clip')}: CLIPSetLastLayer on an SD3 CLIP is not covered yet; "
                             f"remove it")
        self.nodes[nid] = {"type": "ComfySD3TextEncode", "text_encoder": clip["te"], "tokenizer": clip["tok"],
                           "text_encoder_2": clip["te2"], "tokenizer_2": clip["tok2"], "text": text,
                           **({"text_encoder_3": clip["te3"], "tokenizer_3": clip["tok3"]} if "te3" in clip else {})}
        return {"embeddings": f"${nid}.embeddings", "pooled": f"${nid}.pooled", "flow": "sd3"}

    def flow_lora(self, node_id, nid, model: dict, clip: dict | None) -> tuple:
        """LoraLoader (`clip` given) / LoraLoaderModelOnly on an SD3 or Flux model: LoadLoRA's `transformer` port
        (kohya, peft and ComfyUI names: models/adapters/transformer_lora.py) and the CLIP encoders (SD3: CLIP-L and
        bigG; Flux: CLIP-L); a model-only loader leaves the LoRA's text-encoder layers out, as ComfyUI does."""
        if model.get("family") not in ("sd3", "flux"):
            raise ComfyError(f"{self.where(node_id, 'model')}: LoRAs on {model.get('family')} models are not covered "
                             f"by the ComfyUI import yet (SD3 / SD3.5 and Flux.1 only)")
        node = {"type": "LoadLoRA", "transformer": model["transformer"], "lora": self.literal(node_id, "lora_name"),
                "strength_model": self.literal(node_id, "strength_model"), "strength_clip": 0.0}
        encoders = {}  # the CLIP dict's key → LoadLoRA's port
        if clip is not None and clip.get("family") == "flux":
            encoders = {"clip": "text_encoder"}
        elif clip is not None and "te" in clip:
            encoders = {"te": "text_encoder", "te2": "text_encoder_2"}
        if clip is not None:
            node.update({port: clip[key] for key, port in encoders.items()},
                        strength_clip=self.literal(node_id, "strength_clip"))
        self.nodes[nid] = node
        patched = dict(model, transformer=f"${nid}.transformer")
        if clip is None:
            return (patched,)
        return patched, dict(clip, **{key: f"${nid}.{port}" for key, port in encoders.items()})

    @comfy_class("ModelSamplingSD3", widgets=("shift",), literals={"shift": float}, outputs=("MODEL",),
                 links=("model",), short="sampling_sd3")
    def _ModelSamplingSD3(self, node_id, nid):
        """comfy_extras/nodes_model_advanced.py: discrete flow with `shift`, multiplier 1000 (SD3 models only)."""
        model = self.link(node_id, "model", "MODEL")
        if model.get("family") != "sd3":
            raise ComfyError(f"{self.where(node_id, 'model')}: ModelSamplingSD3 is covered on SD3 / SD3.5 models "
                             f"only (Z-Image: ModelSamplingAuraFlow; Flux: ModelSamplingFlux)")
        return (dict(model, sampling="discrete", shift=self.literal(node_id, "shift"), multiplier=SD3_MULTIPLIER),)

    @comfy_class("ModelSamplingFlux", widgets=("max_shift", "base_shift", "width", "height"),
                 literals={"max_shift": float, "base_shift": float, "width": int, "height": int},
                 outputs=("MODEL",), links=("model",), short="sampling_flux")
    def _ModelSamplingFlux(self, node_id, nid):
        """comfy_extras/nodes_model_advanced.py: ModelSamplingFlux with μ linear in the image's token count
        (ComfyFluxShift), on Flux.1 models."""
        model = self.link(node_id, "model", "MODEL")
        if model.get("family") != "flux":
            raise ComfyError(f"{self.where(node_id, 'model')}: ModelSamplingFlux is covered on Flux.1 models only")
        self.nodes[nid] = {"type": "ComfyFluxShift", **{name: self.literal(node_id, name)
                                                         for name in ("max_shift", "base_shift", "width", "height")}}
        return (dict(model, sampling="flux", shift=f"${nid}.shift", multiplier=1.0),)

    @comfy_class("TripleCLIPLoader", widgets=("clip_name1", "clip_name2", "clip_name3"),
                 literals={"clip_name1": str, "clip_name2": str, "clip_name3": str}, outputs=("CLIP",),
                 short="triple_clip", models={"clip_name3": "text_encoders"})
    def _TripleCLIPLoader(self, node_id, nid):
        """comfy_extras/nodes_sd3.py: SD3's CLIP from three text_encoders/ files, each told by its tensors."""
        files: dict[str, list[str]] = {}
        for name in ("clip_name1", "clip_name2", "clip_name3"):
            ref, kind = self._flow_file(node_id, name, ("clip_l", "clip_g", "t5"),
                                        "a CLIP-L, bigG (clip_g) or T5-XXL text encoder")
            files.setdefault(kind, []).append(ref)
        if any(len(refs) != 1 for refs in files.values()) or len(files) != 3:
            found = ", ".join(f"{len(refs)} {kind}" for kind, refs in sorted(files.items()))
            raise ComfyError(f"{self.where(node_id)}: TripleCLIPLoader takes one CLIP-L, one bigG (clip_g) and one "
                             f"T5-XXL file; these are {found}")
        if "config_text" not in self.inputs:
            self.inputs["config_text"] = {"type": "str", "default": "stabilityai/stable-diffusion-3.5-large",
                                          "description": "The diffusers SD3 folder or hub repo TripleCLIPLoader's "
                                                         "text encoder files are configured from (tokenizers, "
                                                         "configs; the same for every SD3 / SD3.5 model)."}
        source = {"model": "$inputs.config_text"}
        self.nodes[nid] = {"type": "LoadSD3CLIP", **source, "override": files["clip_l"][0],
                           "override_2": files["clip_g"][0]}
        self.nodes[f"{nid}_t5"] = {"type": "LoadSD3T5", **source, "override": files["t5"][0]}
        return ({"family": "sd3", "held": ["clip_g", "clip_l", "t5xxl"], "te": f"${nid}.text_encoder",
                 "tok": f"${nid}.tokenizer", "te2": f"${nid}.text_encoder_2", "tok2": f"${nid}.tokenizer_2",
                 "te3": f"${nid}_t5.text_encoder_3", "tok3": f"${nid}_t5.tokenizer_3"},)
