"""First-block cache on nodegraph's Z-Image transformer equals diffusers' `apply_first_block_cache` hook on the
same tiny weights: the same calls skipped (counted at a block's attention), the same outputs, along a sampling
trajectory that each model drives with its own outputs (flow-matching Euler steps). (diffusers' hook needs a
parameter name mapped and a cache context set to run on Z-Image at all: see run_diffusers.)"""

from __future__ import annotations

import json

import pytest
import torch

from nodegraph.models.first_block_cache import FirstBlockCache
from nodegraph.models.loading import load_component

import diffusers  # a test dependency: a broken install must fail, not skip
TINY = dict(all_patch_size=[2], all_f_patch_size=[1], in_channels=16, dim=64, n_layers=4, n_refiner_layers=1,
            n_heads=4, n_kv_heads=4, norm_eps=1e-5, qk_norm=True, cap_feat_dim=24, rope_theta=256.0,
            t_scale=1000.0, axes_dims=[4, 6, 6], axes_lens=[160, 24, 24])
SIGMAS = torch.linspace(1.0, 0.0, 21)  # 20 steps
REPO_GRAPH = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "graphs" / "z_image.yaml")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(31)
    theirs = ZImageTransformer2DModel(**TINY)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        # A trained timestep MLP reads the slow frequencies; random weights on the fast ones make every step's
        # modulation unrelated to the last and no call could be skipped. Cosines and sines of index < 64 off.
        theirs.t_embedder.mlp[0].weight[:, :64] = 0
        theirs.t_embedder.mlp[0].weight[:, 128:192] = 0
    root = tmp_path_factory.mktemp("zimage-fbc")
    theirs.save_pretrained(root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "ZImagePipeline",
                                                       "transformer": ["diffusers", "ZImageTransformer2DModel"]}))
    return theirs.eval(), load_component(root, "transformer")


def count_calls(module) -> list:
    calls = []
    module.register_forward_hook(lambda *a: calls.append(1))
    return calls


def sample(step, x):
    """Flow-matching Euler from sigma 1 to 0: x <- x + (sigma_next − sigma) · v, where v = −model output."""
    outs = []
    for k in range(len(SIGMAS) - 1):
        out = step(x, (1 - SIGMAS[k]).reshape(1))
        outs.append(out)
        x = x - (SIGMAS[k + 1] - SIGMAS[k]) * out
    return outs


def run_diffusers(model, x, caption):
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.models.transformers.transformer_z_image import ZImageTransformerBlock

    # diffusers 0.42.1's hook looks the block's input up as `hidden_states`, but ZImageTransformerBlock names it
    # `x` (its first parameter), so the hook raises on Z-Image as shipped; point the name at that parameter.
    TransformerBlockRegistry.get(ZImageTransformerBlock)._cached_parameter_indices = {"hidden_states": 0}
    apply_first_block_cache(model, FirstBlockCacheConfig(threshold=THRESHOLD))
    calls = count_calls(model.layers[2].attention)

    # The hook keeps its state per "cache context" and refuses to run without one; ZImageTransformer2DModel has no
    # CacheMixin.cache_context (and ZImagePipeline opens none), so set the context the way that method does.
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    _set_cache_context(model, CacheContext("cond"))
    with torch.no_grad():
        outs = sample(lambda v, t: model([v.clone()], t, [caption.clone()], return_dict=False)[0][0], x)
    return outs, len(calls)


THRESHOLD = 0.25


def test_first_block_cache_matches_diffusers_hook(models):
    theirs, ours = models
    g = torch.Generator().manual_seed(3)
    x, caption = torch.randn(16, 1, 8, 8, generator=g), torch.randn(9, 24, generator=g)
    expected, their_calls = run_diffusers(theirs, x, caption)
    cache = FirstBlockCache(THRESHOLD)
    calls = count_calls(ours.layers[2].attention)
    with torch.no_grad():
        def step(v, t):
            with cache.applied(ours.layers):
                return ours([v], t, [caption])[0]
        got = sample(step, x)
    assert len(calls) == their_calls == sum(cache.decisions)
    assert 2 <= sum(cache.decisions) < len(cache.decisions), f"the threshold must both skip and run: {cache.decisions}"
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # leaving the context restores the plain forward
        plain = ours([x], torch.tensor([0.5]), [caption])[0]
        assert len(calls) == their_calls + 1 and torch.isfinite(plain).all()


def test_threshold_out_of_range_and_an_unsupported_model_say_what_is_allowed():
    from nodegraph.models.first_block_cache import CachedTransformer

    with pytest.raises(ValueError, match=r"`threshold` must be from 0 to 1 \(diffusers' default 0.05"):
        FirstBlockCache(1.5)
    with pytest.raises(ValueError, match=r"supports transformers with a main stack of blocks \(`layers`: Z-Image\); "
                                         r"this model is a Linear. Use `cache: none`"):
        CachedTransformer(torch.nn.Linear(2, 2), 0.05)


def test_z_image_graph_first_block_cache_matches_diffusers_pipeline_with_the_hook(smooth_z_image):
    from diffusers import ZImagePipeline
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.hooks.hooks import CacheContext, _set_cache_context
    from diffusers.models.transformers.transformer_z_image import ZImageTransformerBlock

    from nodegraph import run_graph
    from nodegraph.exec.step_cache_report import StepCacheReport
    from tests.graphs.tiny_pipelines import png_pixels, to_uint8

    settings = dict(prompt="a red fox", seed=2, steps=10, width=32, height=32)
    pipe = ZImagePipeline.from_pretrained(smooth_z_image)
    pipe.set_progress_bar_config(disable=True)
    TransformerBlockRegistry.get(ZImageTransformerBlock)._cached_parameter_indices = {"hidden_states": 0}
    apply_first_block_cache(pipe.transformer, FirstBlockCacheConfig(threshold=0.3))
    _set_cache_context(pipe.transformer, CacheContext("cond"))  # as in run_diffusers
    their_calls = count_calls(pipe.transformer.layers[-1].attention)  # runs only on full calls
    images = pipe(settings["prompt"], height=32, width=32, num_inference_steps=10, guidance_scale=0.0,
                  generator=torch.Generator("cpu").manual_seed(2), output_type="np").images
    report = StepCacheReport()
    got = run_graph(REPO_GRAPH, inputs={"model": str(smooth_z_image), "cache": "first_block", "cache_threshold": 0.3,
                                        **settings}, hooks=[report])["image"]
    (reused, total), = report.counts.values()
    assert total == 10 and 0 < reused < 10, report.counts
    assert len(their_calls) == total - reused, "the same calls run in full"
    assert (png_pixels(got).int() - to_uint8(images).int()).abs().max() <= 1
