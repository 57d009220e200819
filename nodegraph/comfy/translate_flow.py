"""ComfyUI's nodes for flow-matching models (Z-Image, Flux.1) → nodegraph nodes: a mixin of translate.py's translator.

UNETLoader, CLIPLoader (type `lumina2`, a Qwen3 file), DualCLIPLoader (type `flux`, clip_l + t5xxl files) and
VAELoader read ComfyUI's split files (weights only); the tokenizers and the configs come from a diffusers folder or
hub repo of the family, the graph input `config` (default Tongyi-MAI/Z-Image-Turbo or black-forest-labs/FLUX.1-dev).
A MODEL of this kind is `{"transformer": ref, "family", "sampling", "shift", "multiplier"}`; a KSampler on it
becomes ComfyFlowSigmas → ComfyFlowNoise → a repeat of ComfyFlowDenoise → ComfyFlowSamplerStep (nodes/comfy_flow.py),
with ComfyUI's σ, noise and CFG rules for flow models (nodegraph/comfy/flow.py).
"""

from __future__ import annotations

from pathlib import Path

from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.flow import FLOW_SAMPLERS, FLUX_GUIDANCE, FLUX_LATENT, FLUX_SHIFT, Z_IMAGE_SHIFT
from nodegraph.comfy.translate_sd3 import CheckpointFlowTranslations

# family → (the check node, the default folder/repo of tokenizers and configs)
FAMILIES = {"z_image": ("ZImageCheckpoint", "Tongyi-MAI/Z-Image-Turbo"),
            "flux": ("FluxCheckpoint", "black-forest-labs/FLUX.1-dev"),
            "sd3": ("SD3Checkpoint", "stabilityai/stable-diffusion-3.5-large")}
FLOW_ONLY = ("EmptySD3LatentImage", "ModelSamplingAuraFlow", "SamplerCustomAdvanced", "BasicGuider", "CFGGuider",
             "RandomNoise", "DisableNoise")  # covered with a split-file (UNETLoader) model only


def flow_refusals(api: dict[str, dict]) -> list[str]:
    """Refused by name before anything loads: the flow-model nodes of a workflow with no flow model (no UNETLoader,
    no CheckpointLoaderSimple: SD3.5 and Flux all-in-one files run, translate_sd3.py), ModelSamplingAuraFlow on a
    checkpoint (Lumina 2 / AuraFlow files: not covered yet), the ControlNets of a workflow on a flow model's
    latents (EmptySD3LatentImage) without a checkpoint (an SD3.5 checkpoint's run: `_sd3_controls`). (Weighted Flux prompts run: ComfyT5Encode `weighted`.)"""
    out, loaders = [], {entry["class_type"] for entry in api.values()}
    if "UNETLoader" not in loaders:  # with a checkpoint: SD3.5 / Flux files (AuraFlow's shift is Lumina's, AuraFlow's)
        flow_only = FLOW_ONLY if "CheckpointLoaderSimple" not in loaders else ("ModelSamplingAuraFlow",)
        out += [f"node {node_id} ({entry['class_type']}): needs a Z-Image or Flux model from UNETLoader, or an SD3.5 "
                f"or Flux checkpoint; other flow-matching models are not covered yet" for node_id, entry in api.items()
                if entry["class_type"] in flow_only]
    if any(entry["class_type"] == "EmptySD3LatentImage" for entry in api.values()) and \
            "CheckpointLoaderSimple" not in loaders:  # a flow model's latents (SD3.5 checkpoints: see _sd3_controls)
        out += [f"node {node_id} ({entry['class_type']}): ControlNets of flow-matching models (SD3.5, Flux) are not "
                f"covered yet" for node_id, entry in api.items()
                if entry["class_type"] in ("ControlNetApply", "ControlNetApplyAdvanced")]
    return out


def _sai_sd35(path: str) -> bool:
    """Whether a ControlNetLoader's file is SAI's SD3.5 layout, by its header; an unreadable file passes (the
    ControlNet loader names the problem when it opens it)."""
    from nodegraph.models.errors import CheckpointError
    from nodegraph.models.sd3_controlnet import is_sai_sd35
    from nodegraph.models.single_file.loader import opened

    try:
        return is_sai_sd35(opened(path).shapes)
    except CheckpointError:
        return True


class FlowTranslations(CheckpointFlowTranslations):  # + the SD3 / Flux all-in-one checkpoints
    def flow_config(self, family: str, node_id: str, default: str | None = None) -> str:
        """The folder of `family` the split files are configured from (its tokenizers too), checked once before
        loading: a graph input (`default`: a variant's own repo, e.g. schnell's), and the check node every flow
        loader reads it through."""
        known = getattr(self, "flow_family", family)
        if known != family:
            raise ComfyError(f"{self.where(node_id)}: this workflow loads both {known} and {family} files; nodegraph "
                             f"takes one flow-matching family per workflow")
        self.flow_family = family
        sd_checkpoint = any(e["class_type"] == "CheckpointLoaderSimple" for e in self.api.values()) and \
            not getattr(self, "checkpoint_is_flow", False)  # an all-in-one Flux file: `config` is the Flux folder
        name = f"config_{family}" if sd_checkpoint else "config"
        if name in self.inputs and default:  # a variant's repo replaces the family's
            self.inputs[name]["default"] = default
        if name not in self.inputs:
            check, generic = FAMILIES[family]
            self.inputs[name] = {"type": "str", "default": default or generic, "description": (
                f"A {family} diffusers folder or hub repo: the tokenizers and the configs of ComfyUI's split files "
                f"(diffusion_models/, text_encoders/, vae/ hold weights only).")}
            self.nodes["flow_config"] = {"type": check, "model": f"$inputs.{name}", "input_name": name}
        return "$flow_config.model"

    def _flow_file(self, node_id: str, name: str, families: tuple[str, ...], what: str) -> tuple[str, str]:
        """(graph input, family) for a split file (literal `name`), refused unless the file is of `families`."""
        ref = self.literal(node_id, name)
        path = Path(self.inputs[ref.split(".", 1)[1]]["default"])
        found = self.checkpoint_of(path).family
        if found not in families:
            raise ComfyError(f"{self.where(node_id, name)}: {path.name} is a {found} model file, not {what}; the "
                             f"ComfyUI import runs Z-Image's, Flux.1's and SD3's split files for now (see "
                             f"docs/comfyui.md)")
        return ref, found

    def _UNETLoader(self, node_id, nid):
        override, family = self._flow_file(node_id, "unet_name", ("z_image", "flux_dev", "flux_schnell", "sd3"),
                                           "a Z-Image, Flux.1 or SD3 diffusion model")
        if family == "sd3":  # comfy/translate_sd3.py
            return (self.sd3_unet(node_id, nid, override),)
        config = self.flow_config("z_image" if family == "z_image" else "flux", node_id,
                                  "black-forest-labs/FLUX.1-schnell" if family == "flux_schnell" else None)
        self.nodes[nid] = {"type": "LoadTransformer", "model": config, "override": override}
        model = {"transformer": f"${nid}.transformer", "family": "z_image", "sampling": "discrete",
                 "shift": Z_IMAGE_SHIFT, "multiplier": 1.0}
        if family == "flux_dev":  # ModelType.FLUX: ModelSamplingFlux, μ 1.15
            model.update(family="flux", sampling="flux", shift=FLUX_SHIFT)
        elif family == "flux_schnell":  # ModelType.FLOW: discrete flow, shift 1
            model.update(family="flux", shift=1.0)
        return (model,)

    def _CLIPLoader(self, node_id, nid):
        override, _ = self._flow_file(node_id, "clip_name", ("qwen3",), "a Qwen3 text encoder")
        self.nodes[nid] = {"type": "LoadTextEncoder", "model": self.flow_config("z_image", node_id),
                           "override": override}
        return ({"te": f"${nid}.text_encoder", "tok": f"${nid}.tokenizer", "family": "z_image"},)

    def _DualCLIPLoader(self, node_id, nid):
        files = dict(reversed(self._flow_file(node_id, name, ("clip_l", "t5"), "a CLIP-L or T5-XXL text encoder"))
                     for name in ("clip_name1", "clip_name2"))
        if set(files) != {"clip_l", "t5"}:
            raise ComfyError(f"{self.where(node_id)}: type flux takes one CLIP-L file and one T5-XXL file; both are "
                             f"{next(iter(files))} files")
        self.nodes[nid] = {"type": "LoadFluxText", "model": self.flow_config("flux", node_id),
                           "clip_override": files["clip_l"], "t5_override": files["t5"]}
        return ({"family": "flux", **{key: f"${nid}.{key}" for key in ("clip", "clip_tokenizer", "t5",
                                                                         "t5_tokenizer")}},)

    def _FluxGuidance(self, node_id, nid):
        cond = self.link(node_id, "conditioning", "CONDITIONING")
        if cond.get("flow") != "flux":
            raise ComfyError(f"{self.where(node_id, 'conditioning')}: FluxGuidance needs a prompt encoded for Flux")
        return (dict(cond, guidance=self.literal(node_id, "guidance")),)

    def _ModelSamplingAuraFlow(self, node_id, nid):
        model = self.link(node_id, "model", "MODEL")
        if "transformer" not in model:
            raise ComfyError(f"{self.where(node_id, 'model')}: ModelSamplingAuraFlow on this model is not covered; "
                             f"nodegraph runs it on Z-Image models (UNETLoader)")
        return (dict(model, shift=self.literal(node_id, "shift"), multiplier=1.0),)

    def _EmptySD3LatentImage(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyEmptySD3Latent", "width": self.literal(node_id, "width"),
                           "height": self.literal(node_id, "height"),
                           "batch_size": self.literal(node_id, "batch_size", 1)}
        self.raw_latents = getattr(self, "raw_latents", set()) | {f"${nid}.latents"}
        return (f"${nid}.latents",)

    def flow_vae(self, node_id, nid):
        """VAELoader with no checkpoint in the workflow: the Flux VAE file (ae.safetensors) of Z-Image and Flux, or
        SD3's VAE file, configured from the family of the workflow's UNETLoader file."""
        family = "flux" if any(e["class_type"] == "DualCLIPLoader" for e in self.api.values()) else "z_image"
        for other in [k for k, e in self.api.items() if e["class_type"] == "UNETLoader"][:1]:
            self.translate(other)  # the diffusion model's file tells the family (sets flow_family)
        self.nodes[nid] = {"type": "LoadVAE", "model": self.flow_config(getattr(self, "flow_family", family), node_id),
                           "override": self.literal(node_id, "vae_name")}
        return (f"${nid}.vae",)

    def flow_encode(self, node_id, nid, clip, inputs):
        """CLIPTextEncode with a Qwen3 CLIP: the prompt verbatim in the chat template (ComfyQwenTextEncode); with
        Flux's: T5 as ComfyUI pads it (ComfyT5Encode) and CLIP-L's pooled embedding (CLIPPooledEncode)."""
        if clip["family"] == "z_image":
            self.nodes[nid] = {"type": "ComfyQwenTextEncode", "text_encoder": clip["te"], "tokenizer": clip["tok"],
                               "text": inputs["text"]}
            return ({"embeddings": f"${nid}.embeddings", "flow": "z_image"},)
        if clip["family"] == "sd3":  # comfy/translate_sd3.py
            return (self.sd3_encode(node_id, nid, clip, inputs["text"]),)
        return (self._flux_encode(node_id, nid, clip, inputs["text"], inputs["text"]),)

    def _CLIPTextEncodeFlux(self, node_id, nid):
        """CLIP-L reads `clip_l`, T5 `t5xxl`, and the prompt carries `guidance` (comfy_extras/nodes_flux.py)."""
        clip = self.link(node_id, "clip", "CLIP")
        if clip["family"] != "flux":
            raise ComfyError(f"{self.where(node_id, 'clip')}: CLIPTextEncodeFlux needs Flux's text encoders "
                             f"(DualCLIPLoader type flux)")
        cond = self._flux_encode(node_id, nid, clip, self.literal(node_id, "t5xxl"), self.literal(node_id, "clip_l"))
        return (dict(cond, guidance=self.literal(node_id, "guidance")),)

    def _flux_encode(self, node_id, nid, clip, t5_text: str, clip_text: str) -> dict:
        """T5 as ComfyUI pads and weighs it (ComfyT5Encode, `weighted` when the text has `(word:weight)`) and CLIP-L's
        pooled embedding (CLIPPooledEncode: weights do not change it, comfy/text.py `pooled_text`), from graph-input
        references (a derived literal where escapes or weights change the text an encoder reads)."""
        from nodegraph.comfy.text import plain_text, pooled_text

        t5, text = (self.inputs[ref.split(".", 1)[1]]["default"] for ref in (t5_text, clip_text))
        t5_plain = plain_text(t5)
        self.nodes[nid] = {"type": "ComfyT5Encode", "text_encoder": clip["t5"], "tokenizer": clip["t5_tokenizer"],
                           "text": t5_text if t5_plain in (t5, None) else t5_plain,
                           **({"weighted": True} if t5_plain is None else {})}
        self.nodes[f"{nid}_clip"] = {"type": "CLIPPooledEncode", "text_encoder": clip["clip"],
                                     "tokenizer": clip["clip_tokenizer"],
                                     "prompt": clip_text if pooled_text(text) == text else pooled_text(text)}
        return {"embeddings": f"${nid}.embeddings", "pooled": f"${nid}_clip.pooled", "flow": "flux"}

    def flow_sampler(self, node_id, nid, model, seed):
        """A KSampler on a flow model: ComfyFlowSigmas → ComfyFlowNoise → a repeat over the steps."""
        kind = self.api[node_id]["class_type"]
        if kind != "KSampler":
            raise ComfyError(f"{self.where(node_id, 'model')}: {kind} on a flow model is not covered yet; use "
                             f"KSampler or SamplerCustomAdvanced")
        sides = {side: self.link(node_id, side, "CONDITIONING") for side in ("positive", "negative")}
        guider = {"model": model, **sides, "cfg": self.literal(node_id, "cfg")}
        return self._flow_loop(node_id, nid, guider, self.literal(node_id, "sampler_name"),
                               self.flow_sigmas(node_id, f"{nid}_sigmas", model), self.literal(node_id, seed),
                               self.link(node_id, "latent_image", "LATENT"))

    def flow_sigmas(self, node_id, nid, model) -> str:
        """ComfyFlowSigmas for the node's scheduler, steps and denoise on `model`'s σ (KSampler, BasicScheduler)."""
        self.nodes[nid] = {"type": "ComfyFlowSigmas", "scheduler": self.literal(node_id, "scheduler"),
                           "steps": self.literal(node_id, "steps"), "denoise": self.literal(node_id, "denoise", 1.0),
                           "shift": model["shift"], "multiplier": model["multiplier"], "sampling": model["sampling"]}
        return nid

    def _RandomNoise(self, node_id, nid):
        return ({"seed": self.literal(node_id, "noise_seed")},)

    def _DisableNoise(self, node_id, nid):
        return ({"seed": None},)

    def _BasicGuider(self, node_id, nid):
        return ({"model": self.link(node_id, "model", "MODEL"),
                 "positive": self.link(node_id, "conditioning", "CONDITIONING"), "negative": None, "cfg": 1.0},)

    def _CFGGuider(self, node_id, nid):
        return ({"model": self.link(node_id, "model", "MODEL"), "cfg": self.literal(node_id, "cfg"),
                 **{side: self.link(node_id, side, "CONDITIONING") for side in ("positive", "negative")}},)

    def _SamplerCustomAdvanced(self, node_id, nid):
        """noise (RandomNoise / DisableNoise), guider (BasicGuider / CFGGuider), sampler (KSamplerSelect), sigmas
        (BasicScheduler) and latent, on a flow model; its `denoised_output` is not covered."""
        guider = self.link(node_id, "guider", "GUIDER")
        if "transformer" not in guider["model"]:
            raise ComfyError(f"{self.where(node_id, 'guider')}: SamplerCustomAdvanced on this model is not covered "
                             f"yet; nodegraph runs it on Z-Image and Flux models (UNETLoader), KSampler elsewhere")
        noise = self.link(node_id, "noise", "NOISE")
        latents = self._flow_loop(node_id, nid, guider, self.link(node_id, "sampler", "SAMPLER"),
                                  self.link(node_id, "sigmas", "SIGMAS"), noise["seed"],
                                  self.link(node_id, "latent_image", "LATENT"))
        return latents + (None,)

    def _sd3_controls(self, node_id, model, control: str) -> None:
        """The ControlNetApplyAdvanced nodes of a prompt's chain on an SD3 model become ComfySD3ControlNetApply
        (with the apply's `vae` and the model's shift), refused unless each ControlNet is SAI's SD3.5 layout."""
        from nodegraph.comfy.translate_control import node_suffix

        refuse = f"{self.where(node_id)}: ControlNets of flow-matching models are covered for SD3.5 with SAI's " \
                 f"SD3.5 ControlNet files (ControlNetApplyAdvanced with a VAE) only"
        name = control[1:].split(".")[0]
        while name:
            apply = self.nodes[name]
            if apply["type"] != "ComfySD3ControlNetApply":
                loader = self.nodes.get(apply["controlnet"][1:].split(".")[0], {})
                source = self.inputs.get(str(loader.get("model", "")).split(".", 1)[-1], {}).get("default", "")
                api_id = next((k for k, e in self.api.items() if e["class_type"] == "ControlNetApplyAdvanced"
                               and name in (f"control{node_suffix(k)}", f"control{node_suffix(k)}_positive",
                                            f"control{node_suffix(k)}_negative")), None)
                if model["family"] != "sd3" or loader.get("type") != "LoadControlNet" or api_id is None or \
                        "vae" not in self.api[api_id]["inputs"] or not _sai_sd35(source):
                    raise ComfyError(refuse)
                apply.update(type="ComfySD3ControlNetApply", vae=self.link(api_id, "vae", "VAE"),
                             shift=model["shift"])
            name = apply.get("control", "")[1:].split(".")[0]

    def _flow_loop(self, node_id, nid, guider, sampler, sigmas, seed, latent):
        """ComfyFlowNoise (no noise when `seed` is None: DisableNoise) → a repeat of ComfyFlowDenoise →
        ComfyFlowSamplerStep over the steps of the ComfyFlowSigmas node `sigmas`."""
        model = guider["model"]
        sides = {side: guider[side] for side in ("positive", "negative") if guider.get(side) is not None}
        for side, cond in sides.items():
            if cond.get("flow") != model["family"]:
                raise ComfyError(f"{self.where(node_id)}: the {side} prompt of a {model['family']} model must be "
                                 f"encoded with its own text encoders (Z-Image: CLIPLoader type lumina2; Flux: "
                                 f"DualCLIPLoader type flux or its checkpoint's CLIP; SD3: its checkpoint's CLIP)")
            if cond.get("control"):
                self._sd3_controls(node_id, model, cond["control"])
        loader = model["transformer"][1:].split(".")[0]
        if self.nodes.get(loader, {}).get("type") == "LoadTransformer":  # declared after the prompts' encoders, so
            self.nodes[loader] = self.nodes.pop(loader)  # the plan loads it once they ran and were freed
        name = self.inputs[sampler.split(".", 1)[1]]["default"]
        if name not in FLOW_SAMPLERS:
            raise ComfyError(f"{self.where(node_id)}: sampler {name!r} on a flow model is not covered yet (ComfyUI "
                             f"runs its rectified-flow variant); use one of {', '.join(FLOW_SAMPLERS)}")
        source = self.nodes.get(latent[1:].split(".")[0], {}) if isinstance(latent, str) else {}
        if source.get("type") == "ComfyEmptyLatent":  # EmptyLatentImage's 4 channels of zeros, which ComfyUI widens
            self.nodes[f"{nid}_empty"] = dict(source, type="ComfyEmptySD3Latent")  # (fix_empty_latent_channels)
            latent = f"${nid}_empty.latents"
            self.raw_latents = getattr(self, "raw_latents", set()) | {latent}
        raw = latent in getattr(self, "raw_latents", set())  # EmptySD3LatentImage's zeros: ComfyUI's raw space
        self.nodes[f"{nid}_noise"] = {"type": "ComfyFlowNoise", "latents": latent, "sigmas": f"${sigmas}.sigmas",
                                      **({"seed": seed} if seed is not None else {"add_noise": False}),
                                      **({"latent_scale": model.get("latent", FLUX_LATENT)[0],
                                          "latent_shift": model.get("latent", FLUX_LATENT)[1]} if raw else {})}
        guide = {"transformer": model["transformer"], "cfg": guider["cfg"], "multiplier": model["multiplier"]}
        for side, cond in sides.items():  # Flux: pooled CLIP-L and the guidance FluxGuidance set (3.5 if none)
            guide[side] = cond["embeddings"]
            if cond.get("control"):
                guide[f"{side}_control"] = cond["control"]
            if cond.get("pooled") and model["family"] == "sd3":  # SD3: pooled CLIP-L + bigG, no guidance
                guide[f"{side}_pooled"] = cond["pooled"]
            elif cond.get("pooled"):
                guide.update({f"{side}_pooled": cond["pooled"],
                              f"{side}_guidance": cond.get("guidance", FLUX_GUIDANCE)})
        common = {"latents": "$state.latents", "sigmas": f"${sigmas}.sigmas", "index": "$loop.item", **guide}
        self.nodes[nid] = {
            "type": "repeat",
            "description": f"ComfyUI's {self.api[node_id]['class_type']} {node_id} on a flow model: one iteration "
                           f"per σ step.",
            "over": f"${sigmas}.steps",
            "state": {"latents": f"${nid}_noise.latents", "history": f"${nid}_noise.history"},
            "nodes": {f"{nid}_denoise": {"type": "ComfyFlowDenoise", **common},
                      f"{nid}_step": {"type": "ComfyFlowSamplerStep", "sampler": sampler, **common,
                                      "denoised": f"${nid}_denoise.denoised", "history": "$state.history"}},
            "next": {"latents": f"${nid}_step.latents", "history": f"${nid}_step.history"},
        }
        return (f"${nid}.latents",)
