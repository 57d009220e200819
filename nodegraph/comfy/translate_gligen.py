"""ComfyUI's GLIGEN nodes → nodegraph nodes: a mixin of translate.py's translator. GLIGENLoader reads a file of
ComfyUI's gligen/ folder (LoadGLIGEN); GLIGENTextBoxApply turns the prompt into a conditioning list whose entries
carry the box (ComfyGLIGENTextBox), which the KSampler's step samples as `positive_list` / `negative_list`
(nodegraph/comfy/gligen.py: ComfyUI's box arithmetic, only the prompts with boxes grounded)."""

from __future__ import annotations

from nodegraph.comfy.classes import comfy_class
from nodegraph.comfy.errors import ComfyError


class GLIGENTranslations:
    @comfy_class("GLIGENLoader", widgets=("gligen_name",), literals={"gligen_name": str}, outputs=("GLIGEN",),
                 short="gligen", models={"gligen_name": "gligen"})
    def _GLIGENLoader(self, node_id, nid):
        self.nodes[nid] = {"type": "LoadGLIGEN", "model": self.literal(node_id, "gligen_name")}
        return (f"${nid}.gligen",)

    @comfy_class("GLIGENTextBoxApply", widgets=("text", "width", "height", "x", "y"),
                 literals={"text": str, "width": int, "height": int, "x": int, "y": int}, outputs=("CONDITIONING",),
                 links=("conditioning_to", "clip", "gligen_textbox_model"), short="gligen_box")
    def _GLIGENTextBoxApply(self, node_id, nid):
        clip = self.link(node_id, "clip", "CLIP")
        if clip["family"] not in ("sd1", "sd2"):
            raise ComfyError(f"{self.where(node_id, 'clip')}: GLIGEN text boxes are covered on SD1.x/SD2.x "
                             f"checkpoints (whose GLIGEN files exist), not on this {clip['family']} one")
        conditioning = self._as_list(node_id, "conditioning_to", f"{nid}_in")  # translate_cond.py
        self.nodes[nid] = {"type": "ComfyGLIGENTextBox", "conditioning": conditioning,
                           "gligen": self.link(node_id, "gligen_textbox_model", "GLIGEN"),
                           "text_encoder": clip["te"], "tokenizer": clip["tok"],
                           **{name: self.literal(node_id, name) for name in ("text", "width", "height", "x", "y")}}
        return ({"list": f"${nid}.conditioning"},)
