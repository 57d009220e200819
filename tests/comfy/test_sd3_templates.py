"""ComfyUI's SD3.5 checkpoint template (sd3.5_simple_example: CheckpointLoaderSimple of an all-in-one SD3.5 file,
CLIPTextEncode with its three encoders, EmptySD3LatentImage, KSampler euler/sgm_uniform cfg 4.01) runs from the
package's own JSON on a tiny random all-in-one file in ComfyUI's checkpoints/ folder, configured from a tiny SD3
folder, and equals diffusers' StableDiffusion3Pipeline given ComfyUI's semantics.

ComfyUI's SD3 rules (comfy/supported_models.py `SD3`, comfy/model_sampling.py `ModelSamplingDiscreteFlow`,
comfy/samplers.py `sgm_uniform`, comfy/text_encoders/sd3_clip.py): the σ are shift 3 of u = linspace(1, u_min, n+1)
without its last point, u_min = σ(t = 1) = 3·0.001 / (1 + 2·0.001) (the pipeline is given those u as `sigmas`, which
its scheduler shifts once); T5 is padded to at least 77 tokens (the pipeline's max_sequence_length 77); the pooled
CLIP-L vector is taken WITHOUT its text projection (the file's projection is random here, the pipeline's folder has
the identity, as diffusers' single-file SD3 loader sets it); the negative "" is encoded. The tiny folder has
ComfyUI's 16 latent channels (its VAE shrinks 4×: the template at 64×64 is the pipeline's 32×32).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import comfyui_workflow_templates_json as templates_json
from tests.sd3.sd3_loras import write_lora_files

TEMPLATES = Path(templates_json.__file__).parent / "templates"
TEMPLATE = TEMPLATES / "sd3.5_simple_example.json"
PROMPT = "a red fox in fresh snow"
STEPS = 4
PLAIN, DEQUANTIZED = "sd3.5_large.safetensors", "sd3.5_large_dequantized.safetensors"  # beside the template's file


@pytest.fixture(scope="module")
def sd3_models(tmp_path_factory):
    """(tiny SD3.5 folder with 16 latent channels and an identity CLIP-L projection, ComfyUI models/ folder with
    checkpoints/sd3.5_large_fp8_scaled.safetensors: the folder's weights in SAI's all-in-one layout, CLIP-L's
    projection replaced by a random one)."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel, StableDiffusion3Pipeline
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from tests.fp8.comfy_scaled import write_scaled
    from tests.sd3 import tiny_sd3
    from tests.sd3.sd3_files import write_sd3_file

    root = tmp_path_factory.mktemp("comfy-sd3")
    parts = tiny_sd3.build_components()
    torch.manual_seed(1)
    clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**{**tiny_sd3.CLIP_L, "projection_dim": 24},
                                                        **tiny_sd3.CLIP_COMMON))
    clip_l = tiny_sd3.perturb(clip_l, 46, scale=0.1)
    with torch.no_grad():
        clip_l.text_projection.weight.copy_(torch.eye(24))
    parts["text_encoder"] = clip_l
    clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**{**tiny_sd3.CLIP_G, "num_hidden_layers": 31},
                                                        **tiny_sd3.CLIP_COMMON))  # bigG's 31st layer tells it
    parts["text_encoder_2"] = tiny_sd3.perturb(clip_g, 49, scale=0.1)
    transformer = {**tiny_sd3.TRANSFORMER, "in_channels": 16, "out_channels": 16, "pooled_projection_dim": 24 + 20}
    parts["transformer"] = tiny_sd3.perturb(SD3Transformer2DModel(**transformer), 47, scale=0.1)
    parts["vae"] = tiny_sd3.perturb(AutoencoderKL(**{**tiny_sd3.VAE, "latent_channels": 16}), 48)
    folder = root / "tiny-sd3"
    StableDiffusion3Pipeline(**parts).save_pretrained(folder)
    checkpoints = root / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    path = write_sd3_file(folder, checkpoints / PLAIN)
    state = load_file(path)
    key = "text_encoders.clip_l.transformer.text_projection.weight"
    state[key] = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(3))
    save_file(state, path)
    write_scaled(state, checkpoints / "sd3.5_large_fp8_scaled.safetensors", checkpoints / DEQUANTIZED,
                 prefixes=("model.diffusion_model.", "text_encoders.t5xxl.transformer."))
    write_sd3_file(folder, checkpoints / "sd3.5_no_text.safetensors", text_encoders=False)
    from tests.models.single_file.ldm_layout import vae_to_ldm
    from tests.sd3.sd3_files import transformer_to_sai

    for sub in ("diffusion_models", "vae"):
        (root / "models" / sub).mkdir()
    save_file(transformer_to_sai(load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors"), prefix=""),
              root / "models" / "diffusion_models" / "sd3.5_large.safetensors")  # SAI's names, no prefix
    vae = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae, 3, prefix="").items()},
              root / "models" / "vae" / "sd3_vae.safetensors")
    text = root / "models" / "text_encoders"  # ComfyUI's split files: transformers' names
    text.mkdir()
    for name, part in (("clip_l", "text_encoder"), ("clip_g", "text_encoder_2"), ("t5xxl_fp16", "text_encoder_3")):
        save_file(load_file(folder / part / "model.safetensors"), text / f"{name}.safetensors")
    return folder, root / "models"


def run(sd3_models, out: Path, *sets: str, workflow: Path = TEMPLATE, ckpt: str = PLAIN) -> np.ndarray:
    from nodegraph.cli import main

    args = [a for s in (f"config={sd3_models[0]}", "53.width=64", "53.height=64", f"3.steps={STEPS}",
                        f"16.text={PROMPT}", f"4.ckpt_name={ckpt}", *sets) for a in ("--set", s)]
    assert main(["run", str(workflow), "--models", str(sd3_models[1]), "--out", str(out), "-q", *args]) == 0
    (png,) = sorted(out.rglob("*.png"))
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def comfy_sgm_uniform(steps: int, shift: float = 3.0) -> list[float]:
    """ComfyUI's sgm_uniform on SD3's discrete flow, before the shift (the pipeline's scheduler applies it): the
    timesteps linspace(t(σ_max), t(σ_min), steps + 1) without the last, divided by the multiplier 1000."""
    u_min = shift * 0.001 / (1 + (shift - 1) * 0.001)  # σ at t = 1 of the 1000-entry table
    return np.linspace(1.0, u_min, steps + 1)[:-1].tolist()


def pipeline_image(folder, seed: int, cfg: float = 4.01, shift: float = 3.0, projection=None, lora=None,
                   lora_scale: float = 1.0) -> np.ndarray:
    """The pipeline's image of PROMPT with the negative "" at 32×32 (the template's 64×64 in the tiny VAE)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(folder)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=shift)
    if projection is not None:  # CLIP-L's text projection (the folder's is the identity)
        with torch.no_grad():
            pipe.text_encoder.text_projection.weight.copy_(projection)
    if lora is not None:  # its transformer and text-encoder parts, both scaled by joint_attention_kwargs' scale
        pipe.load_lora_weights(str(lora))
    out = pipe(joint_attention_kwargs={"scale": lora_scale} if lora is not None else None,
               prompt=PROMPT, negative_prompt="", height=32, width=32, sigmas=comfy_sgm_uniform(STEPS, shift),
               guidance_scale=cfg, max_sequence_length=77, generator=torch.Generator("cpu").manual_seed(seed),
               output_type="np")
    return np.round(out.images[0] * 255).astype(int)


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    """kohya, peft and ComfyUI-named files of one random LoRA of the tiny SD3 folder (tests/sd3/sd3_loras.py)."""
    return write_lora_files(tmp_path_factory.mktemp("sd3_lora"))


@pytest.fixture(scope="module")
def seed5(sd3_models, tmp_path_factory):
    """(the template's image at seed 5 from the plain file, the pipeline's image), shared by the tests below."""
    got = run(sd3_models, tmp_path_factory.mktemp("sd3-seed5"), "3.seed=5")
    return got, pipeline_image(sd3_models[0], seed=5)


def test_sd35_simple_template_equals_the_sd3_pipeline_with_comfyuis_rules(sd3_models, seed5, tmp_path):
    got, want = seed5
    assert got.shape == want.shape == (32, 32, 3)
    assert np.abs(got - want).max() <= 1
    assert np.abs(run(sd3_models, tmp_path / "seed6", "3.seed=6") - want).max() > 8  # it sees the noise
    assert np.abs(pipeline_image(sd3_models[0], seed=5, cfg=2.0) - want).max() > 4  # and the cfg


def test_the_pooled_clip_l_vector_is_taken_before_its_text_projection(sd3_models, seed5):
    """The file's CLIP-L projection is random: a pipeline that applied it draws another image (so the template's
    match above needs ComfyUI's un-projected pooled vector)."""
    from safetensors import safe_open

    with safe_open(str(sd3_models[1] / "checkpoints" / PLAIN), framework="pt") as f:
        projection = f.get_tensor("text_encoders.clip_l.transformer.text_projection.weight")
    assert np.abs(pipeline_image(sd3_models[0], seed=5, projection=projection) - seed5[1]).max() > 4


def test_the_templates_scaled_fp8_file_draws_its_dequantized_twins_image(sd3_models, seed5, tmp_path):
    """sd3.5_large_fp8_scaled.safetensors as ComfyUI writes it (transformer and T5 in float8 with per-layer
    `scale_weight`, tests/fp8/comfy_scaled.py) gives, in this float32 run, exactly the image of the same weights
    dequantized into a plain file, and not the unquantized file's."""
    scaled = run(sd3_models, tmp_path / "scaled", "3.seed=5", ckpt="sd3.5_large_fp8_scaled.safetensors")
    assert np.array_equal(scaled, run(sd3_models, tmp_path / "twin", "3.seed=5", ckpt=DEQUANTIZED))
    assert np.abs(scaled - seed5[0]).max() > 0


def test_model_sampling_sd3_sets_the_shift(sd3_models, tmp_path):
    """ModelSamplingSD3 (shift 2, multiplier 1000) between the checkpoint and the KSampler (API form)."""
    from nodegraph.comfy.reader import read_workflow

    api = read_workflow(TEMPLATE).api
    api["m"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["4", 0], "shift": 2.0}}
    api["3"]["inputs"]["model"] = ["m", 0]
    workflow = tmp_path / "sampling_sd3.json"
    workflow.write_text(json.dumps(api))
    got = run(sd3_models, tmp_path / "out", "3.seed=5", workflow=workflow)
    assert np.abs(got - pipeline_image(sd3_models[0], seed=5, shift=2.0)).max() <= 1


def triple_clip_workflow(tmp_path: Path, *files: str) -> Path:
    """The template with its prompts encoded by a TripleCLIPLoader of `files` (API form)."""
    from nodegraph.comfy.reader import read_workflow

    api = read_workflow(TEMPLATE).api
    api["t"] = {"class_type": "TripleCLIPLoader", "inputs": {f"clip_name{i}": f for i, f in enumerate(files, 1)}}
    for node in ("16", "40"):
        api[node]["inputs"]["clip"] = ["t", 0]
    workflow = tmp_path / "triple_clip.json"
    workflow.write_text(json.dumps(api))
    return workflow


def test_sd3_refusals_name_the_node_and_what_to_do(sd3_models, tmp_path):
    from nodegraph.comfy.command import apply_comfy_sets
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.models import ModelPaths
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.report import check
    from nodegraph.comfy.translate import translate

    def translate_with(*sets):
        workflow = read_workflow(TEMPLATE)
        apply_comfy_sets(workflow.api, list(sets), str(TEMPLATE))
        return translate(workflow, ModelPaths([sd3_models[1]]))

    nodes = list(translate_with(f"4.ckpt_name={PLAIN}").document["nodes"])  # the plan runs them in this order
    assert nodes.index("ckpt4_model") > max(nodes.index("text16"), nodes.index("text40"))  # T5 freed first
    with pytest.raises(ComfyError, match=r"node 16 \(CLIPTextEncode\) input `clip`: the SD3 checkpoint holds no "
                                         r"CLIP-L and bigG text encoders \(none found\)"):
        translate_with("4.ckpt_name=sd3.5_no_text.safetensors")
    two_l = read_workflow(triple_clip_workflow(tmp_path, "clip_l.safetensors", "clip_l.safetensors",
                                               "t5xxl_fp16.safetensors"))
    with pytest.raises(ComfyError, match=r"node t \(TripleCLIPLoader\): TripleCLIPLoader takes one CLIP-L, one bigG "
                                         r"\(clip_g\) and one T5-XXL file; these are 2 clip_l, 1 t5"):
        translate(two_l, ModelPaths([sd3_models[1]]))
    for name in ("sd3.5_large_blur", "sd3.5_large_canny_controlnet_example"):  # SD3.5 ControlNets: by their keys
        assert check(TEMPLATES / f"{name}.json") == []  # (tests/comfy/test_sd3_controlnet_templates.py)


def comfy_weighted(tokenizer, encoder, prompt: list[tuple[str, float]], pad: int, length: int, bos: bool = True):
    """ComfyUI's weighted encoding written out (comfy/sd1_clip.py `tokenize_with_weights` and
    `encode_token_weights`): each word tokenized alone, [BOS] + tokens + EOS, padded to `length` with `pad`; when a
    weight is not 1 the empty prompt ([BOS] EOS pad…) is encoded too and each weighted state becomes
    z_empty + w·(z − z_empty). CLIP: the penultimate hidden state; T5 (bos False): the last. (1, length, C)."""
    ids, weights = [], []
    for word, weight in prompt:
        tokens = tokenizer(word).input_ids[1:-1] if bos else tokenizer(word).input_ids[:-1]
        ids, weights = ids + tokens, weights + [weight] * len(tokens)
    start = [tokenizer.bos_token_id] if bos else []
    ids = start + ids + [tokenizer.eos_token_id] + [pad] * (length - len(start) - len(ids) - 1)
    weights = [1.0] * len(start) + weights + [1.0] * (length - len(start) - len(weights))
    empty = start + [tokenizer.eos_token_id] + [pad] * (length - len(start) - 1)

    def states(tokens):
        with torch.no_grad():
            out = encoder(torch.tensor([tokens]), output_hidden_states=True)
        return out.hidden_states[-2] if bos else out.last_hidden_state

    z, z_empty, w = states(ids), states(empty), torch.tensor(weights)[None, :, None]
    return torch.where(w != 1.0, z_empty + w * (z - z_empty), z), torch.tensor([ids])


def test_weighted_sd3_prompt_equals_the_pipeline_given_comfyuis_weighting(sd3_models, seed5, tmp_path):
    """`a (red fox:2.5) in fresh snow`: CLIP-L, bigG and T5 states moved as ComfyUI moves them (written out above),
    given to StableDiffusion3Pipeline as prompt embeddings; the weight changes the image."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    got = run(sd3_models, tmp_path / "out", "3.seed=5", "16.text=a (red fox:2.5) in fresh snow")
    pipe = StableDiffusion3Pipeline.from_pretrained(sd3_models[0])
    words = [("a", 1.0), ("red", 2.5), ("fox", 2.5), ("in", 1.0), ("fresh", 1.0), ("snow", 1.0)]
    l_states, l_ids = comfy_weighted(pipe.tokenizer, pipe.text_encoder, words, pipe.tokenizer.eos_token_id, 77)
    g_states, g_ids = comfy_weighted(pipe.tokenizer_2, pipe.text_encoder_2, words, 0, 77)
    t5_states, _ = comfy_weighted(pipe.tokenizer_3, pipe.text_encoder_3, words, 0, 77, bos=False)
    clip = torch.nn.functional.pad(torch.cat([l_states, g_states], dim=-1), (0, 64 - 24 - 32))  # (1, 77, 64)
    with torch.no_grad():
        pooled = torch.cat([pipe.text_encoder(l_ids).text_embeds, pipe.text_encoder_2(g_ids).text_embeds], dim=-1)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    out = pipe(prompt_embeds=torch.cat([clip, t5_states], dim=1), pooled_prompt_embeds=pooled, negative_prompt="",
               height=32, width=32, sigmas=comfy_sgm_uniform(STEPS), guidance_scale=4.01, max_sequence_length=77,
               generator=torch.Generator("cpu").manual_seed(5), output_type="np")
    want = np.round(out.images[0] * 255).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - seed5[0]).max() > 4  # the unweighted prompt draws another image


def test_lora_loader_on_the_sd3_checkpoint_equals_the_pipeline_with_the_lora(sd3_models, seed5, lora_files, tmp_path):
    """LoraLoader (strengths 0.8) between the checkpoint and the sampler / prompts, with a LoRA in ComfyUI's names
    (transformer + CLIP-L layers, tests/sd3/test_sd3_lora.py), equals the pipeline with its peft twin at scale 0.8."""
    import shutil

    from nodegraph.comfy.reader import read_workflow

    (sd3_models[1] / "loras").mkdir(exist_ok=True)
    shutil.copy(lora_files["comfy"], sd3_models[1] / "loras" / "sd3_lora.safetensors")
    api = read_workflow(TEMPLATE).api
    api["l"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "strength_model": 0.8,
                                                       "lora_name": "sd3_lora.safetensors", "strength_clip": 0.8}}
    api["3"]["inputs"]["model"] = ["l", 0]
    for node in ("16", "40"):
        api[node]["inputs"]["clip"] = ["l", 1]
    workflow = tmp_path / "lora.json"
    workflow.write_text(json.dumps(api))
    got = run(sd3_models, tmp_path / "out", "3.seed=5", workflow=workflow)
    want = pipeline_image(sd3_models[0], seed=5, lora=lora_files["peft without bigG"], lora_scale=0.8)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - seed5[0]).max() > 4  # the LoRA moves the image


def test_empty_latent_image_and_a_vae_loader_keep_the_templates_image(sd3_models, seed5, tmp_path):
    """EmptyLatentImage (4 channels of zeros) instead of EmptySD3LatentImage, which ComfyUI widens to the model's
    channels (comfy/sample.py `fix_empty_latent_channels`), and a VAELoader of vae/sd3_vae.safetensors (the
    checkpoint's own VAE weights, LDM names) instead of the checkpoint's VAE: the template's image."""
    from nodegraph.comfy.reader import read_workflow

    api = read_workflow(TEMPLATE).api
    api["53"]["class_type"] = "EmptyLatentImage"
    api["v"] = {"class_type": "VAELoader", "inputs": {"vae_name": "sd3_vae.safetensors"}}
    api["8"]["inputs"]["vae"] = ["v", 0]
    workflow = tmp_path / "empty_latent_vae.json"
    workflow.write_text(json.dumps(api))
    assert np.array_equal(run(sd3_models, tmp_path / "out", "3.seed=5", workflow=workflow), seed5[0])


def test_split_files_unet_triple_clip_and_vae_loaders_draw_the_checkpoints_image(sd3_models, seed5, tmp_path):
    """The template rewired to ComfyUI's split files: UNETLoader (SAI's transformer, no prefix), TripleCLIPLoader
    (T5, CLIP-L, bigG files in that order: each told by its tensors) and VAELoader (LDM names), configured from the
    SD3 folder (`config`, `config_text`): the all-in-one image."""
    from nodegraph.cli import main
    from nodegraph.comfy.reader import read_workflow

    api = read_workflow(TEMPLATE).api
    del api["4"]
    api["u"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "sd3.5_large.safetensors",
                                                       "weight_dtype": "default"}}
    api["v"] = {"class_type": "VAELoader", "inputs": {"vae_name": "sd3_vae.safetensors"}}
    api["t"] = {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                             "clip_name2": "clip_l.safetensors",
                                                             "clip_name3": "clip_g.safetensors"}}
    api["3"]["inputs"]["model"], api["8"]["inputs"]["vae"] = ["u", 0], ["v", 0]
    for node in ("16", "40"):
        api[node]["inputs"]["clip"] = ["t", 0]
    workflow = tmp_path / "split.json"
    workflow.write_text(json.dumps(api))
    sets = [f"config={sd3_models[0]}", f"config_text={sd3_models[0]}", "53.width=64", "53.height=64",
            f"3.steps={STEPS}", f"16.text={PROMPT}", "3.seed=5"]
    out = tmp_path / "out"
    assert main(["run", str(workflow), "--models", str(sd3_models[1]), "--out", str(out), "-q",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    assert np.array_equal(np.asarray(Image.open(next(out.rglob("*.png"))).convert("RGB")).astype(int), seed5[0])


def test_prompt_features_wider_than_the_sd3_transformer_are_refused_not_cut():
    """A context wider than the MMDiT's joint_attention_dim (text encoders of another model) is an error naming
    both widths, never silently cropped by the zero-padding."""
    from types import SimpleNamespace

    from nodegraph.comfy.flow import flow_denoise

    class SD3Transformer2DModel:  # the name flow_denoise dispatches on; never called
        config, dtype = SimpleNamespace(joint_attention_dim=8), torch.float32

    with pytest.raises(ValueError, match=r"the prompt's features are 16 wide, but this SD3 transformer takes 8"):
        flow_denoise(SD3Transformer2DModel(), torch.zeros(1, 16, 4, 4), 1.0, torch.zeros(1, 5, 16),
                     pooled=(torch.zeros(1, 4), None), multiplier=1000.0)


def test_sampler_custom_advanced_with_cfg_guider_on_sd3_equals_the_ksampler(sd3_models, seed5, tmp_path):
    """The template's KSampler rewired as RandomNoise + CFGGuider + KSamplerSelect + BasicScheduler (sgm_uniform on
    the model's σ table) + SamplerCustomAdvanced (API form): the KSampler's image bit for bit."""
    from nodegraph.cli import main
    from nodegraph.comfy.reader import read_workflow

    api = read_workflow(TEMPLATE).api
    ksampler = api.pop("3")["inputs"]
    api.update({
        "n": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "g": {"class_type": "CFGGuider", "inputs": {"model": ksampler["model"], "positive": ksampler["positive"],
                                                    "negative": ksampler["negative"], "cfg": ksampler["cfg"]}},
        "s": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "b": {"class_type": "BasicScheduler", "inputs": {"model": ksampler["model"], "scheduler": "sgm_uniform",
                                                         "steps": STEPS, "denoise": 1.0}},
        "c": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["n", 0], "guider": ["g", 0],
                                                                "sampler": ["s", 0], "sigmas": ["b", 0],
                                                                "latent_image": ksampler["latent_image"]}}})
    api["8"]["inputs"]["samples"] = ["c", 0]
    workflow = tmp_path / "custom_advanced.json"
    workflow.write_text(json.dumps(api))
    sets = [f"config={sd3_models[0]}", "53.width=64", "53.height=64", f"16.text={PROMPT}", f"4.ckpt_name={PLAIN}"]
    out = tmp_path / "out"
    assert main(["run", str(workflow), "--models", str(sd3_models[1]), "--out", str(out), "-q",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    assert np.array_equal(np.asarray(Image.open(next(out.rglob("*.png"))).convert("RGB")).astype(int), seed5[0])


def test_a_huge_prompt_is_refused_naming_the_node_before_any_text_encoder_runs(sd3_models, tmp_path, capsys,
                                                                              monkeypatch):
    """A shared workflow's 100 kB prompt would add 77 tokens to the joint sequence per 75 CLIP tokens: refused over
    1024 CLIP tokens, counted without encoding (the encoders here fail the test if called), exit 1, no traceback."""
    from nodegraph.cli import main

    def no_encoding(*args, **kwargs):
        raise AssertionError("a text encoder ran")

    monkeypatch.setattr("nodegraph.comfy.text.encode", no_encoding)
    prompt = "a red fox in fresh snow " * 4_200  # ~100 kB, 25,200 words
    args = [a for s in (f"config={sd3_models[0]}", f"16.text={prompt}", f"4.ckpt_name={PLAIN}") for a in ("--set", s)]
    code = main(["run", str(TEMPLATE), "--models", str(sd3_models[1]), "--out", str(tmp_path), "-q", *args])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert re.search(r"16.*`text`: the prompt is \d{4} CLIP tokens or more \(`tokenizer`\), over 1024, the most this "
                     r"import encodes .*shorten the prompt", err), err
    assert not list(tmp_path.rglob("*.png"))
