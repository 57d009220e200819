"""LoRA through graphs/stable_diffusion.yaml equals diffusers' `load_lora_weights` + `set_adapters`.

diffusers runs LoRA unfused (peft layers); the graph fuses it into copies of the weights by default, which
rounds differently (UNet outputs within 2.2e-6, test_lora_models.py). The images agree within 1/255, the
tolerance every SD parity test uses.
"""

from __future__ import annotations

import pytest
import torch
from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
SETTINGS = dict(prompt="a photo of a cat", seed=7, steps=2, guidance_scale=7.5, height=16, width=16)


@pytest.fixture(scope="module")
def oracle(tiny_sd, loras):
    """diffusers' pipeline with both test LoRAs loaded, as adapters "kohya" and "peft"."""
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    for name, file in loras.items():
        pipe.load_lora_weights(str(file), adapter_name=name)
    return pipe


def diffusers_image(pipe, adapters: dict[str, float]):
    pipe.set_adapters(list(adapters), list(adapters.values()))
    out = pipe(SETTINGS["prompt"], num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"],
               height=SETTINGS["height"], width=SETTINGS["width"],
               generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np")
    return to_uint8(out.images)


@pytest.fixture(scope="module")
def plain(tiny_sd):
    return graph_image(SD_GRAPH, tiny_sd, **SETTINGS)


def graph_image(graph, folder, **inputs):
    from nodegraph import run_graph

    return png_pixels(run_graph(graph, inputs=dict(model=str(folder), **inputs), device="cpu")["image"])


def max_diff(a, b) -> int:
    assert a.shape == b.shape
    return (a.int() - b.int()).abs().max().item()


def test_kohya_lora_at_full_and_partial_strength_matches_diffusers(tiny_sd, loras, oracle, plain):
    for scale in (1.0, 0.7):
        ours = graph_image(SD_GRAPH, tiny_sd, lora=str(loras["kohya"]), lora_scale=scale, **SETTINGS)
        assert max_diff(ours, diffusers_image(oracle, {"kohya": scale})) <= 1, f"scale {scale}"
        assert (ours.float() - plain.float()).abs().mean() > 5, "the LoRA must visibly change the image"


def test_peft_lora_matches_diffusers(tiny_sd, loras, oracle, plain):
    ours = graph_image(SD_GRAPH, tiny_sd, lora=str(loras["peft"]), lora_scale=1.0, **SETTINGS)
    assert max_diff(ours, diffusers_image(oracle, {"peft": 1.0})) <= 1
    assert (ours.float() - plain.float()).abs().mean() > 5, "the LoRA must visibly change the image"


def test_two_chained_loras_match_set_adapters_with_two_weights(tiny_sd, loras, oracle, tmp_path):
    # the shipped graph with a second LoadLoRA after the first one
    text = SD_GRAPH.read_text()
    text = text.replace("$lora.unet", "$lora2.unet").replace("$lora.text_encoder", "$lora2.text_encoder")
    text = text.replace("  seed:\n    type: Seed\n", "  lora2:\n    type: LoadLoRA\n    unet: $lora.unet\n"
                        "    text_encoder: $lora.text_encoder\n    lora: $inputs.lora_b\n    strength_model: 0.6\n"
                        "    strength_clip: 0.6\n  seed:\n    type: Seed\n")
    text = text.replace("\nnodes:\n", "\n  lora_b: {type: str, default: \"\"}\nnodes:\n", 1)
    graph = tmp_path / "two_loras.yaml"
    graph.write_text(text)
    (tmp_path / "sd_denoise_step.yaml").write_text((REPO / "graphs" / "sd_denoise_step.yaml").read_text())
    assert "lora2" in text and "$lora2.unet" in text
    ours = graph_image(graph, tiny_sd, lora=str(loras["kohya"]), lora_scale=0.8, lora_b=str(loras["peft"]), **SETTINGS)
    theirs = diffusers_image(oracle, {"kohya": 0.8, "peft": 0.6})
    assert max_diff(ours, theirs) <= 1
    only_first = graph_image(SD_GRAPH, tiny_sd, lora=str(loras["kohya"]), lora_scale=0.8, **SETTINGS)
    assert (ours.float() - only_first.float()).abs().mean() > 2, "the second LoRA must change the image"
