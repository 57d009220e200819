"""`nodegraph pack`: a folder ready to be a Hub repo, with a README model card generated from the graph."""

import pathlib

import PIL.Image
import pytest
from hub_cache import COMMIT_V1, add_commit
from huggingface_hub import ModelCard

from nodegraph import load_graph
from nodegraph.cli import main

GRAPHS = pathlib.Path(__file__).resolve().parents[2] / "graphs"


@pytest.fixture
def example(tmp_path):
    path = tmp_path / "made.png"
    PIL.Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    return path


def test_pack_writes_the_graph_its_includes_a_model_card_and_the_example(tmp_path, example, capsys):
    out = tmp_path / "pack"
    assert main(["pack", str(GRAPHS / "stable_diffusion.yaml"), str(out), "--image", str(example),
                 "--repo", "alice/sd"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "example.png", "sd_denoise_step.yaml",
                                                    "stable_diffusion.yaml"]
    for name in ("stable_diffusion.yaml", "sd_denoise_step.yaml"):
        assert (out / name).read_text() == (GRAPHS / name).read_text()
    assert (out / "example.png").read_bytes() == example.read_bytes()
    assert "hf upload alice/sd" in capsys.readouterr().err

    card = ModelCard.load(out / "README.md")  # the Hub's own parser reads the metadata
    assert card.data.library_name == "nodegraph" and "nodegraph" in card.data.tags
    text = card.text
    assert "Text to image with classifier-free guidance" in text
    assert "nodegraph run hf://alice/sd/stable_diffusion.yaml --out out" in text
    assert "| `steps` | int | `25` | 1 … 1000 | Number of denoising steps. |" in text
    assert "`\"\"`, `pndm`, `ddim`" in text  # the scheduler choices
    assert "| `image` | Image |" in text
    assert "- `TextEncode@1` — Encode a prompt with CLIP." in text and "- `VAEDecode@1`" in text
    assert "![an image made by this graph](example.png)" in text


def test_a_packed_folder_works_as_a_hub_repo(tmp_path, hub_cache):
    out = tmp_path / "pack"
    assert main(["pack", str(GRAPHS / "stable_diffusion.yaml"), str(out), "--repo", "alice/sd"]) == 0
    add_commit(hub_cache, "alice/sd", COMMIT_V1, {p.name: p.read_text() for p in out.iterdir()})
    graph = load_graph("hf://alice/sd/stable_diffusion.yaml")
    assert graph.checked.nodes["denoise"].body.nodes["step"].subgraph.source.hub.address.path == "sd_denoise_step.yaml"


def test_requirements_are_listed(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text("description: One number.\nrequires: [nodegraph>=0.1]\ninputs:\n  v: {type: int}\n"
                     "nodes:\n  one: {type: Int, value: $inputs.v}\noutputs: {x: $one.value}\n")
    assert main(["pack", str(graph), str(tmp_path / "pack")]) == 0
    text = (tmp_path / "pack" / "README.md").read_text()
    assert "- `nodegraph>=0.1`" in text and "| `v` | int | (required) |" in text
    assert "nodegraph run hf://OWNER/REPO/g.yaml --set v=... --out out" in text


def test_pack_refuses_a_non_empty_folder_an_invalid_graph_or_a_non_png_and_writes_nothing(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["pack", str(GRAPHS / "ddpm.yaml"), str(busy)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and [p.name for p in busy.iterdir()] == ["keep.txt"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  a: {type: Nope}\noutputs: {x: $a.x}\n")
    assert main(["pack", str(bad), str(tmp_path / "out1")]) == 2
    assert "bad.yaml:2:" in capsys.readouterr().err
    assert main(["pack", str(GRAPHS / "ddpm.yaml"), str(tmp_path / "out2"), "--image", str(bad)]) == 2
    assert "not a PNG" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "busy"]  # no folder, no staging left


def test_a_hub_graph_packs_at_its_pinned_commit(tmp_path, hub_cache):
    assert main(["pack", "hf://alice/graphs@v1/graph.yaml", str(tmp_path / "pack"), "--repo", "me/copy"]) == 0
    assert (tmp_path / "pack" / "parts" / "scale.yaml").read_text().count("value: 10.0") == 1  # commit 1's
    assert sorted(p.relative_to(tmp_path / "pack").as_posix() for p in (tmp_path / "pack").rglob("*.yaml")) == \
        ["graph.yaml", "parts/scale.yaml"]
    assert load_graph(tmp_path / "pack" / "graph.yaml").run(x=2.0) == {"y": 20.0}
