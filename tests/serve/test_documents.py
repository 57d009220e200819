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
    assert not any(str(tmp_path) in " ".join(documents._model_problem(v)[1:]) for v in ("/etc", "sd"))  # no folder shown


def test_files_are_absolute_paths_inside_graphs_models_or_inputs(documents, tmp_path):
    allowed = [str(tmp_path / "graphs" / "a.png"), str(tmp_path / "data" / "inputs" / "b.png"),
               str(tmp_path / "models" / "lora.safetensors")]
    refused = ["a.png", "/etc/passwd", str(tmp_path / "graphs" / ".." / "secret.png"), str(tmp_path / "data" / "x")]
    assert [documents._file_problem(v) for v in allowed] == [None] * len(allowed)
    assert all(documents._file_problem(v)[0] == "path_not_allowed" for v in refused)
    assert str(tmp_path) not in " ".join(documents._file_problem("/etc/passwd")[1:])  # the server's folders stay private


def test_a_graph_changed_on_disk_is_read_again_and_an_unchanged_one_is_not(tmp_path, monkeypatch):
    import nodegraph.serve.documents as documents_module
    from nodegraph.serve.queue import RunStore

    (tmp_path / "graphs").mkdir()
    graph = tmp_path / "graphs" / "add.yaml"
    graph.write_text("nodegraph: 1\nnodes:\n  a: {type: Add, a: 1, b: 2}\noutputs: {x: $a.value}\n")
    documents = Documents(tmp_path / "data", [tmp_path / "graphs"], [], RunStore(tmp_path / "runs.sqlite"))
    _, first, _ = documents.submit("add", None)
    reads = []
    original = documents_module.Documents._named
    monkeypatch.setattr(documents_module.Documents, "_named",
                        lambda self, name: reads.append(name) or original(self, name))
    assert documents.submit("add", None)[1] == first and reads == []
    graph.write_text("nodegraph: 1\nnodes:\n  a: {type: Add, a: 1, b: 30}\noutputs: {x: $a.value}\n")
    _, second, _ = documents.submit("add", None)
    assert reads == ["add"] and second != first
    assert documents.graph(second).run() == {"x": 31.0}


def test_every_shipped_graph_passes_the_location_rules_and_a_computed_path_does_not():
    from serve_helpers import ROOT

    from nodegraph import load_graph, loads_graph
    from nodegraph.serve.documents import COMPUTED, location_values
    from nodegraph.spec.values import bind_input_values

    for path in sorted((ROOT / "graphs").glob("*.yaml")):
        graph = load_graph(path)
        values = bind_input_values(graph.checked, {}, require_all=False)
        assert [w for _, v, w in location_values(graph.checked, values) if v is COMPUTED] == [], path.name
    sneaky = loads_graph("nodegraph: 1\nnodes:\n  s: {type: FormatString, template: '/etc/{x}', x: passwd}\n"
                         "  i: {type: LoadImage, path: $s.text}\noutputs: {image: $i.image}\n")
    assert [(p, v) for p, v, _ in location_values(sneaky.checked, {})] == [("path", COMPUTED)]
