"""UNetStep calls the UNet under torch.inference_mode (no version counters, no view tracking: less work per
operation than no_grad on small models such as builtin:digits): the same bits as the UNet under no_grad, and its
outputs go on through the next nodes (the scheduler's step, CFG) and into the next step's UNet call."""

import json
from pathlib import Path

import torch

import nodegraph
from nodegraph.core import RunContext, RunMode
from nodegraph.models.unet_2d_condition import UNet2DConditionModel
from nodegraph.nodes.unet import UNetStep

DIGITS_UNET = Path(nodegraph.__file__).parent / "builtin" / "digits" / "unet" / "config.json"


def test_unet_step_equals_the_unet_under_no_grad_bit_for_bit_and_keeps_no_autograd_state():
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(json.loads(DIGITS_UNET.read_text())).eval().requires_grad_(False)
    latents, t = torch.randn(1, 4, 8, 8), torch.tensor(501)
    embeddings = torch.randn(2, 77, 64)  # unconditional and conditional: a CFG batch
    ctx = RunContext(mode=RunMode(device="cpu"))
    step = UNetStep()
    out = step.run(UNetStep.Inputs(unet=unet, latents=latents, t=t, embeddings=embeddings), ctx)["noise_pred"]
    with torch.no_grad():
        expected = unet(torch.cat([latents, latents]), t, encoder_hidden_states=embeddings)
    assert torch.equal(out, expected)
    assert out.is_inference()  # made without autograd's per-operation bookkeeping
    uncond, cond = out.chunk(2)
    following = latents - 0.1 * (uncond + 7.5 * (cond - uncond))  # a step outside the node: a plain tensor again
    again = step.run(UNetStep.Inputs(unet=unet, latents=following, t=t, embeddings=embeddings), ctx)["noise_pred"]
    with torch.no_grad():
        assert torch.equal(again, unet(torch.cat([following, following]), t, encoder_hidden_states=embeddings))
