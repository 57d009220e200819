"""The `embedding_example` template (pinned package JSON) injects `embedding:SDA768.pt`'s vectors, as ComfyUI does:
its image equals diffusers' textual inversion of the same file (the tiny SD 2.x v file, sampled as ComfyUI
samples: Euler linspace, first noise ×√(1 + σmax²), v-prediction, SD2's text layer = diffusers' clip skip 1 on
the 2-layer tiny encoder), changes when the vectors change, finds the file without its extension, and drops a
missing one with a warning (comfy/sd1_clip.py's rules, written out in nodegraph/comfy/embeddings.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from templates import models_folder, sets, template
from workflows import run_cli

PROMPT = "photograph in the style of {} girl with blonde hair\nlandscape scenery view"  # the template's, node 6
SEED, CFG = 193694018275622, 8.0
SMALL = sets(n5_width=64, n5_height=64, n3_steps=2, n3_sampler_name="euler", allow_pickle=True)


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def write_embedding(path, seed: int):
    vectors = torch.randn((2, 48), generator=torch.Generator().manual_seed(seed)) * 0.7  # 2 tokens, SD2 width
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_param": {"*": vectors}, "name": "SDA768"}, path)  # A1111's .pt layout
    return path


@pytest.fixture(scope="module")
def embedding_models(tmp_path_factory, sd2_models):
    """Two models/ folders for the template (its SD 2.1 768-v checkpoint name → the tiny v file), whose
    embeddings/SDA768.pt differ only in their vectors."""
    folders, models = sd2_models
    out = []
    for seed in (41, 42):
        root = tmp_path_factory.mktemp(f"emb{seed}")
        write_embedding(root / "models" / "embeddings" / "SDA768.pt", seed)
        out.append(models_folder(root, {"checkpoints/v2-1_768-ema-pruned.safetensors":
                                        models / "checkpoints" / "tiny-sd2-v.safetensors"}))
    return folders["v"], out


@pytest.fixture(scope="module")
def template_image(tmp_path_factory, embedding_models):
    folder, (models, _) = embedding_models
    return run_cli(tmp_path_factory.mktemp("emb-run"), template("embedding_example"), models, folder, *SMALL)[0]


def diffusers_textual_inversion(folder, embedding, prompt: str):
    """diffusers' pipeline with `load_textual_inversion(embedding, token="SDA768")`, configured as ComfyUI samples."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(str(embedding), token="SDA768")
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace",
                                                        prediction_type="v_prediction")
    pipe.scheduler.set_timesteps(2)
    sigma_max = float(pipe.scheduler.sigmas[0])

    def embed(text):  # clip skip 1, diffusers' rule written out: final_layer_norm(hidden_states[-2])
        ids = pipe.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            states = pipe.text_encoder(ids, output_hidden_states=True).hidden_states
            return pipe.text_encoder.final_layer_norm(states[-2])

    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    latents = noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)
    out = pipe(prompt_embeds=embed(prompt), negative_prompt_embeds=embed("bad hands"), num_inference_steps=2,
               guidance_scale=CFG, height=16, width=16, latents=latents, output_type="np")
    return (out.images[0] * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def without_embedding(embedding_models):
    folder, (models, _) = embedding_models
    return diffusers_textual_inversion(folder, models / "embeddings" / "SDA768.pt", PROMPT.format(""))


def test_embedding_example_equals_diffusers_textual_inversion_of_the_same_file(template_image, embedding_models,
                                                                               without_embedding):
    folder, (models, _) = embedding_models
    # the 2-vector embedding's tokens spelled out (diffusers' maybe_convert_prompt no longer expands them with
    # transformers 5's tokenizers)
    theirs = diffusers_textual_inversion(folder, models / "embeddings" / "SDA768.pt",
                                         PROMPT.format("SDA768 SDA768_1"))
    assert max_diff(template_image, theirs) <= 1
    assert max_diff(template_image, without_embedding) > 8  # the embedding's vectors are in the image


def test_embedding_example_changes_when_the_vectors_change(tmp_path, template_image, embedding_models):
    folder, (_, other) = embedding_models
    ours = run_cli(tmp_path, template("embedding_example"), other, folder, *SMALL)[0]
    assert max_diff(ours, template_image) > 8


def test_embedding_name_without_extension_finds_the_file(tmp_path, template_image, embedding_models):
    folder, (models, _) = embedding_models
    text = PROMPT.format("embedding:SDA768")
    ours = run_cli(tmp_path, template("embedding_example"), models, folder, *SMALL, "--set", f"6.text={text}")[0]
    assert max_diff(ours, template_image) == 0


def test_missing_embedding_drops_the_word_with_a_warning(tmp_path, embedding_models, without_embedding, capsys):
    folder, (models, _) = embedding_models
    missing = PROMPT.format("embedding:NoSuchEmbedding")
    ours = run_cli(tmp_path, template("embedding_example"), models, folder, *SMALL, "--set", f"6.text={missing}")[0]
    assert "embedding:NoSuchEmbedding does not exist" in capsys.readouterr().err
    assert max_diff(ours, without_embedding) <= 1


def test_pickled_embedding_needs_allow_pickle(tmp_path, embedding_models, capsys):
    from nodegraph.cli import main

    folder, (models, _) = embedding_models
    small = [a for a in SMALL if a != "allow_pickle=true"][:-1]
    code = main(["run", str(template("embedding_example")), "--models", str(models), "--out", str(tmp_path / "out"),
                 "-q", "--set", f"config={folder}", *small])
    assert code != 0 and not (tmp_path / "out").exists()
    assert "allow_pickle=true" in capsys.readouterr().err

