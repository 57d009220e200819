"""graphs/flux.yaml with ComfyUI's split files made from the tiny dev folder: diffusion_models/ (BFL's transformer
layout), text_encoders/clip_l.safetensors (transformers 4 names under `text_model.`, with the unused projection
ComfyUI's file carries), text_encoders/t5xxl (float32 storage, and float8_e4m3fn kept float8), vae/ae.safetensors
(LDM names), and an all-in-one checkpoint (transformer, CLIP-L, T5 and VAE under ComfyUI's prefixes). fp32 files, with
`model` a configs-only copy of the folder (no weights, so every weight comes from the files), give the folder's image;
the fp8 T5 gives an image within a measured bound of the fp16 file's; a file in the wrong slot is refused before
anything loads."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_flux_single_file import to_bfl
from test_z_image_bad_input import assert_refused, run_cli

from nodegraph import run_graph
from tests.graphs.tiny_pipelines import png_pixels
from tests.models.single_file.ldm_layout import vae_to_ldm

SETTINGS = dict(prompt="a red fox in fresh snow", steps=2, width=32, height=32, max_sequence_length=24)


@pytest.fixture(scope="module")
def files(tiny_flux_dev, tmp_path_factory):
    root = tmp_path_factory.mktemp("comfyui-models")
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (root / sub).mkdir()
    out = {"transformer": root / "diffusion_models" / "flux1-dev.safetensors",
           "text_encoder": root / "text_encoders" / "clip_l.safetensors",
           "text_encoder_2": root / "text_encoders" / "t5xxl_fp16.safetensors",
           "t5_fp8": root / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors", "vae": root / "vae" / "ae.safetensors"}
    save_file(to_bfl(load_file(tiny_flux_dev / "transformer" / "diffusion_pytorch_model.safetensors")),
              out["transformer"])
    clip = {f"text_model.{k}": v for k, v in load_file(tiny_flux_dev / "text_encoder" / "model.safetensors").items()}
    clip["text_projection.weight"] = torch.randn(24, 24)
    save_file(clip, out["text_encoder"])
    t5 = load_file(tiny_flux_dev / "text_encoder_2" / "model.safetensors")
    save_file(t5, out["text_encoder_2"])
    save_file({k: (v.to(torch.float8_e4m3fn) if k.endswith("weight") and v.ndim == 2 and "shared" not in k else v)
               for k, v in t5.items()}, out["t5_fp8"])
    vae = load_file(tiny_flux_dev / "vae" / "diffusion_pytorch_model.safetensors")
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae, 3, prefix="").items()}, out["vae"])
    out["all_in_one"] = root / "flux1-dev-all-in-one.safetensors"  # ComfyUI's checkpoints/ layout
    save_file({**to_bfl(load_file(tiny_flux_dev / "transformer" / "diffusion_pytorch_model.safetensors"),
                        "model.diffusion_model."),
               **{f"text_encoders.clip_l.transformer.{k}": v for k, v in clip.items()},
               **{f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5.items()},
               **{k: v.contiguous() for k, v in vae_to_ldm(vae, 3).items()}}, out["all_in_one"])
    return out


@pytest.fixture(scope="module")
def configs_only(tiny_flux_dev, tmp_path_factory):
    """The tiny folder without its weight files (tokenizers, scheduler and configs only), as `model` beside the
    files: every weight can only come from the files given, never from the folder."""
    root = tmp_path_factory.mktemp("flux_configs") / "flux"
    shutil.copytree(tiny_flux_dev, root, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return root


def image(folder, **inputs) -> torch.Tensor:
    return png_pixels(run_graph("graphs/flux.yaml", inputs={"model": str(folder), **SETTINGS, **inputs})["image"]).int()


SPLIT = ("transformer", "text_encoder", "text_encoder_2", "vae")


def test_comfyui_split_files_give_the_folders_image_with_configs_only_beside_them(tiny_flux_dev, configs_only, files):
    folder = image(tiny_flux_dev)
    got = image(configs_only, **{k: str(files[k]) for k in SPLIT})
    assert (got - folder).abs().max() == 0
    with pytest.raises(Exception, match="no weights in"):  # the folder alone has nothing to draw with
        image(configs_only)


def test_an_all_in_one_checkpoint_gives_transformer_clip_t5_and_vae(tiny_flux_dev, configs_only, files):
    one = str(files["all_in_one"])
    got = image(configs_only, transformer=one, text_encoder=one, text_encoder_2=one, vae=one)
    assert (got - image(tiny_flux_dev)).abs().max() == 0


def test_an_fp8_t5_file_stays_float8_and_draws_close_to_the_fp16_files_image(tiny_flux_dev, configs_only, files):
    from nodegraph.models.loading import load_component

    t5 = load_component(files["t5_fp8"], "text_encoder_2", config=str(tiny_flux_dev))
    q = t5.encoder.block[0].layer[0].SelfAttention.q
    assert q.weight.dtype == torch.float8_e4m3fn
    fp16 = load_file(files["text_encoder_2"])["encoder.block.0.layer.0.SelfAttention.q.weight"]
    assert (q.weight.float() - fp16).abs().max() > 5e-3  # rounded to e4m3 (measured: max 0.015, mean 0.002)
    split = {k: str(files[k]) for k in SPLIT}
    wide = image(configs_only, **split)
    narrow = image(configs_only, **{**split, "text_encoder_2": str(files["t5_fp8"])})
    # measured (CPU, float32 run): max 2/255, mean 0.25/255, a quarter of the values moved; bounds are 3× and 4×
    assert 0 < (narrow - wide).abs().max() <= 6 and (narrow - wide).abs().float().mean() <= 1


@pytest.mark.parametrize(("name", "wrong", "needle"), [("text_encoder", "text_encoder_2", "takes CLIP-L"),
                                                        ("text_encoder_2", "text_encoder", "takes T5-XXL"),
                                                        ("vae", "transformer", "`vae`")])
def test_a_file_in_the_wrong_slot_is_refused_before_loading(tiny_flux_dev, files, tmp_path, name, wrong, needle):
    result = run_cli("flux.yaml", tmp_path, model=tiny_flux_dev, steps=1, width=32, height=32,
                     **{name: files[wrong]})
    assert_refused(result, tmp_path, f"`{name}`", needle)


def test_inspect_names_the_transformer_and_text_encoder_files(tiny_flux_dev, files):
    from nodegraph.models.single_file.inspect import describe, render

    info = describe(str(files["transformer"]), config=str(tiny_flux_dev))
    assert info["family"] == "flux-dev" and info["components"]["transformer"]["tensors"] > 50
    assert "Flux.1 transformer" in render(info)
    t5 = describe(str(files["t5_fp8"]))
    assert t5["family"] == "t5_text_encoder" and "float8_e4m3fn" in t5["components"]["text_encoder_2"]["dtype"]
    clip = describe(str(files["text_encoder"]))
    assert clip["family"] == "clip_text_encoder" and clip["components"]["text_encoder"]["config"]["hidden_size"] == 24


def test_an_all_in_one_checkpoint_given_as_model_is_sent_to_the_four_inputs(files, tmp_path):
    result = run_cli("flux.yaml", tmp_path, model=files["all_in_one"], steps=1)
    assert_refused(result, tmp_path, "`model`", "all-in-one Flux checkpoint", "`text_encoder_2` and `vae`")
