"""Property: a mutated document from a stranger is read or refused, never an internal error.

Hypothesis mutates valid ComfyUI UI and API workflows, PNG recipes and safetensors headers (a value replaced
by another JSON value, a key removed or added, one to three times) and feeds each to the library entry
points the CLI and the server use, in-process. Every example must end like `exit 0` (read) or `exit 2` (the
reader's own refusal: ComfyError, InputRefused/BundleError, ValidationFailed, CheckpointError), each within
1 s. Any other exception is a bug this test reports with the mutated document.
"""

import copy
import importlib.util
import json
import pathlib
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodegraph.comfy.checkpoints import Checkpoint
from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.models import ModelPaths
from nodegraph.comfy.reader import _parse_json, from_document
from nodegraph.comfy.translate import translate
from nodegraph.models.errors import CheckpointError
from nodegraph.models.single_file.reader import open_checkpoint  # (imports torch: not inside a timed example)
from nodegraph.spec.bundle import check_recipe, unbundle
from nodegraph.spec.errors import ValidationFailed
from nodegraph.spec.limits import InputRefused
from nodegraph.spec.loader import load_graph

_spec = importlib.util.spec_from_file_location("comfy_workflows",
                                               pathlib.Path(__file__).parents[1] / "comfy" / "workflows.py")
workflows = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workflows)

SETTINGS = settings(max_examples=int(__import__("os").environ.get("HOSTILE_EXAMPLES", 150)), deadline=1000,
                    derandomize=not __import__("os").environ.get("HOSTILE_EXPLORE"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-10**150, 10**150),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                    st.sampled_from(["", "../../etc/passwd", "/dev/zero", "a\x00b", "KSampler", "Reroute",
                                     "PrimitiveNode", "hf://a/b@..%2F..%2Fx/g.yaml", "{x.__class__}", "g.yaml"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=8)


def _containers(doc, path=()):
    """Every (path, container) in the document, the root included."""
    yield path, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            yield from _containers(value, path + (key,))


@st.composite
def mutated(draw, original):
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        places = list(_containers(doc))
        _, box = places[draw(st.integers(0, len(places) - 1))]
        keys = list(box) if isinstance(box, dict) else list(range(len(box)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" or not keys:
            if isinstance(box, dict):
                box[draw(st.text(max_size=8))] = draw(values)
            else:
                box.append(draw(values))
        elif action == "delete":
            del box[draw(st.sampled_from(keys))]
        else:
            box[draw(st.sampled_from(keys))] = draw(values)
    return doc


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "tiny-sd1.safetensors").write_bytes(b"")
    return ModelPaths(roots=[root])


def comfy_outcome(doc, model_paths) -> str:
    try:
        workflow = from_document(_parse_json(json.dumps(doc), "wf.json"), "wf.json")
        translate(workflow, model_paths, checkpoint=lambda path: Checkpoint("sd1"))
    except ComfyError:
        return "refused"
    return "read"


@SETTINGS
@given(data=st.data())
def test_mutated_ui_workflows_are_read_or_refused(data, model_paths):
    assert comfy_outcome(data.draw(mutated(workflows.default_ui())), model_paths) in ("read", "refused")


@SETTINGS
@given(data=st.data())
def test_mutated_api_workflows_are_read_or_refused(data, model_paths):
    assert comfy_outcome(data.draw(mutated(workflows.DEFAULT_API)), model_paths) in ("read", "refused")


def test_the_unmutated_workflows_are_read(model_paths):
    """The property is not vacuous: the documents it mutates translate."""
    assert comfy_outcome(workflows.default_ui(), model_paths) == "read"
    assert comfy_outcome(workflows.DEFAULT_API, model_paths) == "read"


RECIPE = {"graph": {"format": 1, "main": "g.yaml", "files": {
    "g.yaml": "inputs:\n  n: {type: int, default: 2}\nnodes:\n  s: {type: ./parts/s.yaml, n: $inputs.n}\n"
              "outputs: {x: $s.x}\n",
    "parts/s.yaml": "inputs:\n  n: {type: int}\nnodes:\n  r: {type: Range, stop: $inputs.n}\n"
                    "outputs: {x: $r.values}\n"}},
    "inputs": {"n": 3}, "output": "x", "dtype": "fp32", "hub_pins": {"hf://a/b/g.yaml": "1" * 40}}


def recipe_outcome(doc) -> str:
    try:
        recipe = check_recipe(doc)
        with tempfile.TemporaryDirectory() as folder:
            main = unbundle(recipe["graph"], folder)
            load_graph(main, include_root=folder, hub_pins=recipe.get("hub_pins"), hub_references="pinned")
    except (InputRefused, ValidationFailed):
        return "refused"
    return "read"


@SETTINGS
@given(data=st.data())
def test_mutated_png_recipes_are_read_or_refused(data):
    assert recipe_outcome(data.draw(mutated(RECIPE))) in ("read", "refused")


HEADER = {"__metadata__": {"format": "pt"},
          "a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
          "b.bias": {"dtype": "F16", "shape": [4], "data_offsets": [16, 24]}}


def header_outcome(doc, folder) -> str:
    text = json.dumps(doc).encode()
    path = pathlib.Path(folder) / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 24)
    try:
        open_checkpoint(path)
    except CheckpointError:
        return "refused"
    return "read"


@SETTINGS
@given(data=st.data())
def test_mutated_safetensors_headers_are_read_or_refused(data, tmp_path):
    assert header_outcome(data.draw(mutated(HEADER)), tmp_path) in ("read", "refused")


def test_the_unmutated_recipe_and_header_are_read(tmp_path):
    assert recipe_outcome(RECIPE) == "read" and header_outcome(HEADER, tmp_path) == "read"
