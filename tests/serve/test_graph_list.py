"""GET /graphs' list keeps graphs loaded between calls, and loads a graph again when its file or a file it
includes changed on disk."""

import os

from nodegraph.serve.documents import Documents

MAIN = """nodegraph: 1
description: {description}
inputs:
  value: {{type: float, default: 1.0}}
nodes:
  inner: {{type: ./inner.yaml, value: $inputs.value}}
outputs:
  value: $inner.value
"""
INNER = """nodegraph: 1
inputs:
  value: {type: float, default: 0.0}
nodes:
  add: {type: Add, a: $inputs.value, b: 1.0}
outputs:
  value: $add.value
"""


def touch_later(path, text):
    before = os.stat(path).st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a coarse clock could give the same time


def test_a_changed_graph_file_or_include_is_read_again_and_an_unchanged_one_is_not(tmp_path):
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "main.yaml").write_text(MAIN.format(description="First."))
    (graphs / "inner.yaml").write_text(INNER)
    documents = Documents(tmp_path / "data", [graphs], [], store=None)
    first = {g["name"]: g for g in documents.describe_graphs()}
    assert first["main"]["description"] == "First."
    loaded = documents._graph_list._loaded[graphs.resolve() / "main.yaml"][0]
    documents.describe_graphs()
    assert documents._graph_list._loaded[graphs.resolve() / "main.yaml"][0] is loaded  # not loaded again

    touch_later(graphs / "main.yaml", MAIN.format(description="Second, longer."))
    assert {g["name"]: g for g in documents.describe_graphs()}["main"]["description"] == "Second, longer."

    touch_later(graphs / "inner.yaml", INNER.replace("type: Add", "type: NoSuchNode"))
    assert [g["name"] for g in documents.describe_graphs()] == []  # neither validates now
    touch_later(graphs / "inner.yaml", INNER)
    assert sorted(g["name"] for g in documents.describe_graphs()) == ["inner", "main"]
