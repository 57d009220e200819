"""ComfyUI's `gligen_textbox_example` template (pinned package JSON: GLIGENLoader + two GLIGENTextBoxApply on the
positive prompt) with a tiny random GLIGEN file in ComfyUI's gligen/ layout (tests/gligen/tiny_gligen.py).

Checked against ComfyUI's arithmetic written out here from its source, around diffusers' gated UNet with the same
tensors: nodes.py GLIGENTextBoxApply (the box text's pooled CLIP output, the box kept as height // 8, width // 8,
y // 8, x // 8), comfy/gligen.py set_position (x / w, y / h, (x + width) / w, (y + height) / h of the latent,
padded to 30 with mask 0), comfy/samplers.py (the fusers only in the prompts that carry boxes: the negative
prompt runs the plain UNet, where diffusers' pipeline would run them with null tokens), on every step; KSampler's
"normal" σ, Euler, CFG on x₀. Only this arithmetic covers the negative-prompt rule and the box rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from templates import models_folder, run_template, sets, template

NAME = "gligen_textbox_example"
# the template's sizes ÷ 8 (rounded down to multiples of 8): a 96² image, the boxes inside it
SMALL = dict(n5_width=96, n5_height=96, n21_width=24, n21_height=32, n21_x=16, n21_y=32,
             n27_width=16, n27_height=16, n27_x=48, n27_y=0, n3_steps=3)


@pytest.fixture(scope="module")
def gligen_models(tmp_path_factory, models_dir, sd1_folder):
    """(ComfyUI models/ folder with the template's two file names, diffusers' gated UNet of the GLIGEN file)."""
    from tests.gligen.tiny_gligen import gated_unet, write_gligen_file

    root = tmp_path_factory.mktemp("gligen-template")
    unet = gated_unet(sd1_folder)
    path = write_gligen_file(unet, root / "tiny_gligen.safetensors")
    models = models_folder(root, {"checkpoints/v1-5-pruned-emaonly-fp16.safetensors":
                                  models_dir / "checkpoints" / "tiny-sd1.safetensors",
                                  "gligen/gligen_sd14_textbox_pruned.safetensors": path})
    return models, unet


def comfy_sigmas(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(SD's σ table as ComfyUI keeps it (float32), KSampler "normal" σs): t = linspace(999, 0, steps) interpolated in
    log σ, then 0 (comfy/model_sampling.py ModelSamplingDiscrete, comfy/samplers.py normal_scheduler)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, dim=0)
    table = (((1 - ac) / ac) ** 0.5).float()
    out = []
    for t in torch.linspace(999, 0, steps).tolist():
        low, high, w = math.floor(t), math.ceil(t), t - math.floor(t)
        out.append(float(((1 - w) * table[low].log() + w * table[high].log()).exp()))
    return table, torch.tensor(out + [0.0])


def comfy_gligen_image(unet, sd1_folder, seed: int, cfg: float, steps: int, latent: int, boxes, texts, prompt: str,
                       negative: str) -> np.ndarray:
    """The template's image by ComfyUI's arithmetic (module docstring), diffusers' gated UNet as the model."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(sd1_folder, subfolder="tokenizer")
    te = CLIPTextModel.from_pretrained(sd1_folder, subfolder="text_encoder").eval()
    vae = AutoencoderKL.from_pretrained(sd1_folder, subfolder="vae").eval()

    def encode(text):
        ids = tok(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            out = te(ids)
        return out.last_hidden_state, out.pooler_output  # (1, 77, C), (1, C)

    cond, uncond = encode(prompt)[0], encode(negative)[0]
    n = len(boxes)
    xyxy = torch.zeros(1, 30, 4)
    for k, (w, h, x, y) in enumerate(boxes):  # pixels → cells (// 8) → fractions of the latent's cells
        cw, ch, cx, cy = w // 8, h // 8, x // 8, y // 8
        xyxy[0, k] = torch.tensor((cx / latent, cy / latent, (cx + cw) / latent, (cy + ch) / latent))
    masks = torch.zeros(1, 30)
    masks[0, :n] = 1
    phrases = torch.zeros(1, 30, te.config.hidden_size)
    phrases[0, :n] = torch.cat([encode(t)[1] for t in texts])
    gligen = {"gligen": {"boxes": xyxy, "masks": masks, "positive_embeddings": phrases}}

    table, sigmas = comfy_sigmas(steps)
    x = torch.randn((1, 4, latent, latent), generator=torch.Generator("cpu").manual_seed(seed))
    x = x * math.sqrt(1 + float(sigmas[0]) ** 2)  # EPS noise scaling at full denoise
    with torch.no_grad():
        for i in range(steps):
            s = float(sigmas[i])
            t = int((table.log() - math.log(s)).abs().argmin())  # the nearest table entry
            x_in = x / math.sqrt(s ** 2 + 1)
            eps_pos = unet(x_in, t, cond, cross_attention_kwargs=dict(gligen)).sample  # grounded
            eps_neg = unet(x_in, t, uncond).sample  # no gligen kwargs: diffusers skips the fusers
            x0_pos, x0_neg = x - s * eps_pos, x - s * eps_neg
            denoised = x0_neg + (x0_pos - x0_neg) * cfg
            x = x + (x - denoised) / s * (float(sigmas[i + 1]) - s)  # Euler
        image = vae.decode(x / 0.18215).sample
    return ((image / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _api_values():
    from nodegraph.comfy.reader import read_workflow

    return read_workflow(template(NAME)).api


def test_gligen_template_equals_comfyuis_arithmetic(tmp_path, gligen_models, sd1_folder):
    models, unet = gligen_models
    api = _api_values()
    ours = run_template(tmp_path, NAME, models, sd1_folder, *sets(**SMALL, n3_sampler_name="euler"))[0]
    box = {k: v for k, v in SMALL.items() if not k.startswith(("n3_", "n5_"))}
    theirs = comfy_gligen_image(
        unet, sd1_folder, api["3"]["inputs"]["seed"], float(api["3"]["inputs"]["cfg"]), 3, 96 // 8,
        [tuple(box[f"n{n}_{k}"] for k in ("width", "height", "x", "y")) for n in (21, 27)],
        [api["21"]["inputs"]["text"], api["27"]["inputs"]["text"]], api["24"]["inputs"]["text"],
        api["7"]["inputs"]["text"])
    assert int(np.abs(ours.astype(int) - theirs.astype(int)).max()) <= 1


def test_gligen_template_runs_as_shipped_and_its_boxes_steer_the_image(tmp_path, gligen_models, sd1_folder,
                                                                       models_dir):
    """uni_pc_bh2 as the template ships it; moving a box, or dropping GLIGEN, changes the image."""
    import json

    from PIL import Image

    from nodegraph.cli import main

    models, _ = gligen_models
    shipped = run_template(tmp_path / "a", NAME, models, sd1_folder, *sets(**SMALL))[0]
    moved = run_template(tmp_path / "b", NAME, models, sd1_folder, *sets(**dict(SMALL, n21_x=56, n21_y=8)))[0]
    api = json.loads(json.dumps(_api_values()))
    api["3"]["inputs"]["positive"] = ["24", 0]  # the prompt without its two boxes
    for key, value in SMALL.items():
        node_id, name = key[1:].split("_", 1)
        api[node_id]["inputs"][name] = value
    (tmp_path / "plain.json").write_text(json.dumps(api))
    assert main(["run", str(tmp_path / "plain.json"), "--models", str(models), "--out", str(tmp_path / "c"), "-q",
                 "--set", f"config={sd1_folder}"]) == 0
    (png,) = (tmp_path / "c").rglob("*.png")  # SaveImage's prefix gligen/testing: a subfolder
    plain = np.asarray(Image.open(png).convert("RGB"))
    assert shipped.std() > 1
    assert int(np.abs(shipped.astype(int) - moved.astype(int)).max()) > 5
    assert int(np.abs(shipped.astype(int) - plain.astype(int)).max()) > 5


def test_gligen_file_of_another_model_and_a_box_outside_the_image_are_refused(tmp_path, gligen_models, sd1_folder,
                                                                                  models_dir, capsys):
    """Exit status 1 with the reason, no traceback: a GLIGEN file whose fusers do not fit the checkpoint's UNet
    (one transformer block short), and a box whose corner lies outside the image."""
    from safetensors.torch import save_file

    from nodegraph.cli import main
    from tests.gligen.tiny_gligen import comfy_layout

    models, unet = gligen_models
    wrong = models_folder(tmp_path, {"checkpoints/v1-5-pruned-emaonly-fp16.safetensors":
                                     models_dir / "checkpoints" / "tiny-sd1.safetensors"})
    (wrong / "gligen").mkdir()
    save_file({k: v for k, v in comfy_layout(unet).items() if not k.startswith("middle_block.")},
              str(wrong / "gligen" / "gligen_sd14_textbox_pruned.safetensors"))

    def run(folder, **values):
        return main(["run", str(template(NAME)), "--models", str(folder), "--out", str(tmp_path / "out"), "-q",
                     "--set", f"config={sd1_folder}", *sets(**dict(SMALL, n3_steps=1, **values))])

    assert run(wrong) == 1
    err = capsys.readouterr().err
    assert "gligen_sd14_textbox_pruned.safetensors does not match this checkpoint's UNet: it has 3 fusers" in err
    assert "Traceback" not in err
    assert run(models, n21_x=200) == 1
    err = capsys.readouterr().err
    assert "a GLIGEN box at (200, 32) px lies outside the 96×96 px image" in err and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("*.png"))


def test_boxes_of_an_area_conditioned_prompt_are_relative_to_its_area(monkeypatch):
    """comfy/samplers.py hands set_position the area's crop (input_x), so a box on a prompt with an area is a
    fraction of that area's cells; the negative prompt, without boxes, runs the plain model."""
    from types import SimpleNamespace

    import nodegraph.comfy.gligen as comfy_gligen
    from nodegraph.comfy.areas import entry
    from nodegraph.comfy.guidance import guided_denoise

    seen = []

    class Toy(torch.nn.Module):
        config = SimpleNamespace()

        def forward(self, x, t, encoder_hidden_states):
            return 0.5 * x

    def grounded(unet, gligen, x, area=False):
        seen.append(comfy_gligen.latent_boxes(gligen["boxes"], *x.shape[-2:], area))
        return unet

    monkeypatch.setattr(comfy_gligen, "grounded", grounded)
    box = comfy_gligen.box_entry(torch.zeros(4), width=32, height=16, x=16, y=8)  # cells (2, 4, 1, 2)
    positive = [dict(entry(torch.zeros(1, 3, 8)), area=(8, 10, 2, 4), gligen={"model": None, "boxes": [box]})]
    guided_denoise(Toy(), torch.zeros(1, 4, 12, 16), 1.5, None, torch.zeros(1, 3, 8), 7.0, positive_list=positive)
    # the 8 × 10-cell area (clipped to 8 × 10 of the 12 × 16 latent from row 2, column 4): x 2/10 … 6/10, y 1/8 … 3/8
    assert seen == [[(2 / 10, 1 / 8, 6 / 10, 3 / 8)]]
    far = comfy_gligen.box_entry(torch.zeros(4), width=32, height=16, x=96, y=8)  # column 12 of a 10-column area
    positive[0]["gligen"]["boxes"] = [far]
    with pytest.raises(ValueError, match=r"a GLIGEN box at \(96, 8\) px lies outside the area \(80×64 px\) its "
                                         r"prompt is set to \(boxes are placed from the area's corner\)"):
        guided_denoise(Toy(), torch.zeros(1, 4, 12, 16), 1.5, None, torch.zeros(1, 3, 8), 7.0, positive_list=positive)
