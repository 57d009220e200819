"""The editor JSON Schema, checked with the jsonschema library: shipped graphs pass, typical mistakes fail."""

import json
import pathlib

import jsonschema
import pytest
import yaml

from nodegraph.cli import main
from nodegraph.hub.schema import build_schema

GRAPHS = sorted((pathlib.Path(__file__).resolve().parents[2] / "graphs").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    schema = build_schema()
    jsonschema.Draft7Validator.check_schema(schema)  # a well-formed draft-07 schema
    return jsonschema.Draft7Validator(schema)


def problems(validator, text):
    """(path, message) of every schema violation in a YAML document."""
    return [("/".join(map(str, e.absolute_path)), e.message) for e in validator.iter_errors(yaml.safe_load(text))]


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_every_shipped_graph_matches_the_schema(validator, path):
    assert problems(validator, path.read_text()) == []


GOOD = """
requires: [nodegraph>=0.1]
inputs:
  steps: {type: int, default: 3, min: 1}
nodes:
  n: {type: Int, value: 3}
  img: {type: SolidImage@1, value: 0.5, width: $n.value}
  denoise:
    type: repeat
    over: [1, 2]
    state: {x: 0.0}
    nodes:
      step: {type: Add, a: $state.x, b: 1.0}
    next: {x: $step.value}
  part: {type: ./step.yaml, anything: 1}
outputs: {image: $img.image, x: $denoise.x}
"""


def test_a_graph_using_every_construct_matches(validator):
    assert problems(validator, GOOD) == []


@pytest.mark.parametrize("old, new, where", [
    ("{type: Int, value: 3}", "{type: Itn, value: 3}", "nodes/n/type"),                 # unknown node type
    ("{type: Int, value: 3}", "{type: Int, valeu: 3}", "nodes/n"),                      # unknown parameter
    ("{type: Int, value: 3}", "{type: Int, value: three}", "nodes/n/value"),            # wrong type
    ("{type: Int, value: 3}", "{type: Int}", "nodes/n"),                                # missing required input
    ("value: 0.5, width", "value: 1.5, width", "nodes/img/value"),                      # out of range (le=1)
    ("SolidImage@1", "SolidImage@9", "nodes/img/type"),                                 # unknown version
    ("b: 1.0}", "b: 1.0, c: 2}", "denoise/nodes/step"),                                 # inside a repeat body
    ("over: [1, 2]", "ovr: [1, 2]", "nodes/denoise"),                                   # repeat key typo
    ("steps: {type: int, default: 3, min: 1}", "steps: {type: int, dflt: 3}", "inputs/steps"),
    ("outputs: {image: $img.image", "outputs: {image: img.image", "outputs/image"),     # not a reference
    ("requires:", "requirements:", ""),                                                 # unknown top-level key
])
def test_typical_mistakes_are_flagged_where_they_are(validator, old, new, where):
    assert GOOD.count(old) == 1
    found = problems(validator, GOOD.replace(old, new))
    assert found, "the mistake was not flagged"
    assert any(path.endswith(where) or (where == "" and path == "") for path, _ in found), found


def test_ports_carry_their_type_range_and_description_for_completion(validator):
    solid = validator.schema["definitions"]["node:SolidImage@1"]
    assert solid["properties"]["type"] == {"enum": ["SolidImage@1", "SolidImage"]}
    value = solid["properties"]["value"]
    assert value["default"] == 0.5 and "float" in value["description"]
    assert {"type": "number", "minimum": 0, "maximum": 1} in value["anyOf"]


def test_the_schema_command_prints_it_and_writes_it(capsys, tmp_path):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(build_schema()))
    assert main(["schema", "--out", str(tmp_path / "nodegraph.schema.json")]) == 0
    assert json.loads((tmp_path / "nodegraph.schema.json").read_text()) == printed


def test_a_version_that_migrates_is_accepted_and_a_current_one_is_checked():
    from test_migrate import BlurV2, registry_with

    validator = jsonschema.Draft7Validator(build_schema(registry_with(BlurV2)))
    old = "nodes:\n  b: {type: testing.Blur@1, x: 1.0, radius: 4.0}\noutputs: {y: $b.value}\n"
    assert problems(validator, old) == []
    assert [p for p, _ in problems(validator, old.replace("@1", "@2"))] == ["nodes/b"]  # `radius` is gone in v2
