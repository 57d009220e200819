"""ComfyUI's conditioning nodes → nodegraph nodes (area composition, ConditioningZeroOut, the folders of prompts'
`embedding:` words): a mixin of translate.py's translator. A CONDITIONING that went through ConditioningSetArea /
ConditioningCombine is a conditioning list (`{"list": ref}`), given to the KSampler's step as `positive_list` /
`negative_list`."""

from __future__ import annotations

from nodegraph.comfy.errors import ComfyError


class ConditioningTranslations:
    def _embeddings(self, node_id, nid):
        """`embedding:NAME` in a prompt: ComfyUI's embeddings/ folders, looked up when the prompt is encoded."""
        texts = [v for k, v in self.api[node_id]["inputs"].items() if k.startswith("text") and isinstance(v, str)]
        if not any("embedding:" in text for text in texts):
            return
        self.nodes[nid]["embedding_folders"] = [str(f) for f in self.paths.folders("embeddings") if f.is_dir()]
        self.nodes[nid]["allow_pickle"] = self.allow_pickle()

    def allow_pickle(self) -> str:
        """The graph input `allow_pickle` (default false), shared by every node reading a file that may be a pickle
        (`embedding:` prompts' files, upscale models, ControlNetLoader's files)."""
        self.inputs.setdefault("allow_pickle", {"type": "bool", "default": False, "description": (
            "Read pickled model files (.pt, .pth, .bin: embeddings named by `embedding:` in prompts, upscale "
            "models, ControlNets and T2I-Adapters) with torch.load(weights_only=True); only for files you trust.")})
        return "$inputs.allow_pickle"

    def _as_list(self, node_id, name: str, nid: str) -> str:
        """The conditioning list a CONDITIONING input holds (a one-entry list made for a plain prompt)."""
        cond = self.link(node_id, name, "CONDITIONING")
        if cond.get("list"):
            return cond["list"]
        if cond.get("control"):
            raise ComfyError(f"{self.where(node_id, name)}: a ControlNet on area-conditioned prompts is not covered "
                             f"yet; apply it after ConditioningCombine, or to prompts without areas")
        if cond.get("unclip"):  # its image embeddings would be dropped: refused rather than ignored
            raise ComfyError(f"{self.where(node_id, name)}: unCLIP (image) conditioning on area-conditioned prompts "
                             f"is not covered yet")
        self.nodes[nid] = {"type": "ComfyConditioning", "embeddings": cond["embeddings"],
                           **{key: cond[key] for key in ("pooled", "size") if cond.get(key)}}
        return f"${nid}.conditioning"

    def _ConditioningSetArea(self, node_id, nid):
        conditioning = self._as_list(node_id, "conditioning", f"{nid}_in")
        self.nodes[nid] = {"type": "ComfyConditioningSetArea", "conditioning": conditioning,
                           **{name: self.literal(node_id, name) for name in ("width", "height", "x", "y")},
                           "strength": self.literal(node_id, "strength", 1.0)}
        return ({"list": f"${nid}.conditioning"},)

    def _ConditioningCombine(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyConditioningCombine",
                           "conditioning_1": self._as_list(node_id, "conditioning_1", f"{nid}_in1"),
                           "conditioning_2": self._as_list(node_id, "conditioning_2", f"{nid}_in2")}
        return ({"list": f"${nid}.conditioning"},)

    def _ConditioningZeroOut(self, node_id, nid):
        cond = self.link(node_id, "conditioning", "CONDITIONING")
        if cond.get("list"):
            raise ComfyError(f"{self.where(node_id, 'conditioning')}: ConditioningZeroOut of area-conditioned "
                             f"prompts is not covered yet")
        self.nodes[nid] = {"type": "ComfyConditioningZeroOut", "embeddings": cond["embeddings"],
                           **({"pooled": cond["pooled"]} if cond.get("pooled") else {})}
        return (dict(cond, embeddings=f"${nid}.embeddings", pooled=f"${nid}.pooled" if cond.get("pooled") else None),)
