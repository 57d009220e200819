"""Real single-file layouts, without their weights: the key lists and shapes of real SD1.5, SD2.1-768-v, SDXL base
1.0 and SDXL refiner 1.0 files (shared/notes/reference, written by diffusers' own conversion scripts from the
real configs). Detection names the family; the plans built from the built-in configs fill every parameter of
meta-device models with matching shapes, and every key of the file is read or deliberately not used."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from nodegraph.models.errors import CheckpointError
from nodegraph.models.single_file.detect import detect
from nodegraph.models.single_file.loader import check_all

REFERENCE = Path(__file__).parents[1] / "data" / "reference"
LAYOUTS = {"sd15": "sd1", "sd21": "sd2", "sdxl-base": "sdxl_base", "sdxl-refiner": "sdxl_refiner"}

def real_shapes(name: str, optional: bool = True) -> dict[str, tuple[int, ...]]:
    shapes = {}
    with gzip.open(REFERENCE / f"single-file-keys-{name}.txt.gz", "rt") as f:
        for line in f:
            if line.startswith("# ") or (line.startswith("#+") and not optional):
                continue
            key, shape = line.removeprefix("#+ ").rstrip("\n").split("\t")
            shapes[key] = tuple(int(x) for x in shape.strip("[]").split(",") if x.strip())
    return shapes


@pytest.mark.parametrize("name", LAYOUTS)
def test_real_layout_is_detected_and_every_key_fills_a_parameter(name):
    shapes = real_shapes(name)
    assert detect(shapes, name).name == LAYOUTS[name]
    accounted = check_all(shapes, name)  # raises on any missing parameter, unused key or shape mismatch
    assert accounted == set(shapes)


def test_real_layouts_without_the_optional_keys_load_too():
    for name in LAYOUTS:
        check_all(real_shapes(name, optional=False), name)


@pytest.mark.parametrize("name, family", [("sd15", "sd1_inpaint"), ("sd21", "sd2_inpaint"),
                                          ("sdxl-base", "sdxl_base_inpaint")])
def test_nine_input_channels_make_an_inpainting_checkpoint(name, family):
    shapes = real_shapes(name)
    key = "model.diffusion_model.input_blocks.0.0.weight"
    shapes[key] = (shapes[key][0], 9, *shapes[key][2:])
    assert detect(shapes, name).name == family
    check_all(shapes, name)


def test_a_missing_key_is_named():
    shapes = real_shapes("sd15")
    del shapes["model.diffusion_model.output_blocks.9.1.transformer_blocks.0.norm3.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing parameter \(up_blocks\.3\.attentions\.0\."
                                              r"transformer_blocks\.0\.norm3\.bias\)"):
        check_all(shapes, "sd15")


def test_a_leftover_key_is_named():
    shapes = real_shapes("sdxl-base")
    shapes["model.diffusion_model.input_blocks.1.0.extra.weight"] = (4,)
    shapes["conditioner.embedders.1.model.transformer.resblocks.0.attn.extra"] = (4,)
    with pytest.raises(CheckpointError, match=r"unused key.*model\.diffusion_model\.input_blocks\.1\.0\.extra"):
        check_all(shapes, "sdxl-base")
    del shapes["model.diffusion_model.input_blocks.1.0.extra.weight"]
    with pytest.raises(CheckpointError, match=r"unused key.*resblocks\.0\.attn\.extra"):
        check_all(shapes, "sdxl-base")


def test_a_shape_mismatch_is_named():
    shapes = real_shapes("sd21")
    shapes["first_stage_model.decoder.mid.attn_1.q.weight"] = (512, 256, 1, 1)
    with pytest.raises(CheckpointError, match=r"first_stage_model\.decoder\.mid\.attn_1\.q\.weight is "
                                              r"\[512, 256, 1, 1\] in the file, but decoder\.mid_block\."
                                              r"attentions\.0\.to_q\.weight is \[512, 512\]"):
        check_all(shapes, "sd21")


def test_layout_is_told_apart_by_its_text_encoder_not_its_name():
    sd15, sd21 = real_shapes("sd15"), real_shapes("sd21")
    assert detect(sd15, "sd21.safetensors").name == "sd1"
    # an SD2 UNet/VAE with SD1's text encoder keys swapped in reads as SD1, and then does not fit SD1's UNet
    mixed = {**{k: v for k, v in sd21.items() if not k.startswith("cond_stage_model.")},
             **{k: v for k, v in sd15.items() if k.startswith("cond_stage_model.")}}
    assert detect(mixed, "mixed").name == "sd1"
    with pytest.raises(CheckpointError, match="shape mismatch"):
        check_all(mixed, "mixed")
