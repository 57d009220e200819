"""Nodes that format user text or make lists cannot reach secrets or ask for gigabytes.

A template is refused at validation when it is written in the graph, at run when it comes from an input;
the process's environment (a fake HF_TOKEN here) never appears in an output or a message.
"""

import os
import tracemalloc

import pytest
from hostile_audit import FAKE_TOKEN

from nodegraph import loads_graph
from nodegraph.cli import main
from nodegraph.spec.errors import ValidationFailed

WALKS = [  # from any input object to os.environ, and the other ways str.format reaches beyond a field
    "{x.__init__.__globals__[os].environ[HF_TOKEN]}",
    "{x.__class__.__init__.__globals__}",
    "{y.__class__}",
    "{x[0]}",
    "{x[HF_TOKEN]}",
    "{0}", "{}", "{x.real}", "{z}",
    "{x:{y}}",  # a field inside a format spec
    "{x!z}",
    "{x:>2500000000}", "{x:.2500000000f}", "{x:>99999999999999999999}", "{x:1025}",
    "{x:not a spec}",
    "unclosed {x",
]


def graph(template_literal=None):
    template = f"template: {template_literal!r}" if template_literal is not None else "template: $inputs.t"
    return ("inputs:\n  t: {type: str, default: ok}\n  v: {type: Any, default: [1, 2]}\nnodes:\n"
            f"  f: {{type: FormatString, {template}, x: $inputs.v, y: 3.5}}\noutputs: {{text: $f.text}}\n")


@pytest.mark.parametrize("template", WALKS)
def test_a_literal_template_reaching_beyond_its_fields_is_refused_at_validation(template, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    with pytest.raises(ValidationFailed) as caught:
        loads_graph(graph(template))
    (error,) = caught.value.errors
    assert (error.path, error.line) == ("nodes.f.template", 5), str(error)
    assert "{x}" in error.hint
    assert FAKE_TOKEN not in caught.value.report()


@pytest.mark.parametrize("template", WALKS)
def test_a_template_given_at_run_time_is_refused_when_the_node_runs(template, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    path = tmp_path / "g.yaml"
    path.write_text(graph())
    tracemalloc.start()
    try:
        code = main(["run", str(path), "--set", f"t={template}", "--out", str(tmp_path / "out"), "-q"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    assert code in (1, 2), out
    assert "template" in err and "internal error" not in err
    assert FAKE_TOKEN not in out + err and "environ" not in out
    assert peak < 100 * 2**20


@pytest.mark.parametrize("template, expected", [
    ("step {x} of {y}", "step [1, 2] of 3.5"), ("{y:>6.2f}|{x!r:<10}|", "  3.50|[1, 2]    |"),
    ("{{literal}} {y:_^9}", "{literal} ___3.5___"), ("{x!s:.3}", "[1,")])
def test_plain_fields_with_formats_still_work(template, expected):
    assert loads_graph(graph(template)).run() == {"text": expected}


def range_graph(stop, start=0, step=1, repeat=True):
    body = ("  rep:\n    type: repeat\n    over: $r.values\n    state: {n: 0.0}\n    nodes:\n"
            "      add: {type: Add, a: $state.n, b: 1}\n    next: {n: $add.value}\n")
    return ("inputs:\n  stop: {type: int, default: 3}\nnodes:\n"
            f"  r: {{type: Range, stop: {stop}, start: {start}, step: {step}}}\n" + (body if repeat else "")
            + (f"outputs: {{n: $rep.n}}\n" if repeat else "outputs: {v: $r.values}\n"))


@pytest.mark.parametrize("stop, start, step", [(10**9, 0, 1), (10**12, 0, 7), (0, 10**9, -1), (-10**9, 0, -1),
                                               (100_001, 0, 1)])
def test_a_range_over_the_list_limit_is_refused_at_validation_when_literal(stop, start, step):
    with pytest.raises(ValidationFailed) as caught:
        loads_graph(range_graph(stop, start, step))
    (error,) = caught.value.errors
    assert (error.path, error.line) == ("nodes.r.stop", 4) and "over the limit of 100,000" in error.message


def test_a_range_fed_at_run_time_is_refused_before_the_list_is_made(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(range_graph("$inputs.stop"))
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    tracemalloc.start()
    try:
        code = main(["run", str(path), "--set", "stop=1000000000", "-q"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2 and "1,000,000,000 elements" in err and "internal error" not in err
    assert peak < 100 * 2**20


def test_a_range_computed_by_another_node_is_refused_when_it_runs():
    text = range_graph("$i.value").replace("nodes:\n", "nodes:\n  i: {type: Int, value: 1000000000}\n", 1)
    g = loads_graph(text)  # not known before running: validation passes
    with pytest.raises(Exception) as caught:
        g.run()
    assert "1,000,000,000 elements" in str(caught.value)


def test_the_list_limit_is_raised_by_the_environment(monkeypatch):
    assert loads_graph(range_graph(1000)).run() == {"n": 1000.0}
    monkeypatch.setenv("NODEGRAPH_MAX_LIST_LENGTH", "500")
    with pytest.raises(ValidationFailed):
        loads_graph(range_graph(1000))
    monkeypatch.setenv("NODEGRAPH_MAX_LIST_LENGTH", "200000")
    assert loads_graph(range_graph(150_000, repeat=False)).run()["v"][-1] == 149_999


def test_a_repeat_over_a_long_input_list_is_refused_at_run():
    text = ("inputs:\n  xs: {type: list}\nnodes:\n  rep:\n    type: repeat\n    over: $inputs.xs\n"
            "    state: {n: 0.0}\n    nodes:\n      add: {type: Add, a: $state.n, b: 1}\n    next: {n: $add.value}\n"
            "outputs: {n: $rep.n}\n")
    with pytest.raises(Exception) as caught:
        loads_graph(text).run(xs=list(range(100_001)))
    assert "100,001 elements" in str(caught.value)
    assert os.environ.get("NODEGRAPH_MAX_LIST_LENGTH") is None
