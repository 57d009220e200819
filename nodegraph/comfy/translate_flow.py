"""ComfyUI's nodes for flow-matching models (Z-Image today) → nodegraph nodes: a mixin of translate.py's translator.

UNETLoader, CLIPLoader (type `lumina2`, a Qwen3 file) and VAELoader read ComfyUI's split files (weights only);
the tokenizer and the configs come from a Z-Image diffusers folder or hub repo, the graph input `config`
(default Tongyi-MAI/Z-Image-Turbo). A MODEL of this kind is `{"transformer": ref, "shift": …, "multiplier": …}`;
a KSampler on it becomes ComfyFlowSigmas → ComfyFlowNoise → a repeat of ComfyFlowDenoise → ComfyFlowSamplerStep
(nodes/comfy_flow.py), with ComfyUI's σ, noise and CFG rules for flow models (nodegraph/comfy/flow.py).
"""

from __future__ import annotations

from pathlib import Path

from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.flow import FLOW_SAMPLERS, FLUX_LATENT, Z_IMAGE_SHIFT

DEFAULT_CONFIG = "Tongyi-MAI/Z-Image-Turbo"
FLOW_ONLY = ("EmptySD3LatentImage", "ModelSamplingAuraFlow")  # covered with a Z-Image model only


def flow_refusals(api: dict[str, dict]) -> list[str]:
    """The flow-model nodes of a workflow whose model comes from a checkpoint (Flux, SD3.5, Lumina 2 all-in-one
    files: not covered yet), refused by name before anything loads; [] when the workflow loads a Z-Image UNET."""
    if any(entry["class_type"] == "UNETLoader" for entry in api.values()):
        return []
    return [f"node {node_id} ({entry['class_type']}): needs a Z-Image model (UNETLoader); other flow-matching "
            f"models are not covered yet" for node_id, entry in api.items() if entry["class_type"] in FLOW_ONLY]


class FlowTranslations:
    def flow_config(self) -> str:
        """The Z-Image folder the split files are configured from (its tokenizer too), checked once before loading:
        a graph input, and the ZImageCheckpoint node every flow loader reads it through."""
        name = "config" if not any(e["class_type"] == "CheckpointLoaderSimple" for e in self.api.values()) \
            else "config_z_image"
        if name not in self.inputs:
            self.inputs[name] = {"type": "str", "default": DEFAULT_CONFIG, "description": (
                "A Z-Image diffusers folder or hub repo: the tokenizer and the configs of ComfyUI's split files "
                "(diffusion_models/, text_encoders/, vae/ hold weights only).")}
            self.nodes["z_image_config"] = {"type": "ZImageCheckpoint", "model": f"$inputs.{name}",
                                            "input_name": name}
        return "$z_image_config.model"

    def _flow_file(self, node_id: str, name: str, family: str, what: str) -> str:
        """The graph input for a split file (literal `name`), refused unless the file is of `family`."""
        ref = self.literal(node_id, name)
        path = Path(self.inputs[ref.split(".", 1)[1]]["default"])
        found = self.checkpoint_of(path).family
        if found != family:
            raise ComfyError(f"{self.where(node_id, name)}: {path.name} is a {found} model file, not {what}; the "
                             f"ComfyUI import runs Z-Image's split files for now (see docs/comfyui.md)")
        return ref

    def _UNETLoader(self, node_id, nid):
        override = self._flow_file(node_id, "unet_name", "z_image", "a Z-Image diffusion model")
        self.nodes[nid] = {"type": "LoadTransformer", "model": self.flow_config(), "override": override}
        return ({"transformer": f"${nid}.transformer", "shift": Z_IMAGE_SHIFT, "multiplier": 1.0},)

    def _CLIPLoader(self, node_id, nid):
        override = self._flow_file(node_id, "clip_name", "qwen3", "a Qwen3 text encoder")
        self.nodes[nid] = {"type": "LoadTextEncoder", "model": self.flow_config(), "override": override}
        return ({"te": f"${nid}.text_encoder", "tok": f"${nid}.tokenizer", "family": "z_image"},)

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
        """VAELoader with no checkpoint in the workflow: the Flux VAE file (ae.safetensors) of a Z-Image model."""
        self.nodes[nid] = {"type": "LoadVAE", "model": self.flow_config(),
                           "override": self.literal(node_id, "vae_name")}
        return (f"${nid}.vae",)

    def flow_encode(self, node_id, nid, clip, inputs):
        """CLIPTextEncode with a Qwen3 CLIP: the prompt verbatim in the chat template (ComfyQwenTextEncode)."""
        self.nodes[nid] = {"type": "ComfyQwenTextEncode", "text_encoder": clip["te"], "tokenizer": clip["tok"],
                           "text": inputs["text"]}
        return ({"embeddings": f"${nid}.embeddings", "flow": True},)

    def flow_sampler(self, node_id, nid, model, seed):
        """A KSampler on a flow model: ComfyFlowSigmas → ComfyFlowNoise → a repeat over the steps."""
        kind = self.api[node_id]["class_type"]
        if kind != "KSampler":
            raise ComfyError(f"{self.where(node_id, 'model')}: {kind} on a Z-Image model is not covered yet; use "
                             f"KSampler")
        sides = {side: self.link(node_id, side, "CONDITIONING") for side in ("positive", "negative")}
        for side, cond in sides.items():
            if not cond.get("flow"):
                raise ComfyError(f"{self.where(node_id, side)}: a Z-Image model needs a prompt encoded with its "
                                 f"own text encoder (CLIPLoader type lumina2 → CLIPTextEncode)")
        sampler = self.literal(node_id, "sampler_name")
        name = self.inputs[sampler.split(".", 1)[1]]["default"]
        if name not in FLOW_SAMPLERS:
            raise ComfyError(f"{self.where(node_id, 'sampler_name')}: {name!r} on a flow model is not covered yet "
                             f"(ComfyUI runs its rectified-flow variant); use one of {', '.join(FLOW_SAMPLERS)}")
        latent = self.link(node_id, "latent_image", "LATENT")
        self.nodes[f"{nid}_sigmas"] = {"type": "ComfyFlowSigmas", "scheduler": self.literal(node_id, "scheduler"),
                                       "steps": self.literal(node_id, "steps"),
                                       "denoise": self.literal(node_id, "denoise", 1.0),
                                       "shift": model["shift"], "multiplier": model["multiplier"]}
        raw = latent in getattr(self, "raw_latents", set())  # EmptySD3LatentImage's zeros: ComfyUI's raw space
        self.nodes[f"{nid}_noise"] = {"type": "ComfyFlowNoise", "latents": latent, "sigmas": f"${nid}_sigmas.sigmas",
                                      "seed": self.literal(node_id, seed),
                                      **({"latent_scale": FLUX_LATENT[0], "latent_shift": FLUX_LATENT[1]} if raw
                                         else {})}
        guide = {"transformer": model["transformer"], "positive": sides["positive"]["embeddings"],
                 "negative": sides["negative"]["embeddings"], "cfg": self.literal(node_id, "cfg"),
                 "multiplier": model["multiplier"]}
        common = {"latents": "$state.latents", "sigmas": f"${nid}_sigmas.sigmas", "index": "$loop.item", **guide}
        self.nodes[nid] = {
            "type": "repeat",
            "description": f"ComfyUI's KSampler {node_id} on a flow model: one iteration per σ step.",
            "over": f"${nid}_sigmas.steps",
            "state": {"latents": f"${nid}_noise.latents", "history": f"${nid}_noise.history"},
            "nodes": {f"{nid}_denoise": {"type": "ComfyFlowDenoise", **common},
                      f"{nid}_step": {"type": "ComfyFlowSamplerStep", "sampler": sampler, **common,
                                      "denoised": f"${nid}_denoise.denoised", "history": "$state.history"}},
            "next": {"latents": f"${nid}_step.latents", "history": f"${nid}_step.history"},
        }
        return (f"${nid}.latents",)
