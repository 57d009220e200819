"""SDXL LoRA through graphs/sdxl.yaml equals diffusers' StableDiffusionXLPipeline `load_lora_weights` +
`set_adapters`: kohya files (sgm UNet names, lora_te1_/lora_te2_) and diffusers/peft files, both text encoders.
Tolerance 1/255, as for every image parity test (the graph fuses; diffusers does not)."""

from __future__ import annotations

import torch
from test_lora_parity import max_diff

from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

SDXL_GRAPH = REPO / "graphs" / "sdxl.yaml"
SETTINGS = dict(prompt="a photo of a cat", seed=3, steps=2, guidance_scale=5.0, height=32, width=32)


def diffusers_image(folder, lora=None, weight=1.0):
    import diffusers

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora), adapter_name="a")
        pipe.set_adapters(["a"], [weight])
    out = pipe(SETTINGS["prompt"], num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"],
               height=SETTINGS["height"], width=SETTINGS["width"],
               generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np")
    return to_uint8(out.images)


def graph_image(folder, **inputs):
    from nodegraph import run_graph

    values = dict(model=str(folder), **{**SETTINGS, **inputs})
    return png_pixels(run_graph(SDXL_GRAPH, inputs=values, device="cpu")["image"])


def test_sdxl_kohya_and_peft_loras_match_diffusers(sdxl_loras):
    base, files = sdxl_loras
    plain = graph_image(base)
    for kind, weight in (("kohya", 0.7), ("peft", 1.0)):
        ours = graph_image(base, lora=str(files[kind]), lora_scale=weight)
        assert max_diff(ours, diffusers_image(base, files[kind], weight)) <= 1, kind
        assert (ours.float() - plain.float()).abs().mean() > 5, f"the {kind} LoRA must visibly change the image"


def test_sdxl_embedding_matches_diffusers_load_textual_inversion_on_both_encoders(sdxl_loras, tmp_path):
    import diffusers
    from safetensors.torch import save_file

    base, _ = sdxl_loras
    g = torch.Generator().manual_seed(5)
    vectors = {"clip_l": 0.5 * torch.randn(1, 32, generator=g), "clip_g": 0.5 * torch.randn(1, 40, generator=g)}
    path = tmp_path / "glow-emb.safetensors"
    save_file(vectors, path)
    prompt = "a photo of glow-emb"
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(base, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    # diffusers' documented way for SDXL embeddings: one call per encoder
    pipe.load_textual_inversion(vectors["clip_g"], token="glow-emb", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    pipe.load_textual_inversion(vectors["clip_l"], token="glow-emb", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    out = pipe(prompt, num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"],
               height=SETTINGS["height"], width=SETTINGS["width"],
               generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np")
    ours = graph_image(base, embedding=str(path), **{"prompt": prompt})
    assert max_diff(ours, to_uint8(out.images)) <= 1
    assert (ours.float() - graph_image(base, prompt=prompt).float()).abs().mean() > 2, "the embedding must count"
