"""LoRA on nodegraph's models, layer by layer against diffusers' peft layers, and the cached model left as loaded.

Measured against diffusers' (unfused, peft) LoRA UNet and text encoder at strength 0.7: unfused (`fuse=False`) is
bit-identical (0.0); fused differs by float rounding only, 2.2e-6 (UNet) and 1.3e-6 (text encoder), bounded at
1e-5 here, while the LoRA itself moves the outputs by ~1.1.
"""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.adapters.lora import apply_lora, match_layers, read_lora
from nodegraph.models.loading import load_component


@pytest.fixture(scope="module")
def oracle(tiny_sd, loras):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    pipe.load_lora_weights(str(loras["kohya"]), adapter_name="k")
    pipe.set_adapters(["k"], [0.7])
    return pipe


def unet_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 8, 8, generator=g), torch.tensor(500), torch.randn(2, 77, 32, generator=g)


@pytest.mark.parametrize("fuse, bound", [(False, 0.0), (True, 1e-5)])
def test_lora_unet_and_text_encoder_match_diffusers_peft_layers(tiny_sd, loras, oracle, fuse, bound):
    lora = read_lora(str(loras["kohya"]))
    unet = load_component(str(tiny_sd), "unet", dtype=torch.float32, device="cpu")
    te = load_component(str(tiny_sd), "text_encoder", dtype=torch.float32, device="cpu")
    x, t, ctx = unet_inputs()
    ids = torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])
    with torch.no_grad():
        patched_unet = apply_lora(unet, match_layers(lora, "unet", unet, "the UNet"), 0.7, fuse)
        patched_te = apply_lora(te, match_layers(lora, "text_encoder", te, "the text encoder"), 0.7, fuse)
        ours, theirs = patched_unet(x, t, ctx), oracle.unet(x, t, ctx).sample
        plain = unet(x, t, ctx)
        ours_te, theirs_te = patched_te(ids)[0], oracle.text_encoder(ids)[0]
    assert (ours - plain).abs().max() > 1e-2, "the LoRA must change the UNet output"
    assert (ours - theirs).abs().max() <= bound, (ours - theirs).abs().max()
    assert (ours_te - te(ids)[0]).abs().max() > 1e-2, "the LoRA must change the text encoder output"
    assert (ours_te - theirs_te).abs().max() <= bound, (ours_te - theirs_te).abs().max()


@pytest.mark.parametrize("fuse", [False, True])
def test_the_base_model_is_unchanged_and_shares_untouched_weights(tiny_sd, loras, fuse):
    unet = load_component(str(tiny_sd), "unet", dtype=torch.float32, device="cpu")
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    x, t, ctx = unet_inputs()
    with torch.no_grad():
        plain = unet(x, t, ctx)
        lora = read_lora(str(loras["peft"]))
        patched = apply_lora(unet, match_layers(lora, "unet", unet, "the UNet"), 1.0, fuse)
        patched(x, t, ctx)
        after = unet(x, t, ctx)
    assert torch.equal(plain, after)
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    assert unet.get_submodule(q) is not patched.get_submodule(q.rsplit(".", 1)[0]).to_q
    assert patched.conv_in.weight is unet.conv_in.weight, "untouched layers must be shared, not copied"
    assert patched.down_blocks[0].resnets[0].norm1 is unet.down_blocks[0].resnets[0].norm1


def test_peft_file_alphas_from_diffusers_metadata_match_diffusers(tiny_sd, tmp_path):
    """A LoRA trained with peft and saved by diffusers carries its LoraConfig (lora_alpha, alpha_pattern) in the
    file's metadata: scale = alpha / r per layer, here 8/4 and, for to_q, 16/4."""
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    config = LoraConfig(r=4, lora_alpha=8, alpha_pattern={"to_q": 16}, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1"])
    torch.manual_seed(0)
    pipe.unet.add_adapter(config)
    diffusers.StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        unet_lora_adapter_metadata=config.to_dict())
    file = tmp_path / "pytorch_lora_weights.safetensors"
    oracle = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    oracle.load_lora_weights(str(file), adapter_name="p")

    lora = read_lora(str(file))
    scales = {name.rsplit(".", 1)[-1]: layer.scale for name, layer in lora.parts["unet"].items()}
    assert scales["to_q"] == 4.0 and scales["to_k"] == 2.0 and scales["conv1"] == 2.0
    unet = load_component(str(tiny_sd), "unet", dtype=torch.float32, device="cpu")
    x, t, ctx = unet_inputs()
    with torch.no_grad():
        ours = apply_lora(unet, match_layers(lora, "unet", unet, "the UNet"), 1.0, False)(x, t, ctx)
        theirs = oracle.unet(x, t, ctx).sample
        assert (ours - unet(x, t, ctx)).abs().max() > 1e-2
    assert (ours - theirs).abs().max() <= 1e-5, (ours - theirs).abs().max()
