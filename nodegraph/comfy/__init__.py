"""Run ComfyUI workflows: read (API, UI, PNG) → find models → translate to a nodegraph graph (docs/comfyui.md)."""

from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.reader import Workflow, read_workflow
from nodegraph.comfy.translate import Translation, translate

__all__ = ["ComfyError", "Workflow", "read_workflow", "Translation", "translate"]
