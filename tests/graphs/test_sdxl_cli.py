"""The SDXL graphs from the command line: bad input is one clear message (exit ≠ 0, no traceback, no output
file), and the PNG `parameters` name the refiner and its switch point. `nodegraph.cli.main` runs in-process:
the same code path as the console script, without paying for a fresh interpreter per case."""

from __future__ import annotations

import PIL.Image
import pytest
from tiny_pipelines import REPO

SDXL_GRAPH = REPO / "graphs" / "sdxl.yaml"
REFINER_GRAPH = REPO / "graphs" / "sdxl_refiner.yaml"
SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"


def run_cli(capsys, graph, out, **sets) -> tuple[int, str]:
    from nodegraph.cli import main

    args = ["run", str(graph), "--quiet", "--no-heap-reuse", "--out", str(out)]
    for name, value in sets.items():
        args += ["--set", f"{name}={value}"]
    code = main(args)
    return code, capsys.readouterr().err


@pytest.fixture(scope="session")
def single_files(tiny_sd, tiny_sdxl, tmp_path_factory) -> dict[str, str]:
    """The tiny SD1 pipeline and the tiny SDXL base written as single files (LDM / SGM layouts)."""
    from tests.models.single_file.ldm_layout import write_sd_file, write_sdxl_file

    root = tmp_path_factory.mktemp("family-files")
    return {"sd_file": str(write_sd_file(tiny_sd, root / "tiny-sd1.safetensors")),
            "base_file": str(write_sdxl_file(tiny_sdxl[0], root / "tiny-sdxl-base.safetensors"))}


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The components `load_component` is asked for during the test (tokenizers and scheduler configs too)."""
    import nodegraph.models.loading as loading

    asked, real = [], loading.load_component
    monkeypatch.setattr(loading, "load_component", lambda source, name, **kw: asked.append(name) or real(
        source, name, **kw))
    return asked


@pytest.mark.parametrize("case,graph,model,expected", [
    ("SDXL base folder to stable_diffusion.yaml", SD_GRAPH, "{base}",
     ["`model`", "holds an SDXL UNet", "needs a Stable Diffusion 1.x/2.x UNet", "run it with graphs/sdxl.yaml"]),
    ("SDXL base single file to stable_diffusion.yaml", SD_GRAPH, "{base_file}",
     ["`model`", "holds an SDXL UNet", "run it with graphs/sdxl.yaml"]),
    ("SDXL refiner folder to stable_diffusion.yaml", SD_GRAPH, "{refiner}",
     ["`model`", "holds an SDXL UNet", "as `refiner` of graphs/sdxl_refiner.yaml"]),
    ("SD1 folder to sdxl.yaml", SDXL_GRAPH, "{sd}",
     ["`model`", "Stable Diffusion 1.x/2.x checkpoint", "graphs/stable_diffusion.yaml"]),
    ("SD1 single file to sdxl.yaml", SDXL_GRAPH, "{sd_file}",
     ["`model`", "Stable Diffusion 1.x/2.x checkpoint", "graphs/stable_diffusion.yaml"]),
])
def test_a_checkpoint_of_the_other_family_is_refused_before_anything_loads(tiny_sdxl, tiny_sd, single_files, loads,
                                                                           tmp_path, capsys, case, graph, model,
                                                                           expected):
    base, refiner = tiny_sdxl
    model = model.format(sd=tiny_sd, base=base, refiner=refiner, **single_files)
    code, err = run_cli(capsys, graph, tmp_path / "out", model=model, steps=2)
    assert code in (1, 2), err
    for text in expected:
        assert text in err, err
    assert loads == [], f"{case}: loaded {loads} before refusing"
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case,graph,sets,expected", [
    ("refiner as model", SDXL_GRAPH, {"model": "{refiner}"},
     ["`model`", "SDXL refiner checkpoint", "pass it as `refiner` of graphs/sdxl_refiner.yaml"]),
    ("base as refiner", REFINER_GRAPH, {"model": "{base}", "refiner": "{base}"},
     ["`refiner`", "is an SDXL base checkpoint", "needs an SDXL refiner"]),
    ("high_noise_frac 1", REFINER_GRAPH, {"model": "{base}", "refiner": "{refiner}", "high_noise_frac": 1.0},
     ["inputs.high_noise_frac", "less than 1"]),
    ("high_noise_frac 0", REFINER_GRAPH, {"model": "{base}", "refiner": "{refiner}", "high_noise_frac": 0},
     ["inputs.high_noise_frac", "greater than 0"]),
    ("width not a multiple of 8", SDXL_GRAPH, {"model": "{base}", "width": 36},
     ["inputs.width", "multiple of 8"]),
])
def test_bad_sdxl_input_is_one_clear_message_without_output(tiny_sdxl, tiny_sd, tmp_path, capsys, case, graph, sets,
                                                           expected):
    base, refiner = tiny_sdxl
    values = {k: str(v).format(sd=tiny_sd, base=base, refiner=refiner) for k, v in sets.items()}
    code, err = run_cli(capsys, graph, tmp_path / "out", steps=2, **values)
    assert code in (1, 2), err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_refiner_png_names_the_refiner_and_the_switch_point(tiny_sdxl, tmp_path, capsys):
    base, refiner = tiny_sdxl
    code, err = run_cli(capsys, REFINER_GRAPH, tmp_path, model=base, refiner=refiner, prompt="a cat", steps=5,
                        high_noise_frac=0.6, height=32, width=32, seed=4)
    assert code == 0, err
    with PIL.Image.open(tmp_path / "image.png") as img:
        params = img.text["parameters"].splitlines()
    assert params[0] == "a cat"
    assert "Steps: 5, Sampler: Euler, CFG scale: 5.0, Seed: 4, Size: 32x32" in params[1]
    assert f"Refiner: {refiner}, Refiner switch at: 0.6" in params[1]


def one_shot_run(graph, inputs: dict, at: tuple[str, ...]):
    """Run `graph` as `nodegraph run` does (exec/run_scoped.py); return its image and, when each node of `at`
    starts, the (role, component) pairs still held ("base"/"refiner" for the checkpoint they come from)."""
    from nodegraph import run_graph
    from nodegraph.exec.events import NodeStarted
    from nodegraph.exec.run_scoped import RunScopedComponents

    components, held_at = RunScopedComponents(), {}
    roles = {inputs["model"]: "base", inputs.get("refiner"): "refiner"}

    def record(event):
        if isinstance(event, NodeStarted) and event.node_id in at:
            held_at[event.node_id] = sorted((roles[key[1]], key[4]) for key in components.held()
                                            if key[0] == "component")

    return run_graph(graph, inputs, device="cpu", hooks=[record], components=components)["image"], held_at


def test_a_one_shot_sdxl_run_frees_the_text_encoders_before_the_unet_loads_and_the_unet_before_decoding(tiny_sdxl):
    """The peak memory of `nodegraph run` is the largest phase, not all models together."""
    import torch

    from nodegraph import run_graph

    inputs = dict(model=str(tiny_sdxl[0]), prompt="a cat", negative_prompt="a dog", steps=2, height=32, width=32)
    image, held_at = one_shot_run(SDXL_GRAPH, inputs, ("cond", "unet", "decode"))
    encoders = [("base", "text_encoder"), ("base", "text_encoder_2"), ("base", "tokenizer"), ("base", "tokenizer_2")]
    assert held_at == {"cond": encoders, "unet": [], "decode": [("base", "vae")]}
    assert torch.equal(image, run_graph(SDXL_GRAPH, inputs, device="cpu")["image"])  # the process-wide cache


def test_a_one_shot_refiner_run_holds_one_unet_at_a_time_and_no_text_encoder_beside_a_unet(tiny_sdxl):
    import torch

    from nodegraph import run_graph

    base, refiner = tiny_sdxl
    inputs = dict(model=str(base), refiner=str(refiner), prompt="a cat", steps=4, high_noise_frac=0.5, height=32,
                  width=32)
    image, held_at = one_shot_run(REFINER_GRAPH, inputs, ("unet", "refiner_unet", "decode"))
    assert held_at == {"unet": [], "refiner_unet": [("refiner", "vae")], "decode": [("refiner", "vae")]}
    assert torch.equal(image, run_graph(REFINER_GRAPH, inputs, device="cpu")["image"])
