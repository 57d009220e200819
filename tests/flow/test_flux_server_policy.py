"""The Flux graphs under the server's location rules: `model`, the component files and the LoRA are locations the
server checks before a run, and one outside its model folders is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_z_image_server_policy import codes

from nodegraph import load_graph
from nodegraph.serve.documents import Documents

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


@pytest.mark.parametrize("name", ["flux.yaml", "flux_img2img.yaml"])
def test_model_component_files_and_lora_are_checked_locations(tmp_path, name):
    models = tmp_path / "models"
    models.mkdir()
    documents = Documents(tmp_path / "data", [GRAPHS], [models], store=None)
    graph = load_graph(GRAPHS / name)
    values = {"model": "black-forest-labs/FLUX.1-dev", "transformer": "", "text_encoder": "", "text_encoder_2": "",
              "vae": ""}
    assert codes(documents, graph, **values) == []
    assert codes(documents, graph, **{**values, "transformer": str(models / "flux1-dev-fp8.safetensors"),
                                      "text_encoder": str(models / "clip_l.safetensors"),
                                      "vae": str(models / "ae.safetensors")}) == []
    for name_, path in (("text_encoder_2", "/etc/t5xxl_fp16.safetensors"), ("transformer", "/etc/flux1.safetensors")):
        refused = codes(documents, graph, **{**values, name_: path})
        assert refused and set(refused) == {"model_not_allowed"}, name_
    assert codes(documents, graph, **values, lora=str(models / "style.safetensors")) == []
    assert set(codes(documents, graph, **values, lora="/etc/style.safetensors")) == {"path_not_allowed"}
