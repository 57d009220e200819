"""nodegraph.runner, the one way from a front-end to the core: what the copies it replaced had drifted on."""

from __future__ import annotations

import pytest

DIVIDE = "nodegraph: 1\ninputs:\n  a: {type: float, default: 1.0}\n  b: {type: float, default: 2.0}\n" \
         "nodes:\n  d: {type: Divide, a: $inputs.a, b: $inputs.b}\noutputs: {x: $d.value}\n"


@pytest.fixture
def divide(tmp_path):
    path = tmp_path / "divide.yaml"
    path.write_text(DIVIDE)
    return path


def test_a_failed_node_names_the_graph_inputs_that_fed_it_in_every_front_end(divide, tmp_path, capsys):
    from nodegraph.batch import run_batch
    from nodegraph.cli import main

    assert main(["run", str(divide), "--set", "b=0", "--out", str(tmp_path / "out"), "-q"]) == 1
    assert "the node's graph inputs: a = 1.0, b = 0.0" in capsys.readouterr().err
    rows = run_batch(divide, {"b": [0.0]}, sets={"a": 3.0}, out=tmp_path / "batch")
    assert rows[0]["status"] == "failed" and "the node's graph inputs: a = 3.0, b = 0.0" in rows[0]["error"]


def test_a_png_is_read_once_to_re_run_it_in_the_mode_it_recorded(tmp_path, monkeypatch):
    import nodegraph.exec.png_metadata as png_metadata
    from nodegraph.core.mode import RunMode
    from nodegraph.runner import Runner, open_target, write_outputs

    from nodegraph import loads_graph

    graph = loads_graph("nodegraph: 1\ninputs: {v: {type: float, default: 0.5}}\nnodes:\n"
                        "  i: {type: SolidImage, value: $inputs.v}\noutputs: {image: $i.image}\n", base_dir=tmp_path)
    png_metadata.install()
    (written,) = write_outputs(graph, {"v": 0.25}, Runner(RunMode(fast=True)).run(graph, {"v": 0.25}),
                               tmp_path / "out", RunMode(fast=True))
    reads = []
    real = png_metadata.read_recipe
    monkeypatch.setattr(png_metadata, "read_recipe", lambda path: reads.append(path) or real(path))
    target = open_target(str(written.files[0]), tmp_path / "scratch")
    assert (target.kind, target.recorded, target.recorded_fast) == ("png", {"v": 0.25}, True)
    assert target.bind([]) == {"v": 0.25} and target.bind(["v=0.75"]) == {"v": 0.75}
    assert len(reads) == 1
