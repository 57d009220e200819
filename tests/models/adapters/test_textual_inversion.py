"""Textual inversion through graphs/stable_diffusion.yaml equals diffusers' `load_textual_inversion`; the cached
tokenizer and text encoder stay as loaded; files that do not fit are refused with a reason."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from test_lora_parity import SD_GRAPH, SETTINGS, graph_image, max_diff

from nodegraph.models.adapters.textual_inversion import add_embedding, read_embedding
from nodegraph.models.errors import CheckpointError
from nodegraph.models.loading import load_component
from tests.graphs.tiny_pipelines import to_uint8


@pytest.fixture(scope="module")
def embedding(tmp_path_factory):
    """A two-vector A1111-style safetensors embedding (`emb_params`), 32 wide like the tiny CLIP."""
    path = tmp_path_factory.mktemp("emb") / "spot-emb.safetensors"
    save_file({"emb_params": 0.5 * torch.randn(2, 32, generator=torch.Generator().manual_seed(3))}, path)
    return path


def test_embedding_matches_diffusers_load_textual_inversion(tiny_sd, embedding):
    import diffusers

    settings = {**SETTINGS, "prompt": "a photo of spot-emb on grass"}
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(str(embedding), token="spot-emb")
    theirs = to_uint8(pipe(settings["prompt"], num_inference_steps=settings["steps"], height=16, width=16,
                           guidance_scale=settings["guidance_scale"], output_type="np",
                           generator=torch.Generator("cpu").manual_seed(settings["seed"])).images)
    ours = graph_image(SD_GRAPH, tiny_sd, embedding=str(embedding), **settings)  # token = the file's name
    assert max_diff(ours, theirs) <= 1
    without = graph_image(SD_GRAPH, tiny_sd, **settings)
    assert (ours.float() - without.float()).abs().mean() > 2, "the embedding must change the image"


def test_cached_tokenizer_and_text_encoder_are_unchanged(tiny_sd, embedding):
    te = load_component(str(tiny_sd), "text_encoder", dtype=torch.float32, device="cpu")
    tok = load_component(str(tiny_sd), "tokenizer")
    table = te.get_input_embeddings().weight.clone()
    _, vectors = read_embedding(str(embedding))
    new_te, new_tok = add_embedding(te, tok, "spot-emb", vectors[""], str(embedding))
    assert new_tok.convert_tokens_to_ids(["spot-emb", "spot-emb_1"]) == [49408, 49409]
    assert torch.equal(new_te.get_input_embeddings().weight[49408:], vectors[""])
    assert "spot-emb" not in tok.get_vocab() and len(tok) == 49408
    assert torch.equal(te.get_input_embeddings().weight, table) and te.get_input_embeddings().num_embeddings == 49408
    assert new_te.encoder is te.encoder, "the transformer layers are shared, not copied"


def test_wrong_width_pickles_and_taken_tokens_are_refused(tiny_sd, tmp_path):
    te = load_component(str(tiny_sd), "text_encoder", dtype=torch.float32, device="cpu")
    tok = load_component(str(tiny_sd), "tokenizer")
    wide = tmp_path / "wide.safetensors"
    save_file({"emb_params": torch.randn(1, 768)}, wide)
    with pytest.raises(CheckpointError, match=r"the embedding is 768 wide but this text encoder takes 32-wide"):
        add_embedding(te, tok, "wide", read_embedding(str(wide))[1][""], str(wide))
    pt = tmp_path / "old.pt"
    torch.save({"string_to_param": {"*": torch.randn(1, 32)}, "name": "old"}, pt)
    with pytest.raises(CheckpointError, match=r"is a pickle \(.pt\).*`allow_pickle: true`"):
        read_embedding(str(pt))
    name, vectors = read_embedding(str(pt), allow_pickle=True)
    assert name == "old" and vectors[""].shape == (1, 32)
    with pytest.raises(CheckpointError, match=r"token 'cat</w>' is already known"):
        add_embedding(te, tok, "cat</w>", vectors[""], str(pt))


def test_a_lora_or_a_model_given_as_embedding_is_refused(tiny_sd, loras):
    for path in (loras["kohya"], tiny_sd / "unet" / "diffusion_pytorch_model.safetensors"):
        with pytest.raises(CheckpointError, match=r"a textual-inversion file holds one .* Is it a LoRA or a model"):
            read_embedding(str(path))
