"""Malformed documents from strangers get a located message and exit 2, never "internal error": ComfyUI
workflows (UI and API), PNG recipes, YAML with control characters. (Safetensors headers:
test_hostile_weights.py; random mutations of all of them: test_hostile_property.py.)"""

import copy
import importlib.util
import json
import pathlib

import PIL.Image
import PIL.PngImagePlugin
import pytest

from nodegraph.cli import main

_spec = importlib.util.spec_from_file_location("comfy_workflows",
                                               pathlib.Path(__file__).parents[1] / "comfy" / "workflows.py")
workflows = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workflows)


def ui_with(change):
    doc = workflows.default_ui()
    change(doc)
    return doc


def set_inputs(value):
    return lambda doc: doc["nodes"][0].__setitem__("inputs", value)


UI_CASES = {
    "inputs a number": (set_inputs(5), "nodes[0].inputs"),
    "inputs a list of strings": (set_inputs(["model", "seed"]), "nodes[0].inputs[0]"),
    "link slot a string": (lambda d: d["links"][0].__setitem__(2, "0"), "links"),
    "link slot negative": (lambda d: d["links"][0].__setitem__(2, -1), "links"),
    "links not a list": (lambda d: d.__setitem__("links", {"1": [1, 4, 0, 3, 0]}), "links"),
    "link id a list": (lambda d: d["links"][0].__setitem__(0, [1]), "links"),
    "slot link a list": (lambda d: d["nodes"][0]["inputs"][0].__setitem__("link", [1]), "nodes[0].inputs[0].link"),
    "node id a float": (lambda d: d["nodes"][0].__setitem__("id", 3.5), "nodes[0].id"),
    "node type a number": (lambda d: d["nodes"][1].__setitem__("type", 4), "nodes[1].type"),
    "widget a string": (lambda d: d["nodes"][0]["inputs"][4].__setitem__("widget", "seed"),
                        "nodes[0].inputs[4].widget"),
    "widget value a list": (lambda d: d["nodes"][0]["widgets_values"].__setitem__(2, ["a", "b"]), "3.inputs.steps"),
    "mode a string": (lambda d: d["nodes"][0].__setitem__("mode", "bypass"), "nodes[0].mode"),
    "outputs a dict": (lambda d: d["nodes"][1].__setitem__("outputs", {"MODEL": 1}), "nodes[1].outputs"),
}

API_CASES = {
    "inputs a list": (lambda d: d["3"].__setitem__("inputs", [1, 2]), "3.inputs"),
    "class_type a number": (lambda d: d["3"].__setitem__("class_type", 3), "3.class_type"),
    "link slot a string": (lambda d: d["3"]["inputs"].__setitem__("model", ["4", "0"]), "3.inputs.model"),
    "link of three": (lambda d: d["3"]["inputs"].__setitem__("model", ["4", 0, 1]), "3.inputs.model"),
    "link node a list": (lambda d: d["3"]["inputs"].__setitem__("model", [["4"], 0]), "3.inputs.model"),
    "link slot true": (lambda d: d["3"]["inputs"].__setitem__("model", ["4", True]), "3.inputs.model"),
}


def run(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize("case", list(UI_CASES))
def test_a_malformed_ui_workflow_is_refused_at_the_place(tmp_path, capsys, case):
    change, where = UI_CASES[case]
    code, err = run(tmp_path, capsys, "wf.json", json.dumps(ui_with(change)))
    assert code == 2 and f"`{where}" in err and "wf.json" in err, err


@pytest.mark.parametrize("case", list(API_CASES))
def test_a_malformed_api_workflow_is_refused_at_the_place(tmp_path, capsys, case):
    change, where = API_CASES[case]
    doc = copy.deepcopy(workflows.DEFAULT_API)
    change(doc)
    code, err = run(tmp_path, capsys, "wf.json", json.dumps(doc))
    assert code == 2 and f"`{where}" in err, err


@pytest.mark.parametrize("digits", [101, 5_000, 100_000])
def test_a_number_too_long_is_refused_with_its_line(tmp_path, capsys, digits):
    text = json.dumps(workflows.DEFAULT_API, indent=1).replace('"seed": 5', '"seed": ' + "9" * digits)
    assert '"seed": 999' in text
    code, err = run(tmp_path, capsys, "wf.json", text)
    line = text[:text.index("9" * 50)].count("\n") + 1
    assert code == 2 and f"wf.json:{line}:" in err and f"a number of {digits:,} characters" in err


def test_a_number_too_long_in_a_ui_workflow_widget_is_refused(tmp_path, capsys):
    text = json.dumps(workflows.default_ui()).replace("[123,", "[1" + "0" * 5000 + ",")
    code, err = run(tmp_path, capsys, "wf.json", text)
    assert code == 2 and "5,001 characters" in err


def recipe_png(tmp_path, recipe):
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text("nodegraph", json.dumps(recipe) if not isinstance(recipe, str) else recipe)
    path = tmp_path / "r.png"
    PIL.Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


GRAPH = "nodes:\n  one: {type: Int, value: 1}\noutputs: {x: $one.value}\n"


@pytest.mark.parametrize("recipe, words", [
    ({"graph": {"format": 1, "main": "g.yaml", "files": {"g.yaml": GRAPH, "a\x00b.yaml": GRAPH}}, "inputs": {}},
     "outside its folder"),
    ({"graph": {"format": 1, "main": ["g.yaml"], "files": {"g.yaml": GRAPH}}, "inputs": {}}, "`main`"),
    ({"graph": {"format": 1, "main": "g.yaml", "files": {"g.yaml": GRAPH}}, "inputs": [1]}, "`inputs`"),
    ({"graph": "g.yaml", "inputs": {}}, "`graph`"),
    ('{"graph": {"format": 1, "main": "g.yaml", "files": {}}, "inputs": {"n": ' + "7" * 5000 + "}}",
     "5,000 characters"),
    ("[1, 2]", "not a recipe"),
])
def test_a_malformed_png_recipe_is_refused(tmp_path, capsys, recipe, words):
    code, err = run(tmp_path, capsys, "r.png", recipe_png(tmp_path, recipe).read_bytes())
    assert code == 2 and words in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("char", ["\x08", "\x00", "\x1b", "\ufffe"])
def test_control_characters_in_a_graph_file_are_a_located_syntax_error(tmp_path, capsys, char):
    path = tmp_path / "g.yaml"
    path.write_text(f"nodes:\n  one: {{type: Int, value: 1}}\noutputs: {{x: $one.value}}{char}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "g.yaml:3:" in err and "yaml_syntax" in err and "internal error" not in err


@pytest.mark.parametrize("text, expected", [
    ("base: &b {x: 1, default: 2}\nn: {<<: *b, default: 5}\n", {"x": 1, "default": 5}),  # the example
    ("base: &b {x: 1}\nn:\n  x: 9\n  <<: *b\n", {"x": 9}),  # written before the merge: still wins
    ("a: &a {x: 1}\nb: &b {x: 2, y: 3}\nn:\n  <<: [*a, *b]\n", {"x": 1, "y": 3}),  # first listed mapping wins
    ("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nn: {<<: *b, y: 3, z: 4}\n", {"x": 1, "y": 3, "z": 4}),  # nested
])
def test_merge_keys_follow_the_yaml_spec(text, expected):
    import yaml

    from nodegraph.spec.yaml_io import load_yaml

    data, _, errors = load_yaml(text, "f.yaml")
    assert errors == [] and data["n"] == expected == yaml.safe_load(text)["n"]


@pytest.mark.parametrize("text, line", [
    ("a: &a {x: 1}\nn: {<<: *a, x: 2, x: 3}\n", 2),
    ("a: &a {x: 1}\nn:\n  <<: *a\n  y: 2\n  y: 3\n", 5),
])
def test_a_key_written_twice_is_still_a_duplicate_beside_a_merge(text, line):
    from nodegraph.spec.yaml_io import load_yaml

    _, _, errors = load_yaml(text, "f.yaml")
    assert [(e.code, e.line) for e in errors] == [("duplicate_key", line)]


def test_a_graph_node_may_override_a_merged_default(tmp_path):
    from nodegraph import load_graph

    path = tmp_path / "g.yaml"
    path.write_text("nodes:\n  base: &base {type: Int, value: 1}\n  one: {<<: *base, value: 5}\n"
                    "outputs: {x: $one.value, y: $base.value}\n")
    assert load_graph(path).run() == {"x": 5, "y": 1}


@pytest.mark.parametrize("include, code", [
    ('./a\\0b.yaml', "invalid_location"),  # a NUL byte (was: ValueError, "internal error")
    ("./" + "a" * 5000 + ".yaml", "invalid_location"),  # longer than any file name (was: OSError)
    ("./" + "a/" * 3000 + "x.yaml", "invalid_location"),
    ("../secret/honey.yaml", "include_outside"),
    ("sub/../../secret/honey.yaml", "include_outside"),
    ("./x\\e[2J.yaml", "file_not_found"),  # a terminal escape: shown escaped, not sent to the terminal
])
def test_hostile_local_includes_are_refused_without_opening_anything_outside(tmp_path, monkeypatch, capsys,
                                                                             include, code):
    from hostile_audit import Honeypot

    home = tmp_path / "home"
    home.mkdir()
    path = home / "g.yaml"
    path.write_text(f'nodes:\n  s: {{type: "{include}"}}\noutputs: {{}}\n')
    with Honeypot(tmp_path / "secret", monkeypatch) as pot:
        assert main(["validate", str(path)]) == 2
        err = capsys.readouterr().err
    assert f"[{code}]" in err and "g.yaml:2:" in err and "internal error" not in err, err
    assert "\x1b" not in err and "\x00" not in err
    pot.check(err)
