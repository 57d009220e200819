"""LoRA through graphs/stable_diffusion.yaml equals diffusers' `load_lora_weights` + `set_adapters`.

diffusers runs LoRA unfused (peft layers); the graph fuses it into copies of the weights by default, which
rounds differently (UNet outputs within 2.2e-6, test_lora_models.py). The images agree within 1/255, the
tolerance every SD parity test uses.
"""

from __future__ import annotations

import torch
from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
SETTINGS = dict(prompt="a photo of a cat", seed=7, steps=4, guidance_scale=7.5, height=16, width=16)


def diffusers_image(folder, adapters=(), **settings):
    """`adapters`: (file, weight) pairs, loaded as adapters a0, a1, … and activated with `set_adapters`."""
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    names = [f"a{k}" for k in range(len(adapters))]
    for name, (file, _) in zip(names, adapters):
        pipe.load_lora_weights(str(file), adapter_name=name)
    if adapters:
        pipe.set_adapters(names, [w for _, w in adapters])
    out = pipe(settings["prompt"], num_inference_steps=settings["steps"], guidance_scale=settings["guidance_scale"],
               height=settings["height"], width=settings["width"],
               generator=torch.Generator("cpu").manual_seed(settings["seed"]), output_type="np")
    return to_uint8(out.images)


def graph_image(graph, folder, **inputs):
    from nodegraph import run_graph

    return png_pixels(run_graph(graph, inputs=dict(model=str(folder), **inputs), device="cpu")["image"])


def max_diff(a, b) -> int:
    assert a.shape == b.shape
    return (a.int() - b.int()).abs().max().item()


def test_kohya_lora_at_full_and_partial_strength_matches_diffusers(tiny_sd, loras):
    plain = graph_image(SD_GRAPH, tiny_sd, **SETTINGS)
    for scale in (1.0, 0.7):
        ours = graph_image(SD_GRAPH, tiny_sd, lora=str(loras["kohya"]), lora_scale=scale, **SETTINGS)
        theirs = diffusers_image(tiny_sd, [(loras["kohya"], scale)], **SETTINGS)
        assert max_diff(ours, theirs) <= 1, f"scale {scale}"
        assert (ours.float() - plain.float()).abs().mean() > 5, "the LoRA must visibly change the image"


def test_peft_lora_matches_diffusers(tiny_sd, loras):
    ours = graph_image(SD_GRAPH, tiny_sd, lora=str(loras["peft"]), lora_scale=1.0, **SETTINGS)
    assert max_diff(ours, diffusers_image(tiny_sd, [(loras["peft"], 1.0)], **SETTINGS)) <= 1
    assert (ours.float() - graph_image(SD_GRAPH, tiny_sd, **SETTINGS).float()).abs().mean() > 5


def test_two_chained_loras_match_set_adapters_with_two_weights(tiny_sd, loras, tmp_path):
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
    theirs = diffusers_image(tiny_sd, [(loras["kohya"], 0.8), (loras["peft"], 0.6)], **SETTINGS)
    assert max_diff(ours, theirs) <= 1
    only_first = graph_image(SD_GRAPH, tiny_sd, lora=str(loras["kohya"]), lora_scale=0.8, **SETTINGS)
    assert (ours.float() - only_first.float()).abs().mean() > 2, "the second LoRA must change the image"
