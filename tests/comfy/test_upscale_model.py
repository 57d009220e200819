"""UpscaleModelLoader + ImageUpscaleWithModel: RRDBNet against ESRGAN's equations written out here with F.conv2d
(Wang et al. 2018: dense blocks of five 3×3 convs, LeakyReLU 0.2, residuals scaled 0.2, two nearest ×2
upsamplings), the original ESRGAN layout read as Real-ESRGAN's, ComfyUI's tiling seamless for a model that is
exactly tile-invariant, the pickle rule, and the `esrgan_example` / `hiresfix_esrgan_workflow` templates (pinned
package JSON) end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from templates import checkpoints_of, models_folder, run_template, sets, small_sizes, template


def tiny_state(seed=0, nf=8, gc=4, blocks=2, unshuffle=1, loud=3.0):
    from nodegraph.models.esrgan import RRDBConfig, RRDBNet

    torch.manual_seed(seed)
    model = RRDBNet(RRDBConfig(features=nf, blocks=blocks, growth=gc, unshuffle=unshuffle))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(loud)  # louder than the init, so every block shows in the output
    return {k: v.clone() for k, v in model.state_dict().items()}


def esrgan_by_hand(state, x):
    def conv(name, h):
        return F.conv2d(h, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

    def lrelu(h):
        return torch.where(h >= 0, h, 0.2 * h)

    feat = conv("conv_first", x)
    trunk, blocks = feat, 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    for b in range(blocks):
        rrdb_in = trunk
        for r in (1, 2, 3):
            h = [trunk]
            for k in (1, 2, 3, 4):
                h.append(lrelu(conv(f"body.{b}.rdb{r}.conv{k}", torch.cat(h, 1))))
            trunk = conv(f"body.{b}.rdb{r}.conv5", torch.cat(h, 1)) * 0.2 + trunk
        trunk = trunk * 0.2 + rrdb_in
    feat = feat + conv("conv_body", trunk)
    for up in ("conv_up1", "conv_up2"):
        feat = lrelu(conv(up, feat.repeat_interleave(2, 2).repeat_interleave(2, 3)))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def test_rrdbnet_follows_esrgans_equations_and_reads_the_original_layout():
    from nodegraph.models.esrgan import load_rrdbnet

    state = tiny_state()
    x = torch.rand((1, 3, 12, 10), generator=torch.Generator().manual_seed(1))
    ours = load_rrdbnet(state)(x)
    expected = esrgan_by_hand(state, x)
    assert ours.shape == (1, 3, 48, 40)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    old = {"model.0.weight": state["conv_first.weight"], "model.0.bias": state["conv_first.bias"]}
    for key, value in state.items():
        name, _, kind = key.rpartition(".")
        if name.startswith("body."):
            _, b, rdb, conv = name.split(".")
            old[f"model.1.sub.{b}.RDB{rdb[-1]}.{conv}.0.{kind}"] = value
    old.update({f"model.1.sub.2.{k}": state[f"conv_body.{k}"] for k in ("weight", "bias")})
    for index, name in ((3, "conv_up1"), (6, "conv_up2"), (8, "conv_hr"), (10, "conv_last")):
        old.update({f"model.{index}.{k}": state[f"{name}.{k}"] for k in ("weight", "bias")})
    torch.testing.assert_close(load_rrdbnet(old)(x), expected, atol=1e-5, rtol=1e-5)


def test_tiles_blend_seamlessly_and_match_one_pass_for_a_tile_invariant_model():
    from nodegraph.nodes.comfy_upscale import tiled_scale

    def nearest4(t):
        return t.repeat_interleave(4, 2).repeat_interleave(4, 3)

    x = torch.rand((2, 3, 150, 97), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(tiled_scale(x, nearest4, 64, 8, 4), nearest4(x))  # 3×2 overlapping tiles


def test_a_pickled_upscaler_needs_allow_pickle(tmp_path):
    from nodegraph.nodes.comfy_upscale import LoadUpscaleModel

    torch.save(tiny_state(), tmp_path / "x4.pth")
    node = LoadUpscaleModel()
    ctx = type("Ctx", (), {"device": torch.device("cpu")})()
    with pytest.raises(ValueError, match="is a pickle"):
        node.run(LoadUpscaleModel.Inputs(model=str(tmp_path / "x4.pth")), ctx)
    model = node.run(LoadUpscaleModel.Inputs(model=str(tmp_path / "x4.pth"), allow_pickle=True), ctx)["upscale_model"]
    assert model.scale == 4


@pytest.fixture(scope="module")
def upscaler_file(tmp_path_factory):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("esrgan") / "RealESRGAN_x4plus.safetensors"
    save_file(tiny_state(seed=3, blocks=1, loud=1.0), str(path))
    return path


@pytest.mark.parametrize("name", ["esrgan_example", "hiresfix_esrgan_workflow"])
def test_esrgan_templates_run_end_to_end(tmp_path, models_dir, sd1_folder, upscaler_file, name):
    from safetensors.torch import load_file

    from nodegraph.comfy.reader import read_workflow
    from nodegraph.models.esrgan import load_rrdbnet

    files = {f"checkpoints/{n}": models_dir / "checkpoints" / "tiny-sd1.safetensors" for n in checkpoints_of(name)}
    files["upscale_models/RealESRGAN_x4plus.safetensors"] = upscaler_file
    models = models_folder(tmp_path, files)
    api = read_workflow(template(name)).api
    scale = {f"n{k}_{w}": 64 for k, e in api.items() if e["class_type"] == "ImageScale" for w in ("width", "height")}
    images = run_template(tmp_path, name, models, sd1_folder, *small_sizes(name), *sets(**scale))
    sizes = sorted(i.shape[0] for i in images)
    assert 64 in sizes or name == "hiresfix_esrgan_workflow"
    if name == "esrgan_example":  # the 16-px image ×4 as the model computes it (here from the 8-bit preview)
        small = min(images, key=lambda i: i.shape[0])
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            expected = load_rrdbnet(load_file(str(upscaler_file)))(x)
        expected = (expected.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        big = max(images, key=lambda i: i.shape[0])
        diff = np.abs(big.astype(int) - expected.astype(int))
        assert diff.mean() < 0.5 and diff.max() <= 4  # the workflow upscales the float image, not the 8-bit one
        assert np.abs(big.astype(int) - small.repeat(4, 0).repeat(4, 1).astype(int)).max() > 8  # a model ran
