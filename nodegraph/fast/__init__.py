"""Fast mode (`nodegraph run --fast`, `RunOptions(fast=True)`): speed over bit-equality with diffusers.

A model loaded for a fast run is prepared once (`prepare`), in place, keeping its parameters and state-dict names:
* convolutions run on oneDNN with their kernels packed once into its blocked layout (`conv.py`), instead of
  being reordered on every call, and their activations flow channels-last (NHWC) through the whole network;
  a resnet block's last convolution and its residual sum are one call (`resnet.py`);
* in bf16, linear layers run on oneDNN with their weights packed once (`linear.py`);
* self-attention computes q, k and v with one matrix product over the concatenated weights (`attention.py`).
The image stays within 2/255 of the default one on the tests' models (tests/fast/); docs/performance.md gives
the figures. Packed copies follow LoRA copies and in-place weight edits: each is keyed by its weight.
"""

from nodegraph.fast.prepare import prepare

__all__ = ["prepare"]
