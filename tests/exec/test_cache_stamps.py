"""The node cache stats only the values given to ports typed as locations (`FilePath`, `ModelSource`), through
included graphs and repeat bodies too; a plain string that happens to name a file is text."""

import pytest

from nodegraph import RunOptions, loads_graph
from nodegraph.core import Node, Ports, node
from nodegraph.core.registry import Registry
from nodegraph.core.types import FilePath, ModelSource
from nodegraph.exec import events as ev


class DictCache(dict):
    def put(self, signature, outputs):
        self[signature] = outputs


class Ran(list):
    """Ids of the nodes that ran (top-level or not)."""

    def __call__(self, event):
        if type(event) is ev.NodeFinished:
            self.append(event.node_id)


def reader(name: str, annotation):
    @node(name, version=1, register=False)
    class Reader(Node):
        """Reads the file its port names (pure: same file, same output)."""

        class Inputs(Ports):
            where: annotation

        class Outputs(Ports):
            text: str

        def run(self, i, ctx):
            with open(i.where) as f:
                return {"text": f.read()}

    return Reader


@pytest.fixture(scope="module")
def registry():
    found = Registry(plugins=False)
    for name, annotation in (("ReadFile", FilePath), ("ReadModel", ModelSource), ("ReadPlain", str)):
        found.add(reader(name, annotation))
    return found


def runner(graph, cache, **inputs):
    def run():
        ran = Ran()
        return graph.run(RunOptions(hooks=[ran], cache=cache), **inputs)["text"], ran
    return run


@pytest.mark.parametrize("node_type", ["ReadFile", "ReadModel"])
def test_a_file_given_to_a_location_port_is_read_again_when_it_changes(tmp_path, registry, node_type):
    data = tmp_path / "data.txt"
    data.write_text("a")
    graph = loads_graph(f"nodes:\n  r: {{type: {node_type}, where: \"{data}\"}}\noutputs: {{text: $r.text}}\n",
                        base_dir=tmp_path, registry=registry)
    run = runner(graph, DictCache())
    assert run() == ("a", ["r"])
    assert run() == ("a", [])
    data.write_text("bb")  # a new size: the test does not depend on the clock's resolution
    assert run() == ("bb", ["r"])


def test_a_plain_string_port_naming_a_file_is_text_and_never_stat_ed(tmp_path, registry):
    data = tmp_path / "data.txt"
    data.write_text("a")
    graph = loads_graph(f"inputs: {{where: {{type: str}}}}\nnodes:\n  r: {{type: ReadPlain, where: $inputs.where}}\n"
                        "outputs: {text: $r.text}\n", base_dir=tmp_path, registry=registry)
    run = runner(graph, DictCache(), where=str(data))
    assert run() == ("a", ["r"])
    data.write_text("bb")
    assert run() == ("a", [])  # undeclared, so the cache cannot know: a node reading files types its port


def test_a_location_reached_through_an_included_graph_or_a_repeat_body_is_stat_ed(tmp_path, registry):
    given, inner_default, looped = (tmp_path / name for name in ("given.txt", "default.txt", "looped.txt"))
    for path in (given, inner_default, looped):
        path.write_text("x")
    (tmp_path / "inner.yaml").write_text(
        f"nodegraph: 1\ninputs:\n  p: {{type: str}}\n  q: {{type: str, default: \"{inner_default}\"}}\n"
        "nodes:\n  a: {type: ReadFile, where: $inputs.p}\n  b: {type: ReadFile, where: $inputs.q}\n"
        "  j: {type: FormatString, template: '{x}{y}', x: $a.text, y: $b.text}\noutputs: {text: $j.text}\n")
    graph = loads_graph(f"""
inputs: {{path: {{type: str}}}}
nodes:
  inc: {{type: ./inner.yaml, p: $inputs.path}}
  rep:
    type: repeat
    over: [1]
    state: {{text: $inc.text}}
    nodes:
      r: {{type: ReadFile, where: "{looped}"}}
      j: {{type: FormatString, template: '{{x}}{{y}}', x: $state.text, y: $r.text}}
    next: {{text: $j.text}}
outputs: {{text: $rep.text}}
""", base_dir=tmp_path, registry=registry)
    run = runner(graph, DictCache(), path=str(given))
    assert run()[0] == "xxx"
    assert run() == ("xxx", [])
    for path, text in ((given, "1_"), (inner_default, "2_"), (looped, "3_")):
        path.write_text(text)
        result, ran = run()
        assert ran and result == "".join(p.read_text() for p in (given, inner_default, looped)), path.name
