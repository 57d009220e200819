"""GET /models: the models a server may load, with their family; what each graph's model inputs accept.

The fixture lays out a `--models` folder as ComfyUI's `models/` (tiny safetensors files holding only the keys
that tell a family apart, a diffusers folder) and a Hugging Face cache with one snapshot.
"""

import httpx
import pytest
from inprocess import serving
from model_fixtures import SDXL_FILE, make_hub_cache, make_models, unet_in, write


@pytest.fixture(scope="module")
def models_server(tmp_path_factory):
    from huggingface_hub import constants

    root = tmp_path_factory.mktemp("models")
    expected = make_models(root)
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "secret.safetensors", {**unet_in(4), "cond_stage_model.transformer.x": (2,)})
    (root / "checkpoints/escape.safetensors").symlink_to(outside / "secret.safetensors")
    cache = tmp_path_factory.mktemp("hub")
    make_hub_cache(cache)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        with serving(tmp_path_factory.mktemp("data"), models=[root]) as (url, headers, service):
            yield url, headers, root.resolve(), expected, outside


def get(server, path, **params):
    url, headers = server[:2]
    return httpx.get(url + path, headers=headers, params=params, timeout=30)


def test_models_lists_builtin_models_folder_and_hub_cache_each_with_its_family(models_server):
    _, _, root, expected, _ = models_server
    response = get(models_server, "/models")
    assert response.status_code == 200
    listed = response.json()["models"]
    by_label = {m["label"]: m for m in listed}
    assert {label: by_label[label]["family"] for label in expected} == expected
    assert by_label[SDXL_FILE]["value"] == str(root / SDXL_FILE)  # what a run takes: the path inside --models
    assert by_label[SDXL_FILE]["family_label"] == "Stable Diffusion XL base"
    assert by_label[SDXL_FILE]["source"] == "models"
    digits = next(m for m in listed if m["value"] == "builtin:digits")
    assert (digits["family"], digits["source"]) == ("sd1", "builtin")
    hub = next(m for m in listed if m["source"] == "hub cache")
    assert (hub["value"], hub["family"]) == ("someone/tiny-z-image", "z_image")
    assert len([m for m in listed if m["source"] == "hub cache"]) == 1  # the data set is not a model
    assert "checkpoints/notes.txt" not in by_label


def test_a_link_leading_out_of_the_models_folders_is_not_offered(models_server):
    outside = models_server[4]
    text = get(models_server, "/models").text
    assert "escape.safetensors" not in text
    assert str(outside) not in text


def test_the_family_filter_keeps_only_those_families(models_server):
    listed = get(models_server, "/models", family=["sdxl_base", "vae16"]).json()["models"]
    assert sorted(m["label"] for m in listed) == ["checkpoints/sdxl/tiny_xl.safetensors", "diffusers/my-sdxl",
                                                 "vae/ae.safetensors", "vae/flux-vae"]
    bad = get(models_server, "/models", family="sdxl")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["path"] == "family"


def test_models_needs_the_token(models_server):
    url = models_server[0]
    assert httpx.get(url + "/models", timeout=10).status_code == 401
    assert httpx.get(url + "/models", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401


def test_graphs_say_which_families_each_model_input_accepts(models_server):
    graphs = {g["name"]: g["inputs"] for g in get(models_server, "/graphs").json()["graphs"]}
    assert graphs["sdxl"]["model"]["accepts"] == ["sdxl_base"]
    assert graphs["sdxl_turbo"]["model"]["accepts"] == ["sdxl_base"]  # through the included sdxl.yaml
    assert graphs["sdxl_refiner"]["refiner"]["accepts"] == ["sdxl_refiner"]
    assert "sd1" in graphs["stable_diffusion"]["model"]["accepts"]
    assert "sdxl_base" not in graphs["stable_diffusion"]["model"]["accepts"]
    assert graphs["z_image"]["transformer"]["accepts"] == ["z_image_transformer"]
    assert graphs["z_image"]["vae"]["accepts"] == ["vae16"]  # ZImageCheckpoint's check and LoadVAE's override
    assert graphs["flux"]["model"]["accepts"] == ["flux"]
    assert graphs["flux"]["transformer"]["accepts"] == ["flux_transformer"]
    assert graphs["sd3"]["model"]["accepts"] == ["sd3"]
    assert graphs["stable_diffusion"]["lora"]["accepts"] == ["lora"]
    assert graphs["stable_diffusion"]["vae"]["accepts"] == ["vae"]  # 4 latent channels
    assert graphs["sdxl"]["vae"]["accepts"] == ["vae"]
    assert graphs["flux"]["vae"]["accepts"] == ["vae16"]
    assert "accepts" not in graphs["stable_diffusion"]["prompt"]


def test_a_listed_model_passes_the_path_rule_and_a_typed_path_outside_is_refused(models_server):
    url, headers, root, _, outside = models_server
    big = {"width": 8192, "height": 8192}  # refused after the path rule, so nothing is queued
    listed = httpx.post(f"{url}/runs", headers=headers, timeout=30,
                        json={"graph": "sdxl", "inputs": {"model": str(root / SDXL_FILE), **big}})
    assert listed.status_code == 422
    assert {e["code"] for e in listed.json()["errors"]} == {"run_too_large"}
    for typed in (str(outside / "secret.safetensors"), str(root / "checkpoints/escape.safetensors")):
        refused = httpx.post(f"{url}/runs", headers=headers, timeout=30,
                             json={"graph": "sdxl", "inputs": {"model": typed, **big}})
        assert refused.status_code == 422
        assert "model_not_allowed" in {e["code"] for e in refused.json()["errors"]}


def test_a_folder_linked_from_outside_is_not_read_only_its_confinement_checked(tmp_path, monkeypatch):
    import json

    from nodegraph.serve import model_list

    root, outside = tmp_path / "models", tmp_path / "outside"
    (root / "diffusers").mkdir(parents=True)
    (outside / "pipe").mkdir(parents=True)
    (outside / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (root / "diffusers" / "linked").symlink_to(outside / "pipe", target_is_directory=True)
    inside = root / "diffusers" / "mixed"  # a folder inside whose model_index.json is a link leading out
    inside.mkdir()
    (inside / "model_index.json").symlink_to(outside / "pipe" / "model_index.json")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "no-cache"))
    read, real_json = [], model_list._json

    def recorded(path):  # every JSON file the listing reads; one outside is recorded, not read
        read.append(path)
        return real_json(path) if path.resolve().is_relative_to(root.resolve()) else None

    monkeypatch.setattr(model_list, "_json", recorded)
    listed = model_list.ModelList([root]).models()
    assert [m for m in listed if m["source"] == "models"] == []
    assert read, "the folders inside were looked at"
    assert [p for p in read if not p.resolve().is_relative_to(root.resolve())] == []


def _finishes(call, fifo, seconds=60):
    """Runs `call` in a thread; if it is still blocked on `fifo` after `seconds`, a writer opened and closed
    on the FIFO lets it end, and False is returned."""
    import os
    import threading

    done, result = threading.Event(), []
    thread = threading.Thread(target=lambda: (result.append(call()), done.set()), daemon=True)
    thread.start()
    if done.wait(seconds):
        return result[0]
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a reader is waiting: the open succeeds, EOF follows
    thread.join(seconds)
    return False


def test_a_fifo_named_model_index_json_does_not_block_the_listing(tmp_path, monkeypatch):
    import os

    from nodegraph.serve import model_list

    root = tmp_path / "models"
    (root / "diffusers" / "trap").mkdir(parents=True)
    os.mkfifo(root / "diffusers" / "trap" / "model_index.json")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "no-cache"))
    listed = _finishes(model_list.ModelList([root]).models, root / "diffusers" / "trap" / "model_index.json")
    assert listed is not False, "the listing blocked reading a FIFO"
    assert [m for m in listed if m["source"] == "models"] == []


@pytest.mark.parametrize("checkpoint, family", [("ZImageCheckpoint", "z_image_transformer"),
                                                ("FluxCheckpoint", "flux_transformer")])
def test_a_transformer_override_lists_only_the_transformers_of_the_checkpoints_family(tmp_path, checkpoint, family):
    from nodegraph.serve.model_list import accepts_of
    from nodegraph.spec.loader import load_graph

    # the input feeds LoadTransformer alone (the shipped graphs also give it to the checkpoint node's check)
    (tmp_path / "g.yaml").write_text(f"""nodegraph: 1
inputs:
  model: {{type: str}}
  transformer: {{type: str, default: ""}}
nodes:
  checkpoint:
    type: {checkpoint}
    model: $inputs.model
  transformer:
    type: LoadTransformer
    model: $checkpoint.model
    override: $inputs.transformer
""")
    assert accepts_of(load_graph(tmp_path / "g.yaml").checked, "transformer") == [family]
