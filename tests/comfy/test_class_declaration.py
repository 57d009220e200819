"""Adding a ComfyUI class touches one place: `@comfy_class` on its translator method (comfy/classes.py) makes the
import cover it (refusals, UI widget order, literal types, output types, node ids) and find its files in its own
model folder. A test-only class is declared here and taken back after each test."""

import importlib

import pytest

from nodegraph.comfy import coverage
from nodegraph.comfy.classes import CLASS_MODELS, comfy_class, model_folder
from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.models import ModelPaths
from nodegraph.comfy.reader import Workflow

NAME = "NodegraphTestSolid"
translate_module = importlib.import_module("nodegraph.comfy.translate")  # the package exports a function of that name


@pytest.fixture
def declared(monkeypatch):
    @comfy_class(NAME, widgets=("shade", "width", "height", "swatch"),
                 literals={"shade": float, "width": int, "height": int, "swatch": str}, outputs=("IMAGE",),
                 short="solid", models={"swatch": "swatches"})
    def _NodegraphTestSolid(self, node_id, nid):
        self.nodes[nid] = {"type": "SolidImage", "value": self.literal(node_id, "shade"),
                           "width": self.literal(node_id, "width"), "height": self.literal(node_id, "height")}
        self.literal(node_id, "swatch")  # a file input: found in the class's own folder
        return (f"${nid}.image",)

    try:
        monkeypatch.setattr(translate_module._Translator, f"_{NAME}", _NodegraphTestSolid, raising=False)
        yield
    finally:
        for table in (coverage.COVERED, coverage.SHORT_NAMES, CLASS_MODELS):
            table.pop(NAME, None)


def workflow(**inputs) -> Workflow:
    return Workflow(api={"4": {"class_type": NAME, "inputs": {"shade": 0.25, "width": 16, "height": 8,
                                                                "swatch": "red.png", **inputs}},
                         "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "t"}}},
                    origin="test.json")


def paths(tmp_path) -> ModelPaths:
    (tmp_path / "models" / "swatches").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / "swatches" / "red.png").write_bytes(b"")
    return ModelPaths([tmp_path / "models"])


def test_a_class_declared_on_its_translator_alone_is_covered_and_translated(declared, tmp_path):
    assert coverage.widget_names(NAME) == ("shade", "width", "height", "swatch")  # UI workflows convert
    assert f"| {NAME} | shade, width, height, swatch | IMAGE |" in coverage.coverage_table()
    assert translate_module.refusals(workflow().api) == []
    document = translate_module.translate(workflow(), paths(tmp_path)).document
    assert document["nodes"]["solid4"] == {"type": "SolidImage", "value": "$inputs.shade", "width": "$inputs.width",
                                           "height": "$inputs.height"}
    assert document["inputs"]["width"]["default"] == 16 and document["inputs"]["shade"]["type"] == "float"
    assert document["inputs"]["swatch"]["default"] == str((tmp_path / "models" / "swatches" / "red.png").resolve())
    assert document["outputs"] == {"save9": "$solid4.image"}


def test_its_literals_are_type_checked_and_its_files_looked_for_in_its_own_folder(declared, tmp_path):
    with pytest.raises(ComfyError, match="`width`.*expected an integer"):
        translate_module.translate(workflow(width="wide"), paths(tmp_path))
    with pytest.raises(ComfyError, match="swatches") as missing:
        translate_module.translate(workflow(swatch="blue.png"), paths(tmp_path))
    assert "blue.png" in str(missing.value)
    assert model_folder(NAME, "swatch") == "swatches" and model_folder("CLIPLoader", "swatch") is None
    assert model_folder("CLIPLoader", "clip_name") == "text_encoders"  # the shared table still answers the others


def test_a_declaration_must_name_its_translator_and_may_not_repeat_a_class():
    with pytest.raises(TypeError, match="must be named _SomeClass"):
        comfy_class("SomeClass", short="x")(lambda self, node_id, nid: ())
    with pytest.raises(ValueError, match="declared twice"):
        def _KSampler(self, node_id, nid):
            return ()

        comfy_class("KSampler", short="k")(_KSampler)
