"""SD3.5 single files (Stability AI's all-in-one layout, with and without the text encoders) made from the tiny
folder: diffusers' own `from_single_file` reads the written file back into the folder's weights (so the layout is
SAI's), and graphs/sd3.yaml given the file (configs and tokenizers from `config`) draws the folder's image. The
real SD3.5 Large and Medium key sets, written from diffusers' meta-device models, are all consumed and infer
the hub's configs."""

from __future__ import annotations

import shutil

import pytest
import torch

from nodegraph import run_graph
from tests.graphs.tiny_pipelines import png_pixels
from tests.sd3.sd3_files import transformer_to_sai, write_sd3_file
from tests.sd3.test_sd3_transformer import REAL

GRAPH = "graphs/sd3.yaml"
SETTINGS = dict(prompt="a red fox in fresh snow", negative_prompt="blurry", steps=2, width=32, height=48,
                guidance_scale=4.0, max_sequence_length=12, skip_guidance_layers="1", skip_layer_guidance_stop=1.0)


@pytest.fixture(scope="module")
def configs_only(tiny_sd3, tmp_path_factory):
    """The tiny folder without its weight files: what the all-in-one file needs beside it (tokenizers,
    scheduler, configs), so nothing can be read from the folder's weights instead of the file's."""
    root = tmp_path_factory.mktemp("sd3_configs") / "sd3"
    shutil.copytree(tiny_sd3, root, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return root


@pytest.fixture(scope="module")
def files(tiny_sd3, tmp_path_factory):
    root = tmp_path_factory.mktemp("sd3_files")
    return {"all-in-one": write_sd3_file(tiny_sd3, root / "sd3.5_tiny.safetensors"),
            "no text encoders": write_sd3_file(tiny_sd3, root / "sd3.5_tiny_noclip.safetensors", text_encoders=False)}


def test_diffusers_reads_the_written_file_as_the_folder(tiny_sd3, files):
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    for cls, sub in ((SD3Transformer2DModel, "transformer"), (AutoencoderKL, "vae")):
        folder = cls.from_pretrained(tiny_sd3 / sub).state_dict()
        single = cls.from_single_file(str(files["all-in-one"]), config=str(tiny_sd3), subfolder=sub).state_dict()
        assert folder.keys() == single.keys() and all(torch.equal(folder[k], single[k]) for k in folder), sub


def image(model, **inputs) -> torch.Tensor:
    return png_pixels(run_graph(GRAPH, inputs={"model": str(model), **SETTINGS, **inputs}, device="cpu")["image"])


def test_the_all_in_one_file_draws_the_folders_image_with_configs_only_beside_it(tiny_sd3, files, configs_only):
    assert torch.equal(image(files["all-in-one"], config=str(configs_only)), image(tiny_sd3))


def test_a_file_without_text_encoders_takes_them_from_config(tiny_sd3, files, configs_only):
    assert torch.equal(image(files["no text encoders"], config=str(tiny_sd3)), image(tiny_sd3))
    with pytest.raises(Exception, match="holds no `text_encoder`"):  # configs only: nowhere to read them from
        image(files["no text encoders"], config=str(configs_only))


@pytest.mark.parametrize("name", list(REAL))
def test_real_sd35_file_keys_are_all_consumed_with_the_hubs_config(name, monkeypatch):
    from diffusers import SD3Transformer2DModel as Theirs

    from nodegraph.models.checkpoint import Entry
    from nodegraph.models.single_file import sd3

    with torch.device("meta"):
        theirs = Theirs(**REAL[name])
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    file_keys = transformer_to_sai(theirs.state_dict())  # meta tensors: names and shapes only
    assert sd3.detect_sd3_file(file_keys) == "model.diffusion_model."
    assert sd3.sd3_variant({k: tuple(v.shape) for k, v in file_keys.items()}, "model.diffusion_model.") == name.replace(
        "-", " ")
    monkeypatch.setattr(sd3, "_swapped", lambda entry: entry)  # would read the bytes; shapes are unchanged
    entries = {k: Entry(file="real.safetensors", shape=tuple(v.shape), dtype=torch.bfloat16, tensor=v)
               for k, v in file_keys.items()}
    converted = {k: tuple(e.shape) for k, e in sd3.transformer_entries(entries, "model.diffusion_model.").items()}
    assert converted == expected
    config = sd3.inferred_transformer_config(converted)
    assert {k: config[k] for k in REAL[name]} == {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in REAL[name].items()}


def test_inspect_names_the_model_and_what_the_file_holds(tiny_sd3, files):
    from nodegraph.models.single_file.inspect import describe

    full = describe(str(files["all-in-one"]), config=str(tiny_sd3))
    assert full["description"] == "SD3 (all-in-one)" and full["all_keys_accounted"]
    assert list(full["components"]) == ["transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"]
    assert full["components"]["transformer"]["config"]["dual_attention_layers"] == [0, 1]
    alone = describe(str(files["no text encoders"]), config=str(tiny_sd3))
    assert list(alone["components"]) == ["transformer", "vae"]


@pytest.fixture(scope="module")
def split_files(tiny_sd3, tmp_path_factory):
    """ComfyUI's split layout from the tiny folder: diffusion_models/ (the transformer alone, SAI's names) and
    text_encoders/clip_l, clip_g, t5xxl (transformers' names; T5's tied embedding once)."""
    from diffusers import SD3Transformer2DModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    root = tmp_path_factory.mktemp("comfy_sd3")
    state = transformer_to_sai(SD3Transformer2DModel.from_pretrained(tiny_sd3 / "transformer").state_dict(), "")
    save_file({k: v.contiguous() for k, v in state.items()}, root / "sd3.5_tiny_transformer.safetensors")
    for name, file, cls in (("text_encoder", "clip_l", CLIPTextModelWithProjection),
                            ("text_encoder_2", "clip_g", CLIPTextModelWithProjection),
                            ("text_encoder_3", "t5xxl_fp16", T5EncoderModel)):
        encoder = cls.from_pretrained(tiny_sd3 / name).state_dict()
        encoder.pop("encoder.embed_tokens.weight", None)
        save_file({k: v.contiguous() for k, v in encoder.items()}, root / f"{file}.safetensors")
    return root


def test_comfyuis_split_files_draw_the_folders_image(tiny_sd3, split_files, configs_only, tmp_path):
    """The transformer file as `model`, the three text-encoder files as `text_encoder*`; `config` holds the
    tokenizers, configs and the VAE's weights only, so the encoders can come from nowhere but their files."""
    beside = tmp_path / "configs_and_vae"
    shutil.copytree(configs_only, beside)
    shutil.copytree(tiny_sd3 / "vae", beside / "vae", dirs_exist_ok=True)
    got = image(split_files / "sd3.5_tiny_transformer.safetensors", config=str(beside),
                text_encoder=str(split_files / "clip_l.safetensors"),
                text_encoder_2=str(split_files / "clip_g.safetensors"),
                text_encoder_3=str(split_files / "t5xxl_fp16.safetensors"))
    assert torch.equal(got, image(tiny_sd3))


def test_a_t5_file_given_as_clip_is_refused_by_name(tiny_sd3, split_files):
    with pytest.raises(Exception, match="T5") as e:
        image(tiny_sd3, text_encoder=str(split_files / "t5xxl_fp16.safetensors"))
    assert "text_encoder" in str(e.value)
