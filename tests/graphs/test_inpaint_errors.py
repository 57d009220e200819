"""Bad input to graphs/inpaint.yaml, and an inpainting checkpoint given to stable_diffusion.yaml: one clear
message, exit ≠ 0, no traceback, no output file."""

from __future__ import annotations

import PIL.Image
import pytest
from test_sdxl_cli import run_cli
from tiny_inpaint import save_picture_and_mask
from tiny_pipelines import REPO


@pytest.mark.parametrize("case,graph,sets,expected", [
    ("unreadable mask", "inpaint.yaml", {"mask": "{tmp}/garbage.png"}, ["`mask`", "cannot be read as an image"]),
    ("missing image", "inpaint.yaml", {"image": "{tmp}/missing.png"}, ["`image`", "no image file"]),
    ("mask of another size", "inpaint.yaml", {"mask": "{tmp}/small.png"},
     ["`mask`", "is 20×16 but `image`", "is 24×16", "save the mask at the image's size"]),
    ("inpainting checkpoint to stable_diffusion.yaml", "stable_diffusion.yaml", {},
     ["inpainting checkpoint", "9 channels", "graphs/inpaint.yaml"]),
])
def test_bad_inpaint_input_is_one_clear_message_without_output(tiny_sd_inpaint, tmp_path, capsys, case, graph, sets,
                                                               expected):
    picture, mask = save_picture_and_mask(tmp_path)
    (tmp_path / "garbage.png").write_text("not a picture")
    PIL.Image.new("L", (20, 16)).save(tmp_path / "small.png")
    values = dict(model=tiny_sd_inpaint) if graph != "inpaint.yaml" else dict(model=tiny_sd_inpaint, image=picture,
                                                                               mask=mask)
    values.update({k: v.format(tmp=tmp_path) for k, v in sets.items()})
    code, err = run_cli(capsys, REPO / "graphs" / graph, tmp_path / "out", steps=2, **values)
    assert code in (1, 2), err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
