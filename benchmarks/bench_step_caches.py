"""Step caches on a Z-Image-architecture transformer: the sampling phase with each cache vs without, and the
first-block cache beside diffusers' own hook on the same weights.

    flock -w 900 /tmp/nodegraph-heavy.lock timeout 240 .venv/bin/python benchmarks/bench_step_caches.py \
        [--dim 512] [--layers 8] [--size 256] [--steps 8] [--repeats 2] [--threshold 0.05] [--mag-threshold 0.06]
        [--methods none,first_block,taylorseer,mag,faster,pab,diffusers] [--model FOLDER]

Real size (issue 31's goal, one lock hold of at most 8 minutes; the folder is bench_z_image.py's
`z_image_checkpoint(..., "real")`, Z-Image-Turbo's architecture with random bf16 weights):

    flock -w 900 /tmp/nodegraph-heavy.lock timeout 480 .venv/bin/python benchmarks/bench_step_caches.py \
        --model ~/.cache/nodegraph-bench/z-image-random-bf16-real --size 128 --steps 28 --repeats 1 \
        --methods none,first_block,diffusers --threads 2

Only the sampling phase is timed (the transformer calls and the flow-matching Euler updates of one image, in one
process, bf16, after one untimed warm-up call), as the process's CPU time on one thread by default: on a machine
shared with other work the wall time of a run varied 20-fold here, its CPU time does not (`--threads N` for
more). Loading, text encoding and decoding do not change with a cache.
Methods are alternated within each round (none, first_block, taylorseer, mag, faster, pab, diffusers'
first-block hook), each time printed as it is measured, and the median of `--repeats` rounds is printed with
min–max at the end. Each row gives the calls that ran
in full, the speed-up over `none`, and the distance of the final latents from the uncached run (max and mean
|Δ|; latents, not pixels). The diffusers row gives the largest difference between its final latents and ours.

Weights: random, moved off their initialisation, with the timestep MLP reading only the slow frequencies (as in
tests/fewsteps: a trained model's does; with fully random weights every step looks unrelated to the last and no
threshold-based cache skips anything). So the skip counts say what the schedule and threshold allow on a smooth
model, not what a trained Z-Image-Turbo gives. MagCache uses ratios calibrated on the same model (an uncached run).
The default size (dim 512, 8 layers) keeps one command inside the heavy-run lock's 4 minutes on 2 shared cores;
Z-Image-Turbo itself is dim 3840, 30 layers, where the main stack is a larger share of each call (the embedding,
RoPE and final layer do not shrink with a cache), so the saving there is larger than here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("none", "first_block", "taylorseer", "mag", "faster", "pab")


def build(dim: int, layers: int, folder: Path):
    """A diffusers ZImageTransformer2DModel saved in bf16 (and returned), and ours loaded from the same files."""
    import torch
    from diffusers import ZImageTransformer2DModel

    from nodegraph.models.loading import load_component

    torch.manual_seed(0)
    theirs = ZImageTransformer2DModel(dim=dim, n_layers=layers, n_refiner_layers=2, n_heads=dim // 128,
                                      n_kv_heads=dim // 128, cap_feat_dim=1024, axes_lens=[256, 128, 128])
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        theirs.t_embedder.mlp[0].weight[:, :64] = 0  # cosines of index < 64: the fast frequencies off
        theirs.t_embedder.mlp[0].weight[:, 128:192] = 0  # sines
    theirs = theirs.to(torch.bfloat16).eval()
    theirs.save_pretrained(folder / "transformer")
    (folder / "model_index.json").write_text('{"_class_name": "ZImagePipeline", '
                                             '"transformer": ["diffusers", "ZImageTransformer2DModel"]}')
    return theirs, load_component(folder, "transformer", dtype=torch.bfloat16)


def from_folder(folder: Path):
    """Ours loaded from `folder` with the slow-frequency timestep MLP, and diffusers' built on the meta device
    holding the same tensors (no second copy of the weights)."""
    import torch
    from diffusers import ZImageTransformer2DModel

    from nodegraph.models.loading import load_component

    ours = load_component(folder, "transformer", dtype=torch.bfloat16)
    first = ours.t_embedder.mlp[0]
    weight = first.weight.detach().clone()  # the file's tensor may be a read-only map: change a copy
    weight[:, :64] = 0  # cosines of index < 64: the fast frequencies off
    weight[:, 128:192] = 0  # sines
    first.weight = torch.nn.Parameter(weight, requires_grad=False)
    config = ZImageTransformer2DModel.load_config(folder / "transformer")
    with torch.device("meta"):
        theirs = ZImageTransformer2DModel.from_config(config)
    theirs.load_state_dict(ours.state_dict(), strict=True, assign=True)
    return theirs.eval(), ours


def decode(folder: Path, finals: dict) -> dict:
    """Each final latent as 0–255 pixels through the folder's VAE (ours, bf16, Z-Image's scale and shift)."""
    import torch

    from nodegraph.models.loading import load_component

    vae = load_component(folder, "vae", dtype=torch.bfloat16)
    pixels = {}
    with torch.no_grad():
        for name, x in finals.items():
            z = x[:, 0][None] / vae.config.scaling_factor + vae.config.shift_factor  # (1, 16, h, w)
            image = vae.decode(z.to(torch.bfloat16)).float()  # (1, 3, H, W) in −1..1
            pixels[name] = ((image / 2 + 0.5).clamp(0, 1) * 255).round()
    return pixels


def sample(call, x, caption, sigmas):
    """Flow-matching Euler over `sigmas` with one transformer call a step; CPU seconds and the final latents."""
    import torch

    start = time.process_time()
    with torch.no_grad():
        for k in range(len(sigmas) - 1):
            out = call([x.to(torch.bfloat16)], (1 - sigmas[k]).reshape(1), [caption])[0].float()
            x = x + (sigmas[k + 1] - sigmas[k]) * out  # the model's output is −velocity's negative: x − Δσ·v
    return time.process_time() - start, x


def our_run(model, method, args, ratios, x, caption, sigmas):
    from nodegraph.models.step_caches.handle import CachedTransformer, make_cache

    if method == "none":
        seconds, final = sample(model, x, caption, sigmas)
        return seconds, final, args.steps, None
    threshold = args.mag_threshold if method == "mag" else args.threshold
    cache = make_cache(method, threshold=threshold, steps=args.steps, mag_ratios=ratios)
    seconds, final = sample(CachedTransformer(model, cache, method), x, caption, sigmas)
    return seconds, final, sum(cache.decisions), cache


def their_first_block_run(theirs, args, x, caption, sigmas):
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.hooks.hooks import CacheContext, HookRegistry, _set_cache_context
    from diffusers.models.transformers.transformer_z_image import ZImageTransformerBlock

    # As in tests/fewsteps/test_first_block_cache.py: the block's input name mapped, a cache context set.
    TransformerBlockRegistry.get(ZImageTransformerBlock)._cached_parameter_indices = {"hidden_states": 0}
    apply_first_block_cache(theirs, FirstBlockCacheConfig(threshold=args.threshold))
    _set_cache_context(theirs, CacheContext("cond"))
    try:
        return sample(lambda *a: theirs(*a, return_dict=False)[0], x, caption, sigmas)
    finally:
        HookRegistry.check_if_exists_or_initialize(theirs).reset_stateful_hooks(recurse=True)
        for name in ("fbc_leader_block_hook", "fbc_block_hook"):
            for block in theirs.layers:
                HookRegistry.check_if_exists_or_initialize(block).remove_hook(name, recurse=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.05, help="first_block (diffusers' default 0.05)")
    parser.add_argument("--mag-threshold", type=float, default=0.06, help="mag (diffusers' default 0.06)")
    parser.add_argument("--methods", default=",".join((*METHODS, "diffusers")))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, help="a diffusers Z-Image folder (its transformer) instead of --dim/--layers")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.model is not None:
        args.model = args.model.expanduser()
        theirs, ours = from_folder(args.model)
        args.dim, args.layers = ours.config.dim, ours.config.n_layers
    else:
        with tempfile.TemporaryDirectory() as tmp:
            theirs, ours = build(args.dim, args.layers, Path(tmp))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, args.size // 8, args.size // 8, generator=g)
    caption = torch.randn(32, ours.config.cap_feat_dim, generator=g).to(torch.bfloat16)
    sigmas = torch.linspace(1.0, 0.0, args.steps + 1)
    sigmas = 3 * sigmas / (1 + 2 * sigmas)  # Z-Image-Turbo's shift 3
    sample(ours, x, caption, sigmas[:2])  # warm-up
    methods = [m for m in args.methods.split(",") if m]
    calibration = our_run(ours, "mag", args, None, x, caption, sigmas)[3] if "mag" in methods else None
    times, finals, full = {m: [] for m in methods}, {}, {}
    for _ in range(args.repeats):
        for method in methods:
            if method == "diffusers":
                seconds, finals[method] = their_first_block_run(theirs, args, x, caption, sigmas)
            else:
                ratios = calibration.measured if calibration else None
                seconds, finals[method], full[method], _ = our_run(ours, method, args, ratios, x, caption, sigmas)
            times[method].append(seconds)
            print(f"  {method}: {seconds:.2f} CPU s ({full.get(method, '—')} full calls)", flush=True)
    report(args, methods, times, finals, full)
    if args.model is not None and (args.model / "vae").is_dir():
        pixels = decode(args.model, {m: finals[m] for m in ("none", "first_block", "diffusers") if m in finals})
        for name, image in pixels.items():
            if name != "none" and "none" in pixels:
                print(f"pixels, {name} vs none: max |Δ| {(image - pixels['none']).abs().max():.0f}/255, "
                      f"mean {(image - pixels['none']).abs().mean():.2f}")
        if {"first_block", "diffusers"} <= pixels.keys():
            gap = (pixels["first_block"] - pixels["diffusers"]).abs().max().item()
            print(f"pixels, ours vs diffusers' first-block cache: max |Δ| {gap:.0f}/255")


def report(args, methods, times, finals, full) -> None:
    base = statistics.median(times["none"])
    print(f"\nsampling phase, Z-Image architecture dim {args.dim}, {args.layers} layers, {args.size}², "
          f"{args.steps} steps, bf16, {args.threads} thread(s), median of {args.repeats} (min–max); thresholds "
          f"first_block {args.threshold}, mag {args.mag_threshold}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    head = (f"{'cache':<22}{'full calls':>11}{'CPU s':>9}{'min–max':>13}{'speed-up':>10}{'max |Δ|':>10}"
            f"{'mean |Δ|':>10}")
    print(head + "\n" + "-" * len(head))
    for method in methods:
        t = times[method]
        delta = (finals[method] - finals["none"]).abs()
        name = "diffusers first_block" if method == "diffusers" else method
        calls = full.get(method, "—")
        print(f"{name:<22}{calls!s:>11}{statistics.median(t):>9.2f}{min(t):>7.2f}–{max(t):<5.2f}"
              f"{base / statistics.median(t):>10.2f}{delta.max().item():>10.4f}{delta.mean().item():>10.4f}")
    if "diffusers" in finals and "first_block" in finals:
        gap = (finals["diffusers"] - finals["first_block"]).abs().max().item()
        print(f"ours vs diffusers' first-block cache: final latents max |Δ| {gap:.2e}")


if __name__ == "__main__":
    main()
