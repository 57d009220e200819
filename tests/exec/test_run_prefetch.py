"""exec/prefetch.py and `nodegraph run`: a run reads ahead exactly the weight files its loaders will load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodegraph import RunOptions, load_graph
from nodegraph.cli import main
from nodegraph.core.context import ComponentCache
from nodegraph.exec import prefetch
from nodegraph.exec.prefetch import files_for_run, start_prefetch
from nodegraph.spec.values import bind_input_values

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "nodegraph" / "builtin" / "digits"
SD = REPO / "graphs" / "stable_diffusion.yaml"


def planned(graph, **inputs) -> list[Path]:
    return files_for_run(graph.plan(), bind_input_values(graph.checked, inputs))


def digits(*components: str) -> list[Path]:
    names = {"text_encoder": "model.safetensors"}
    return [(DIGITS / c / names.get(c, "diffusion_pytorch_model.safetensors")).resolve() for c in components]


def test_a_run_reads_ahead_the_files_its_loaders_then_read_in_their_order(weight_files_read):
    graph = load_graph(SD)
    found = planned(graph, model="builtin:digits")
    graph.run(RunOptions(components=ComponentCache()), model="builtin:digits", steps=1)  # loads, not cached
    assert found == digits("unet", "vae", "text_encoder") == weight_files_read


def write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name


def test_a_model_passed_into_an_included_graph_is_followed(tmp_path):
    write(tmp_path, "loaders.yaml", """
nodegraph: 1
inputs: {model: {type: str}}
nodes:
  unet: {type: LoadUNet, model: $inputs.model}
outputs: {unet: $unet.unet}
""")
    main_graph = write(tmp_path, "main.yaml", """
nodegraph: 1
inputs: {model: {type: str}}
nodes:
  loaders: {type: ./loaders.yaml, model: $inputs.model}
  vae: {type: LoadVAE, model: builtin:digits}
outputs: {unet: $loaders.unet, vae: $vae.vae}
""")
    assert planned(load_graph(main_graph), model="builtin:digits") == digits("unet", "vae")


def test_the_vae_override_file_is_read_instead_of_the_models_vae(tmp_path):
    override = tmp_path / "my-vae.safetensors"
    override.write_bytes(b"x")
    found = planned(load_graph(SD), model="builtin:digits", vae=str(override))
    assert found == digits("unet") + [override.resolve()] + digits("text_encoder")


def test_a_model_another_node_computes_is_left_to_its_loader(tmp_path):
    graph = write(tmp_path, "g.yaml", """
nodegraph: 1
inputs: {model: {type: str}}
nodes:
  name: {type: FormatString, template: "builtin:{x}", x: digits}
  unet: {type: LoadUNet, model: $name.text}
  vae: {type: LoadVAE, model: $inputs.model}
outputs: {unet: $unet.unet, vae: $vae.vae}
""")
    assert planned(load_graph(graph), model="builtin:digits") == digits("vae")


def test_sdxl_graphs_follow_the_checked_model_and_a_refiner_skips_the_first_encoder(tmp_path):
    root = tmp_path / "sdxl"
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        (root / component).mkdir(parents=True)
        name = "model" if component.startswith("text") else "diffusion_pytorch_model"
        (root / component / f"{name}.safetensors").write_bytes(b"x")
    found = planned(load_graph(REPO / "graphs" / "sdxl.yaml"), model=str(root))
    assert [p.parent.name for p in found] == ["text_encoder_2", "text_encoder", "unet", "vae"]  # the plan's order
    refiner = write(tmp_path, "refiner.yaml", """
nodegraph: 1
inputs: {model: {type: str}}
nodes:
  clip: {type: LoadSDXLCLIP, model: $inputs.model, first_encoder: false}
outputs: {te: $clip.text_encoder_2}
""")
    assert [p.parent.name for p in planned(load_graph(refiner), model=str(root))] == ["text_encoder_2"]


@pytest.fixture
def spawned(monkeypatch):
    """The file lists the read-ahead process would be started with (none is started); every file looks cold."""
    lists = []
    monkeypatch.setattr("nodegraph.models.prefetch.spawn_read_ahead", lambda files: lists.append(files))
    monkeypatch.setattr("nodegraph.models.prefetch.looks_cached", lambda path: False)
    return lists


def test_files_already_in_the_page_cache_are_not_read_again(monkeypatch):
    from nodegraph.models import prefetch as files_prefetch

    lists, looks_cached = [], files_prefetch.looks_cached

    def read_then_look(path):  # read just before the look, so that no page-cache drop elsewhere falls between
        path.read_bytes()
        return looks_cached(path)

    monkeypatch.setattr(files_prefetch, "spawn_read_ahead", lambda files: lists.append(files))
    monkeypatch.setattr(files_prefetch, "looks_cached", read_then_look)
    graph = load_graph(SD)
    started = start_prefetch(graph, bind_input_values(graph.checked, {"model": "builtin:digits"}))
    assert started.files == [] and lists == [[]]


def test_the_prefetch_reads_nothing_when_memory_is_short(monkeypatch, spawned):
    monkeypatch.setattr("nodegraph.models.prefetch.available_memory", lambda: 1 << 20)  # 1 MB free
    graph = load_graph(SD)
    started = start_prefetch(graph, bind_input_values(graph.checked, {"model": "builtin:digits"}))
    assert started.files == [] and started.process is None and spawned == [[]]


def test_the_prefetch_reads_every_planned_file_when_memory_allows(monkeypatch, spawned):
    monkeypatch.setattr("nodegraph.models.prefetch.available_memory", lambda: 1 << 40)
    graph = load_graph(SD)
    started = start_prefetch(graph, bind_input_values(graph.checked, {"model": "builtin:digits"}))
    assert started.files == digits("unet", "vae", "text_encoder") and spawned == [started.files]


def test_the_read_ahead_process_is_stopped_when_the_run_ends(monkeypatch):
    monkeypatch.setattr("nodegraph.models.prefetch.looks_cached", lambda path: False)
    import subprocess
    import sys

    registered = []
    monkeypatch.setattr(prefetch.atexit, "register", registered.append)
    monkeypatch.setattr("nodegraph.models.prefetch.spawn_read_ahead",
                        lambda files: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    graph = load_graph(SD)
    started = start_prefetch(graph, bind_input_values(graph.checked, {"model": "builtin:digits"}))
    assert registered == [started.stop]
    started.stop()
    assert started.process.poll() is not None


def test_the_environment_variable_turns_the_prefetch_off(monkeypatch):
    monkeypatch.setenv("NODEGRAPH_PREFETCH", "0")
    graph = load_graph(SD)
    assert start_prefetch(graph, bind_input_values(graph.checked, {"model": "builtin:digits"})) is None


@pytest.mark.parametrize("flag", [[], ["--no-prefetch"]])
def test_nodegraph_run_prefetches_unless_told_not_to(flag, monkeypatch, tmp_path, capsys):
    started = []
    monkeypatch.setattr(prefetch, "start_prefetch", lambda graph, values: started.append(values["model"]))
    argv = ["run", str(SD), "--set", "model=builtin:digits", "--set", "steps=1", "--out", str(tmp_path), "-q"]
    assert main(argv + flag) == 0
    assert json.loads(capsys.readouterr().out)["image"]
    assert started == ([] if flag else ["builtin:digits"])


def test_torch_is_imported_for_the_prefetch_only_when_a_file_is_to_be_read():
    import subprocess
    import sys

    code = f"""
import sys
from nodegraph import load_graph
from nodegraph.exec.prefetch import start_prefetch
from nodegraph.models import prefetch
from nodegraph.spec.values import bind_input_values
looks_cached = prefetch.looks_cached
prefetch.looks_cached = lambda path: path.read_bytes() and looks_cached(path)  # read: nothing to read ahead
graph = load_graph({str(SD)!r})
started = start_prefetch(graph, bind_input_values(graph.checked, {{"model": "builtin:digits"}}))
print(started.files, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.split() == ["[]", "False"], done.stderr
