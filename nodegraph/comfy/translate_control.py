"""ComfyUI's ControlNet nodes → nodegraph nodes: the part of the workflow translation (translate.py) that loads
ControlNets (and T2I-Adapters, which ComfyUI's ControlNetLoader also loads) and chains them onto conditionings. A mixin of translate.py's translator, whose `literal`, `link`,
`inputs`, `nodes` and `api` it uses."""

from __future__ import annotations

import re
from pathlib import Path

from nodegraph.comfy.checkpoints import is_t2i_adapter
from nodegraph.comfy.errors import ComfyError
from nodegraph.models.weight_files import PICKLES


def node_suffix(node_id: str) -> str:
    """A node id as the tail of an identifier: "3" → "3", "12:5" (a subgraph's node) → "12_5"."""
    return re.sub(r"\W", "_", str(node_id))


class ControlTranslations:
    def _ControlNetLoader(self, node_id, nid):
        model = self.literal(node_id, "control_net_name")
        path = Path(self.inputs[model.split(".", 1)[1]]["default"])
        pickle = {}
        if path.suffix.lower() in PICKLES:  # the pickle rule of checkpoints and upscalers, checked before any load
            if not self.paths.allow_pickle:
                raise ComfyError(f"{self.where(node_id, 'control_net_name')}: {path.name} is a pickle, which can run "
                                 f"code when loaded; if you trust it, run with `--set allow_pickle=true` (it is then "
                                 f"read with torch.load(weights_only=True)), or convert it to .safetensors")
            pickle = {"allow_pickle": self.allow_pickle()}
        if is_t2i_adapter(path, self.paths.allow_pickle):  # ComfyUI's ControlNetLoader loads T2I-Adapters too
            self.nodes[nid] = {"type": "LoadT2IAdapter", "model": model, **pickle}
            return (f"${nid}.controlnet",)
        # a diffusers ControlNet kept as ComfyUI sees it (`name/diffusion_pytorch_model.safetensors`) takes the
        # config.json beside it; an original-layout file infers its config from its weights
        beside = path.parent / "config.json"
        config = f"config_{node_suffix(node_id)}"
        self.inputs[config] = {"type": "str", "default": str(path.parent) if beside.is_file() else "",
                               "description": f"Node {node_id}'s ControlNet only: a diffusers ControlNet folder "
                                              f"whose config.json describes the file (empty = inferred)."}
        self.nodes[nid] = {"type": "LoadControlNet", "model": model, "config": f"$inputs.{config}", **pickle}
        return (f"${nid}.controlnet",)

    def _ControlNetApplyAdvanced(self, node_id, nid):
        positive = self.link(node_id, "positive", "CONDITIONING")
        negative = self.link(node_id, "negative", "CONDITIONING")
        apply = {"type": "ComfyControlNetApply", "controlnet": self.link(node_id, "control_net", "CONTROL_NET"),
                 "image": self.link(node_id, "image", "IMAGE"), "strength": self.literal(node_id, "strength"),
                 "start_percent": self.literal(node_id, "start_percent", 0.0),
                 "end_percent": self.literal(node_id, "end_percent", 1.0)}
        if "vae" in self.api[node_id]["inputs"]:
            self.link(node_id, "vae", "VAE")  # only latent-hint ControlNets (not SD's) read it
        # ComfyUI makes one ControlNet object per previous chain: prompts that shared a chain share the new one
        out = []
        for half, cond in (("positive", positive), ("negative", negative)):
            name = nid if positive.get("control") == negative.get("control") else f"{nid}_{half}"
            self.nodes[name] = dict(apply, **({"control": cond["control"]} if cond.get("control") else {}))
            out.append(dict(cond, control=f"${name}.control", control_to_uncond=False))
        return tuple(out)

    def _ControlNetApply(self, node_id, nid):
        """ComfyUI's older apply: on one conditioning, over all steps; at sampling a negative prompt without a
        ControlNet of its own gets this one too (comfy/samplers.py `control_apply_to_uncond`)."""
        cond = self.link(node_id, "conditioning", "CONDITIONING")
        self.nodes[nid] = {"type": "ComfyControlNetApply",
                           "controlnet": self.link(node_id, "control_net", "CONTROL_NET"),
                           "image": self.link(node_id, "image", "IMAGE"), "strength": self.literal(node_id, "strength"),
                           **({"control": cond["control"]} if cond.get("control") else {})}
        return (dict(cond, control=f"${nid}.control", control_to_uncond=True),)
