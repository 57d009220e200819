"""Control-image preprocessors: turn a photo into the kind of picture a ControlNet was trained on."""

from __future__ import annotations

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Image


@node("CannyEdges", version=1)
class CannyEdges(Node):
    """Canny edge map (Canny, 1986) of an image, with OpenCV's `cv2.Canny`: the detector the canny ControlNets
    were trained with. White edges on black, as RGB in {0, 1}. Gradients are taken on all three colour
    channels (the largest wins), as `cv2.Canny` does on an RGB array. Needs `pip install nodegraph[vision]`.
    """

    class Inputs(Ports):
        image: Image
        low_threshold: int = Field(100, ge=0, le=1000, description="gradient below which a pixel is never an edge")
        high_threshold: int = Field(200, ge=0, le=1000, description="gradient above which a pixel is surely an edge")

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        import numpy as np
        import torch

        try:
            import cv2
        except ImportError:
            raise ValueError("CannyEdges needs OpenCV: install it with `pip install nodegraph[vision]` "
                             "(or opencv-python-headless)") from None
        if i.low_threshold > i.high_threshold:
            raise ValueError(f"`low_threshold` {i.low_threshold} is above `high_threshold` {i.high_threshold}")
        pixels = (i.image.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        edges = [cv2.Canny(np.ascontiguousarray(p), i.low_threshold, i.high_threshold) for p in pixels]  # (H, W)
        out = torch.from_numpy(np.stack(edges).astype(np.float32) / 255.0)[:, None]  # (B, 1, H, W)
        return {"image": out.expand(-1, 3, -1, -1).contiguous()}
