"""Fast mode (`nodegraph run --fast`, `RunOptions(fast=True)`): speed over bit-equality with diffusers.

A model loaded for a fast run (the UNet, the VAE, a ControlNet, a VAE override) is prepared once (`prepare`), in
place, keeping its parameters and state-dict names:
* convolutions run on oneDNN with their kernels packed once into its blocked layout (`conv.py`), instead of
  being reordered on every call, and their activations flow channels-last (NHWC) through the whole network;
  a resnet block's last convolution and its residual sum are one call (`resnet.py`), and so are a spatial
  transformer's proj_out and its residual sum (`transformer.py`);
* in bf16, linear layers run on oneDNN with their weights packed once (`linear.py`), and the feed-forward's
  GELU and gate product run inside its GEMMs (`feedforward.py`);
* self-attention computes q, k and v with one matrix product over the concatenated weights (`attention.py`).
In fp32 the image stays within 2/255 of the default one (tests/fast/). In bf16 it is as far from the fp32 image
as the default bf16 image is, which is also about how far the two bf16 images are from each other (up to ~7/255
on builtin:digits); docs/performance.md gives the figures. Packed copies follow LoRA copies and in-place weight
edits: each is keyed by its weight.
"""

from nodegraph.fast.prepare import prepare

__all__ = ["prepare"]
