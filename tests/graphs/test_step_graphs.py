"""The shipped step graphs run on their own: one step of sdxl_denoise_step.yaml, inpaint_denoise_step.yaml,
sdxl_inpaint_denoise_step.yaml and controlnet_denoise_step.yaml against the same step written by hand with diffusers' models and schedulers."""

from __future__ import annotations

import pytest
import torch

from tiny_pipelines import REPO

STEPS = 4


def one_step(graph: str, **inputs) -> torch.Tensor:
    """Run a step graph once with the values an including graph's nodes would hand it (models, tensors,
    scheduler and generator are node outputs, which graph inputs given by a user cannot be)."""
    from nodegraph.core.context import RunContext
    from nodegraph.exec.executor import execute_plan
    from nodegraph.spec.loader import load_graph

    graph = load_graph(REPO / "graphs" / graph)
    values = {**graph.checked.defaults, **inputs}
    return execute_plan(graph.plan(None), values, RunContext("cpu", None))["latents"]


def scheduler_pair(folder, name: str, diffusers_class: str):
    """nodegraph's and diffusers' scheduler of the same config, both set to STEPS steps."""
    import diffusers

    from nodegraph.models.loading import load_component
    from nodegraph.schedulers import create_scheduler

    ours = create_scheduler(load_component(folder, "scheduler"), name=name)
    theirs = getattr(diffusers, diffusers_class).from_pretrained(folder, subfolder="scheduler")
    ours.set_timesteps(STEPS)
    theirs.set_timesteps(STEPS)
    return ours, theirs


def guided(noise_pred: torch.Tensor, scale: float) -> torch.Tensor:
    uncond, cond = noise_pred.chunk(2)
    return uncond + scale * (cond - uncond)


def test_sdxl_step_graph_equals_one_diffusers_step_with_guidance_rescale(tiny_sdxl):
    import diffusers
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import rescale_noise_cfg

    from nodegraph.models.loading import load_component

    base = tiny_sdxl[0]
    unet = diffusers.UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    c = unet.config
    n_ids = 6  # base: original size, crop top-left, target size
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(1, c.in_channels, 8, 12, generator=g)
    embeddings = torch.randn(2, 77, c.cross_attention_dim, generator=g)
    pooled = torch.randn(2, c.projection_class_embeddings_input_dim - n_ids * c.addition_time_embed_dim, generator=g)
    time_ids = torch.tensor([[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]] * 2)
    ours, theirs = scheduler_pair(base, "euler", "EulerDiscreteScheduler")
    t = theirs.timesteps[1]
    ours.set_begin_index(1)
    theirs.set_begin_index(1)

    got = one_step("sdxl_denoise_step.yaml", unet=load_component(base, "unet"), scheduler=ours,
                   embeddings=embeddings, pooled=pooled, time_ids=time_ids, latents=latents, t=ours.timesteps[1],
                   guidance_scale=5.0, guidance_rescale=0.7, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        x = theirs.scale_model_input(torch.cat([latents] * 2), t)
        noise = unet(x, t, encoder_hidden_states=embeddings,
                     added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
    cfg = guided(noise, 5.0)
    cfg = rescale_noise_cfg(cfg, noise.chunk(2)[1], guidance_rescale=0.7)
    expected = theirs.step(cfg, t, latents).prev_sample
    assert (got - expected).abs().max().item() < 1e-5
    assert (expected - latents).abs().max().item() > 1e-2  # the step moved the latents


@pytest.fixture(scope="module")
def sd_inputs():
    g = torch.Generator().manual_seed(4)
    return dict(latents=torch.randn(1, 4, 8, 12, generator=g), embeddings=torch.randn(2, 77, 32, generator=g))


def test_inpaint_step_graph_equals_one_diffusers_step_of_a_9_channel_unet(tiny_sd_inpaint, sd_inputs):
    import diffusers

    from nodegraph.models.loading import load_component

    unet = diffusers.UNet2DConditionModel.from_pretrained(tiny_sd_inpaint, subfolder="unet")
    assert unet.config.in_channels == 9
    latents, embeddings = sd_inputs["latents"], sd_inputs["embeddings"]
    mask = torch.zeros(1, 1, 8, 12)
    mask[..., 2:6, 3:9] = 1.0
    masked = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(5))
    ours, theirs = scheduler_pair(tiny_sd_inpaint, "ddim", "DDIMScheduler")
    timesteps = ours.timesteps

    got = one_step("inpaint_denoise_step.yaml", unet=load_component(tiny_sd_inpaint, "unet"), scheduler=ours,
                   embeddings=embeddings, latents=latents, t=timesteps[0], index=0, timesteps=timesteps,
                   mask=mask, masked_image_latents=masked, noise=torch.zeros_like(latents), guidance_scale=7.5,
                   generator=torch.Generator().manual_seed(0))

    t = theirs.timesteps[0]
    with torch.no_grad():
        x = theirs.scale_model_input(torch.cat([latents] * 2), t)
        x = torch.cat([x, torch.cat([mask] * 2), torch.cat([masked] * 2)], dim=1)  # (2B, 9, h, w)
        noise = unet(x, t, encoder_hidden_states=embeddings).sample
    expected = theirs.step(guided(noise, 7.5), t, latents).prev_sample
    assert (got - expected).abs().max().item() < 1e-5
    # the mask channels reach the UNet: another mask gives another step
    other = one_step("inpaint_denoise_step.yaml", unet=load_component(tiny_sd_inpaint, "unet"),
                     scheduler=scheduler_pair(tiny_sd_inpaint, "ddim", "DDIMScheduler")[0], embeddings=embeddings,
                     latents=latents, t=timesteps[0], index=0, timesteps=timesteps, mask=1 - mask,
                     masked_image_latents=masked, noise=torch.zeros_like(latents), guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(0))
    assert (other - got).abs().max().item() > 1e-4


def test_controlnet_step_graph_equals_one_diffusers_controlnet_step_and_skips_it_outside_its_range(
        tiny_sd, tiny_controlnets, sd_inputs):
    import diffusers

    from nodegraph.models.controlnet import load_controlnet
    from nodegraph.models.loading import load_component
    from nodegraph.nodes._control import ControlEntry

    unet = diffusers.UNet2DConditionModel.from_pretrained(tiny_sd, subfolder="unet")
    controlnet = diffusers.ControlNetModel.from_pretrained(tiny_controlnets[0])
    latents, embeddings = sd_inputs["latents"], sd_inputs["embeddings"]
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(6))  # (1, 3, 2h, 2w): the tiny VAE's scale
    control = (ControlEntry(load_controlnet(tiny_controlnets[0]), image, 0.8, 0.25, 0.75),)
    ours_unet = load_component(tiny_sd, "unet")

    def ours_at(index: int) -> torch.Tensor:
        ours, _ = scheduler_pair(tiny_sd, "ddim", "DDIMScheduler")
        return one_step("controlnet_denoise_step.yaml", unet=ours_unet, scheduler=ours, embeddings=embeddings,
                        control=control, latents=latents, t=ours.timesteps[index], index=index,
                        timesteps=ours.timesteps, guidance_scale=7.5, generator=torch.Generator().manual_seed(0))

    def theirs_at(index: int, controlled: bool) -> torch.Tensor:
        _, theirs = scheduler_pair(tiny_sd, "ddim", "DDIMScheduler")
        t = theirs.timesteps[index]
        with torch.no_grad():
            x = theirs.scale_model_input(torch.cat([latents] * 2), t)
            residuals = {}
            if controlled:
                down, mid = controlnet(x, t, encoder_hidden_states=embeddings, controlnet_cond=torch.cat([image] * 2),
                                       conditioning_scale=0.8, return_dict=False)
                residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
            noise = unet(x, t, encoder_hidden_states=embeddings, **residuals).sample
        return theirs.step(guided(noise, 7.5), t, latents).prev_sample

    inside = ours_at(1)  # step 1 of 4 covers [0.25, 0.5): inside [start, end)
    assert (inside - theirs_at(1, controlled=True)).abs().max().item() < 1e-5
    assert (inside - theirs_at(1, controlled=False)).abs().max().item() > 1e-4  # the control matters there
    outside = ours_at(3)  # [0.75, 1.0): outside, the plain UNet step
    assert (outside - theirs_at(3, controlled=False)).abs().max().item() < 1e-5


def test_sdxl_inpaint_step_graph_equals_one_diffusers_step_with_the_known_region_put_back(tiny_sdxl):
    """A 4-channel SDXL UNet: predict with the added conditions, guide, step, then the known region (mask 0)
    re-noised to the next timestep, as StableDiffusionXLInpaintPipeline does after each step."""
    import diffusers

    from nodegraph.models.loading import load_component

    base = tiny_sdxl[0]
    unet = diffusers.UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    c = unet.config
    g = torch.Generator().manual_seed(6)
    latents, image_latents, noise = (torch.randn(1, c.in_channels, 8, 12, generator=g) for _ in range(3))
    embeddings = torch.randn(2, 77, c.cross_attention_dim, generator=g)
    pooled = torch.randn(2, c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim, generator=g)
    time_ids = torch.tensor([[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]] * 2)
    mask = torch.zeros(1, 1, 8, 12)
    mask[..., 2:6, 3:9] = 1.0
    ours, theirs = scheduler_pair(base, "ddim", "DDIMScheduler")
    timesteps = ours.timesteps

    def step(mask):
        return one_step("sdxl_inpaint_denoise_step.yaml", unet=load_component(base, "unet"),
                        scheduler=scheduler_pair(base, "ddim", "DDIMScheduler")[0], embeddings=embeddings,
                        pooled=pooled, time_ids=time_ids, latents=latents, t=timesteps[0], index=0,
                        timesteps=timesteps, mask=mask, masked_image_latents=torch.zeros_like(latents),
                        image_latents=image_latents, noise=noise, guidance_scale=5.0,
                        generator=torch.Generator().manual_seed(0))

    got = step(mask)
    t = theirs.timesteps[0]
    with torch.no_grad():
        x = theirs.scale_model_input(torch.cat([latents] * 2), t)
        pred = unet(x, t, encoder_hidden_states=embeddings,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
    stepped = theirs.step(guided(pred, 5.0), t, latents).prev_sample
    known = theirs.add_noise(image_latents, noise, theirs.timesteps[1:2])
    expected = (1 - mask) * known + mask * stepped
    assert (got - expected).abs().max().item() < 1e-5
    assert (step(1 - mask) - got).abs().max().item() > 1e-2  # the mask decides which region is put back
