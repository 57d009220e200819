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
     ["`start` 0.5 must be below `end` 0.5", "input `control_start`", "[out_of_range]"]),
    ("control_start > control_end, refused before any model loads",
     {"control_start": 0.9, "control_end": 0.2, "model": "{tmp}/no-such-model", "controlnet": "{tmp}/no-such-cn"},
     ["nodes.control_range.start", "`start` 0.9 must be below `end` 0.2"]),
    ("control_end outside [0, 1]", {"control_end": 1.5}, ["`--set control_end=1.5`", "above the maximum 1"]),
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


def line_of(path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_control_start_not_below_end_is_refused_at_validation_at_its_line(capsys):
    from nodegraph.cli import main

    code = main(["validate", str(GRAPH), "--set", "control_start=0.9", "--set", "control_end=0.2"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"controlnet.yaml:{line_of(GRAPH, 'start: $inputs.control_start')}:" in err, err
    assert "[out_of_range]" in err and "Traceback" not in err


def test_a_literal_range_in_a_users_graph_is_refused_when_the_graph_loads(tmp_path):
    from nodegraph import ValidationFailed, load_graph

    graph = tmp_path / "mine.yaml"
    step = "controlnet_denoise_step.yaml"
    (tmp_path / step).write_text((REPO / "graphs" / step).read_text())
    graph.write_text((REPO / "graphs" / "multi_controlnet.yaml").read_text()
                     .replace("start: $inputs.control_start_2", "start: 0.8").replace("end: $inputs.control_end_2",
                                                                                        "end: 0.3"))
    with pytest.raises(ValidationFailed) as caught:
        load_graph(graph)
    [error] = caught.value.errors
    assert (error.code, error.line) == ("out_of_range", line_of(graph, "start: 0.8"))
    assert "`start` 0.8 must be below `end` 0.3" in error.message


def test_input_defaults_that_make_an_empty_range_are_refused_by_validate(tmp_path):
    from nodegraph import ValidationFailed, load_graph

    graph = tmp_path / "defaults.yaml"
    step = "controlnet_denoise_step.yaml"
    (tmp_path / step).write_text((REPO / "graphs" / step).read_text())
    graph.write_text(GRAPH.read_text().replace("control_end: {type: float, default: 1.0",
                                               "control_end: {type: float, default: 0.0"))
    with pytest.raises(ValidationFailed) as caught:
        load_graph(graph)
    assert [e.path for e in caught.value.errors] == ["nodes.control_range.start"]


def test_run_graph_refuses_an_empty_range_before_any_node_runs(tiny_sd, tiny_controlnets, tmp_path):
    from nodegraph import ValidationFailed, run_graph

    started = []
    with pytest.raises(ValidationFailed):
        run_graph(GRAPH, inputs=dict(model=str(tiny_sd), controlnet=str(tiny_controlnets[0]),
                                     image=str(save_pattern(tmp_path / "c.png", 16, 16, 0)), control_start=0.6,
                                     control_end=0.4), hooks=[started.append])
    assert started == []
