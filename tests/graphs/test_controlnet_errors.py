"""Bad input to graphs/controlnet.yaml from the command line: one clear message, exit ≠ 0, no traceback, no
output file."""

from __future__ import annotations

import pytest
from test_sdxl_cli import run_cli
from tiny_controlnet import save_pattern
from tiny_pipelines import REPO

GRAPH = REPO / "graphs" / "controlnet.yaml"


@pytest.fixture(scope="module")
def other_family_controlnet(tmp_path_factory):
    """A ControlNet for a model with another text width (like an SD2 ControlNet given an SD1 model)."""
    from diffusers import ControlNetModel

    folder = tmp_path_factory.mktemp("other") / "cn"
    ControlNetModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=24, attention_head_dim=2,
                    norm_num_groups=16, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                    conditioning_embedding_out_channels=(8, 16)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("case,sets,expected", [
    ("control_start = control_end", {"control_start": 0.5, "control_end": 0.5},
     ["`control_start` 0.5 must be below `control_end` 0.5"]),
    ("control_start > control_end, refused before any model loads",
     {"control_start": 0.9, "control_end": 0.2, "model": "{tmp}/no-such-model", "controlnet": "{tmp}/no-such-cn"},
     ["node `control_range`", "must be below `control_end`"]),
    ("missing control image", {"image": "{tmp}/missing.png"}, ["no image file", "missing.png"]),
    ("unreadable control image", {"image": "{tmp}/garbage.png"}, ["cannot be read as an image"]),
    ("a UNet as controlnet", {"controlnet": "{sd}/unet"}, ["not a ControlNetModel", "`controlnet`"]),
    ("ControlNet of another family", {"controlnet": "{other}"},
     ["`controlnet` was made for another model family", "text width 24", "text width 32"]),
    ("inpainting checkpoint", {"model": "{inpaint}"}, ["9 channels", "graphs/inpaint.yaml"]),
])
def test_bad_controlnet_input_is_one_clear_message_without_output(tiny_sd, tiny_sd_inpaint, tiny_controlnets,
                                                                  other_family_controlnet, tmp_path, capsys, case,
                                                                  sets, expected):
    (tmp_path / "garbage.png").write_text("not a picture")
    values = dict(model=tiny_sd, controlnet=tiny_controlnets[0], image=save_pattern(tmp_path / "c.png", 16, 16, 0))
    values.update({k: str(v).format(tmp=tmp_path, sd=tiny_sd, other=other_family_controlnet, inpaint=tiny_sd_inpaint)
                   for k, v in sets.items()})
    code, err = run_cli(capsys, GRAPH, tmp_path / "out", steps=2, **values)
    assert code in (1, 2), err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
