"""The Z-Image graphs under the server's location rules: `model` and the component files are model sources the
server checks before a run (none is computed by a node), and one outside its model folders is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodegraph import load_graph
from nodegraph.serve.documents import Documents, Rejected

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def codes(documents, graph, **values) -> list[str]:
    try:
        documents.check_values(graph, values)
    except Rejected as exc:
        return [e.code for e in exc.errors]
    return []


@pytest.mark.parametrize("name", ["z_image.yaml", "z_image_img2img.yaml"])
def test_model_and_component_files_are_checked_locations(tmp_path, name):
    models = tmp_path / "models"
    models.mkdir()
    documents = Documents(tmp_path / "data", [GRAPHS], [models], store=None)
    graph = load_graph(GRAPHS / name)
    values = {"model": "Tongyi-MAI/Z-Image-Turbo", "transformer": "", "text_encoder": "", "vae": ""}
    assert codes(documents, graph, **values) == []
    assert codes(documents, graph, **{**values, "transformer": str(models / "z_image_turbo_bf16.safetensors"),
                                      "vae": str(models / "ae.safetensors")}) == []
    refused = codes(documents, graph, **{**values, "text_encoder": "/etc/qwen_3_4b.safetensors"})
    assert refused and set(refused) == {"model_not_allowed"}  # at each port the input feeds
