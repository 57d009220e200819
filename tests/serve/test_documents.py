"""The server's rules on where models and files may come from (both sides of each rule)."""

import pytest

from nodegraph.serve.documents import Documents


@pytest.fixture
def documents(tmp_path):
    (tmp_path / "models" / "sd").mkdir(parents=True)
    (tmp_path / "graphs").mkdir()
    return Documents(tmp_path / "data", [tmp_path / "graphs"], [tmp_path / "models"], store=None)


def test_models_come_from_builtin_the_hub_or_the_models_folders(documents, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    allowed = ["builtin:digits", "CompVis/stable-diffusion-v1-4", str(tmp_path / "models" / "sd"),
               str(tmp_path / "models" / "sd" / "model.safetensors")]
    refused = ["/etc", str(tmp_path / "models" / ".." / "graphs"), "../models/sd", "models/sd", "~/x", "sd",
               str(tmp_path / "data")]
    assert [documents._model_problem(v) for v in allowed] == [None] * len(allowed)
    assert all(documents._model_problem(v)[0] == "model_not_allowed" for v in refused)


def test_files_are_absolute_paths_inside_graphs_models_or_inputs(documents, tmp_path):
    allowed = [str(tmp_path / "graphs" / "a.png"), str(tmp_path / "data" / "inputs" / "b.png"),
               str(tmp_path / "models" / "lora.safetensors")]
    refused = ["a.png", "/etc/passwd", str(tmp_path / "graphs" / ".." / "secret.png"), str(tmp_path / "data" / "x")]
    assert [documents._file_problem(v) for v in allowed] == [None] * len(allowed)
    assert all(documents._file_problem(v)[0] == "path_not_allowed" for v in refused)
