"""SDXL's second text encoder (transformers' CLIPTextModelWithProjection) loads strictly and computes what
transformers computes; the SDXL VAE decodes in float32 when it is float16 and its config sets `force_upcast`."""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import perturbed

from nodegraph.models.loading import load_component


@pytest.fixture(scope="module")
def text_encoder_2(tmp_path_factory):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    config = CLIPTextConfig(hidden_size=20, intermediate_size=48, num_attention_heads=4, num_hidden_layers=3,
                            vocab_size=64, max_position_embeddings=77, projection_dim=12, hidden_act="gelu",
                            bos_token_id=0, eos_token_id=2, pad_token_id=1)
    reference = perturbed(CLIPTextModelWithProjection(config), seed=41)
    folder = tmp_path_factory.mktemp("te2")
    reference.save_pretrained(folder)
    return reference, folder


def test_text_encoder_2_matches_transformers_hidden_states_and_pooled_projection(text_encoder_2):
    reference, folder = text_encoder_2
    ours = load_component(folder, "text_encoder_2")
    assert type(ours).__name__ == "CLIPTextModelWithProjection"
    ids = torch.tensor([[0, 5, 9, 33, 63, 2, 1, 1], [0, 7, 2, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        got, want = ours(ids, output_hidden_states=True), reference(ids, output_hidden_states=True)
    assert got.text_embeds.shape == (2, 12)
    assert torch.allclose(got.text_embeds, want.text_embeds, atol=1e-6)
    assert torch.allclose(got.hidden_states[-2], want.hidden_states[-2], atol=1e-6)


def test_text_encoder_2_with_a_missing_projection_is_a_clear_error(text_encoder_2, tmp_path):
    from safetensors.torch import load_file, save_file

    from nodegraph.models.errors import CheckpointError

    _, folder = text_encoder_2
    state = load_file(folder / "model.safetensors")
    del state["text_projection.weight"]
    broken = tmp_path / "broken"
    broken.mkdir()
    save_file(state, broken / "model.safetensors")
    (broken / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match="missing key.*text_projection.weight"):
        load_component(broken, "text_encoder_2")


@pytest.fixture(scope="module")
def sdxl_vae(tmp_path_factory):
    import diffusers

    torch.manual_seed(0)
    vae = perturbed(diffusers.AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4, sample_size=16,
        scaling_factor=0.13025, force_upcast=True), seed=42)
    folder = tmp_path_factory.mktemp("sdxl_vae")
    vae.save_pretrained(folder)
    return folder


def decode(vae, latents, force_upcast):
    from nodegraph.core import RunContext, RunMode
    from nodegraph.nodes.vae import VAEDecode

    ctx = RunContext(mode=RunMode(device="cpu"))
    return VAEDecode().run(VAEDecode.Inputs(vae=vae, latents=latents, force_upcast=force_upcast), ctx)["image"]


def test_fp16_sdxl_vae_decodes_in_float32_like_diffusers_upcast_vae(sdxl_vae):
    import diffusers

    vae = load_component(sdxl_vae, "vae", dtype=torch.float16)
    latents = torch.randn(1, 4, 8, 6, generator=torch.Generator().manual_seed(0)).half()
    # diffusers' SDXL pipelines: `upcast_vae()` (the fp16 weights in float32), then decode latents / scaling factor
    reference = diffusers.AutoencoderKL.from_pretrained(sdxl_vae, torch_dtype=torch.float16).to(torch.float32)
    with torch.no_grad():
        expected = (reference.decode(latents.float() / 0.13025).sample / 2 + 0.5).clamp(0, 1)
    upcast = decode(vae, latents, force_upcast=True)
    assert (upcast - expected).abs().max().item() <= 1e-5
    assert vae.dtype == torch.float16  # the cached model is left as it was
    in_half = decode(vae, latents, force_upcast=False)
    assert not torch.equal(in_half, upcast)  # without the flag it really decodes in float16
