"""Applying and removing a LoRA: nodegraph's copy-on-write patch against diffusers' load + fuse, on an SD1.5 UNet.

    .venv/bin/python benchmarks/bench_lora.py [--size full|half] [--device cpu|cuda] [--dtype fp32|fp16]
                                              [--rank 32] [--repeats 3] [--latent 64] [--threads N] [--no-step]

A random SD1.5-architecture UNet (`--size half` halves every width: a quarter of the weights, for small CPUs) is
built once by diffusers; nodegraph's UNet is given the very same tensors (no copy). A random rank-`--rank` LoRA
over every attention projection, feed-forward, proj_in/out and resnet conv/shortcut/time projection and the
down/upsamplers is written as a diffusers-format .safetensors file, and then, alternately, median of `--repeats`:
- nodegraph apply: read the file + match + fuse into copy-on-write weights (`LoadLoRA` with `fuse: true`), and
  unfused (`fuse: false`); remove: drop the patched handle (the cached UNet was never changed);
- diffusers apply: `unet.load_lora_adapter(file)` + `fuse_lora()`; remove: `unfuse_lora()` + `unload_lora()`
  (their documented way back to the plain model); and `load_lora_adapter` alone (diffusers' default: unfused);
- one UNet step (batch 2, `--latent`² latents, 77×768 text) with the LoRA: nodegraph fused vs diffusers unfused
  (what `load_lora_weights` gives a pipeline) and fused, with the largest output difference.
The UNet share of time-to-image with one LoRA for 25 steps is then apply + 25 steps, for both.

    .venv/bin/python benchmarks/bench_lora.py --whole-process [--dtypes fp32,bf16] [--repeats 5] [--steps 4]
                                              [--image 256] [--rank 32] [--threads N]

`--whole-process` times whole processes instead, import to PNG, alternating fresh processes (the alternate_runs
helper of bench_time_to_image.py): `nodegraph run graphs/stable_diffusion.yaml --set lora=FILE` against diffusers'
StableDiffusionPipeline + `load_lora_weights(FILE, adapter_name=…)` + `set_adapters([name], [1.0])`, on the
SD1.5-size random pipeline of bench_time_to_image.py and a random rank-`--rank` diffusers-format LoRA over the
UNet layers above and every attention and MLP projection of the text encoder; medians with min–max, peak RSS, and
the largest pixel difference between the two images, and between nodegraph's images with and without the LoRA
(it must change them; `--no-effect` skips those two untimed runs, `--effect-only` runs only them).
Goal (issue 13): time-to-image with one LoRA ≤ 0.85× diffusers'.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONFIGS = REPO / "tests" / "models" / "data" / "reference" / "real-configs.json"
LORA_LAYERS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "conv1",
               "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv")


def unet_config(size: str) -> dict:
    config = {k: v for k, v in json.loads(CONFIGS.read_text())["SD14_UNET"].items() if not k.startswith("_")}
    if size == "half":
        config["block_out_channels"] = [c // 2 for c in config["block_out_channels"]]
    return config


def build(size: str, device, dtype):
    import diffusers
    import torch

    from nodegraph.models.base import install_weights
    from nodegraph.models.unet_2d_condition import UNet2DConditionModel

    torch.manual_seed(0)
    theirs = diffusers.UNet2DConditionModel(**unet_config(size)).to(device=device, dtype=dtype).eval()
    theirs.requires_grad_(False)
    with torch.device("meta"):
        ours = UNet2DConditionModel.from_config(unet_config(size))
    install_weights(ours, dict(theirs.state_dict()))  # the same tensors: no second copy of the weights
    return ours.eval(), theirs


TEXT_LORA_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def write_lora(unet, rank: int, path: Path, text_encoder=None) -> int:
    """A random rank-`rank` diffusers-format LoRA over `unet`'s LORA_LAYERS (and `text_encoder`'s TEXT_LORA_LAYERS);
    returns the number of layers. The models may live on the meta device (only their shapes are read)."""
    from safetensors.torch import save_file

    tensors = _lora_tensors(unet, "unet", LORA_LAYERS, rank, seed=1)
    if text_encoder is not None:
        tensors.update(_lora_tensors(text_encoder, "text_encoder", TEXT_LORA_LAYERS, rank, seed=2))
    save_file(tensors, path)
    return len(tensors) // 2


def _lora_tensors(model, prefix: str, layers: tuple, rank: int, seed: int) -> dict:
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, layer in model.named_modules():
        if not name.endswith(layers) or not isinstance(layer, (nn.Linear, nn.Conv2d)):
            continue
        if isinstance(layer, nn.Conv2d):
            down = torch.randn(rank, layer.in_channels, *layer.kernel_size, generator=g)
            up = torch.randn(layer.out_channels, rank, 1, 1, generator=g)
        else:
            down, up = torch.randn(rank, layer.in_features, generator=g), torch.randn(layer.out_features, rank,
                                                                                       generator=g)
        tensors[f"{prefix}.{name}.lora_A.weight"] = down / down[0].numel() ** 0.5
        tensors[f"{prefix}.{name}.lora_B.weight"] = 0.1 * up / rank ** 0.5
    return tensors


def timed(fn, sync):
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


PROMPT, SEED = "a photograph of an astronaut riding a horse", 0


def pipeline_lora(model: Path, rank: int, cache: Path) -> Path:
    """The whole-process LoRA file for the pipeline folder `model` (written once, shapes read on the meta device)."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    path = cache / f"sd15-lora-rank{rank}.safetensors"
    if not path.exists():
        with torch.device("meta"):
            unet = diffusers.UNet2DConditionModel.from_config(json.loads((model / "unet" / "config.json").read_text()))
            text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(model / "text_encoder"))
        layers = write_lora(unet, rank, path.with_suffix(".partial"), text_encoder)
        path.with_suffix(".partial").rename(path)
        print(f"wrote {path}: rank {rank} on {layers} layers ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    return path


def diffusers_worker(model: str, lora: str, dtype_name: str, size: int, steps: int, out: str, threads: int) -> None:
    """The diffusers side, as its LoRA docs write it (runs as the timed child process)."""
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.load_lora_weights(lora, adapter_name="bench")
    pipe.set_adapters(["bench"], [1.0])
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=steps, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def process_command(lib: str, model: Path, lora: Path | None, dtype: str, size: int, steps: int, out: Path,
                    threads: int) -> list[str]:
    if lib == "diffusers":
        return [sys.executable, __file__, "--diffusers-worker", str(model), str(lora), dtype, str(size), str(steps),
                str(out / "image.png"), str(threads)]
    sets = dict(model=model, prompt=PROMPT, steps=steps, height=size, width=size, seed=SEED, lora=lora or "")
    return [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "stable_diffusion.yaml"),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], "--dtype", dtype, "--device", "cpu",
            "--out", str(out), "-q"]


def lora_effect(model: Path, lora: Path, dtype: str, size: int, steps: int, threads: int) -> int:
    """The largest pixel difference between nodegraph's images with and without the LoRA (it must change them)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_time_to_image import pixel_diff, timed_run

    with tempfile.TemporaryDirectory(prefix="ng-lora-effect-") as tmp:
        for name, file in (("plain", None), ("lora", lora)):
            timed_run(process_command("nodegraph", model, file, dtype, size, steps, Path(tmp) / name, threads), threads)
        return pixel_diff(Path(tmp) / "plain" / "image.png", Path(tmp) / "lora" / "image.png")


def whole_process(args) -> None:
    """Time-to-image with one LoRA, fresh processes alternated (see the module docstring)."""
    import os

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_time_to_image import GB, alternate_runs, sd15_checkpoint, warm_page_cache

    cache = Path.home() / ".cache" / "nodegraph-bench"
    threads = args.threads or os.cpu_count()
    model = sd15_checkpoint(cache, threads)
    lora = pipeline_lora(model, args.rank, cache)
    warm_page_cache(model)
    rows = []
    for dtype in args.dtypes.split(","):
        effect = lora_effect(model, lora, dtype, args.image, args.steps, threads) if not args.no_effect else None
        if args.effect_only:
            print(f"  {dtype}: nodegraph's image with vs without the LoRA: max px Δ {effect}")
            continue
        runs: dict[str, list] = {"nodegraph": [], "diffusers": []}

        def report(lib: str, r: int, seconds: float, rss: int) -> None:
            runs[lib].append(seconds)
            print(f"  {dtype} {lib} run {r}: {seconds:.1f} s, {rss / GB:.2f} GB", flush=True)

        result = alternate_runs(lambda lib, out: process_command(lib, model, lora, dtype, args.image, args.steps,
                                                                 out, threads), args.repeats, threads,
                                "ng-lora-", report)
        rows.append((dtype, result, {lib: (min(v), max(v)) for lib, v in runs.items()}, effect))
    if not rows:
        return
    import diffusers
    import torch

    print(f"\ntime-to-image with one LoRA, whole process (import + load + LoRA + {args.steps} steps + decode + PNG), "
          f"{args.image}², nodegraph CLI vs diffusers {diffusers.__version__} load_lora_weights + set_adapters; "
          f"torch {torch.__version__}, {threads} thread(s); median of {args.repeats} (min–max); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    head = (f"{'dtype':<6}{'nodegraph s':>20}{'diffusers s':>20}{'ratio':>7}{'ng RSS GB':>11}{'df RSS GB':>11}"
            f"{'max px Δ':>10}{'LoRA effect':>13}")
    print(head + "\n" + "-" * len(head))
    for dtype, r, spread, effect in rows:
        times = [f"{r[f'{lib}_s']:.1f} ({spread[lib][0]:.1f}–{spread[lib][1]:.1f})" for lib in ("nodegraph", "diffusers")]
        print(f"{dtype:<6}{times[0]:>20}{times[1]:>20}{r['nodegraph_s'] / r['diffusers_s']:>7.2f}"
              f"{r['nodegraph_rss'] / GB:>11.2f}{r['diffusers_rss'] / GB:>11.2f}{r['diff']:>10}{effect!s:>13}")
    print("goal: ratio ≤ 0.85; max px Δ (0–255) between the libraries; LoRA effect: nodegraph with vs without it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["full", "half"], default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (whole process: 5)")
    parser.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px images)")
    parser.add_argument("--steps", type=int, default=None, help="steps in the time-to-image estimate (25), or of "
                                                                   "each whole-process run (4)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-step", action="store_true", help="apply/remove only (skip the UNet step timings)")
    parser.add_argument("--whole-process", action="store_true", help="time whole processes, import to PNG")
    parser.add_argument("--dtypes", default="fp32,bf16", help="whole-process dtypes, comma-separated")
    parser.add_argument("--image", type=int, default=256, help="whole-process image side in pixels")
    parser.add_argument("--no-effect", action="store_true", help="whole process: skip the with/without-LoRA check")
    parser.add_argument("--effect-only", action="store_true", help="whole process: only that check (no timing)")
    args = parser.parse_args()
    if args.whole_process:
        args.steps = args.steps or 4
        args.repeats = args.repeats or 5
        return whole_process(args)
    args.steps, args.repeats = args.steps or 25, args.repeats or 3

    import torch

    from nodegraph.models.adapters.lora import apply_lora, match_layers, read_lora

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    ours, theirs = build(args.size, device, dtype)
    params = sum(p.numel() for p in ours.parameters())
    tmp = Path(tempfile.mkdtemp())
    lora_file = tmp / "bench_lora.safetensors"
    layers = write_lora(theirs, args.rank, lora_file)
    print(f"UNet {args.size} ({params / 1e6:.0f} M params, {args.dtype}, {device}), LoRA rank {args.rank} on "
          f"{layers} layers ({lora_file.stat().st_size / 1e6:.0f} MB)")

    def ours_apply(fuse: bool):
        lora = read_lora(str(lora_file))
        return apply_lora(ours, match_layers(lora, "unet", ours, "the UNet"), 1.0, fuse)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, args.latent, args.latent, generator=g).to(device, dtype)
    ctx = torch.randn(2, 77, 768, generator=g).to(device, dtype)
    t = torch.tensor(500, device=device)

    def step(fn, n=3):
        with torch.no_grad():
            fn()  # warm-up
            return statistics.median(timed(fn, sync)[0] for _ in range(n))

    rows = {k: [] for k in ("ours apply (fused)", "ours apply (unfused)", "ours remove", "diffusers load + fuse",
                            "diffusers unfuse + unload", "diffusers load (unfused)", "diffusers unload (unfused)")}
    for k in range(args.repeats):
        seconds, patched = timed(lambda: ours_apply(True), sync)
        rows["ours apply (fused)"].append(seconds)
        holder = [patched]
        del patched
        rows["ours remove"].append(timed(holder.clear, sync)[0])  # the last reference: its own weights are freed
        gc.collect()
        rows["ours apply (unfused)"].append(timed(lambda: ours_apply(False), sync)[0])
        gc.collect()
        name = f"a{k}"
        rows["diffusers load + fuse"].append(timed(lambda: (theirs.load_lora_adapter(
            str(lora_file), prefix="unet", adapter_name=name), theirs.fuse_lora(lora_scale=1.0)), sync)[0])
        rows["diffusers unfuse + unload"].append(timed(lambda: (theirs.unfuse_lora(), theirs.unload_lora()), sync)[0])
        gc.collect()
        rows["diffusers load (unfused)"].append(timed(lambda: theirs.load_lora_adapter(
            str(lora_file), prefix="unet", adapter_name=name + "u"), sync)[0])
        rows["diffusers unload (unfused)"].append(timed(lambda: theirs.unload_lora(), sync)[0])
        gc.collect()
    med = {k: statistics.median(v) for k, v in rows.items()}
    for k, v in med.items():
        print(f"  {k:28s} {v:8.3f} s   (runs: {', '.join(f'{s:.3f}' for s in rows[k])})")
    print(f"  apply ratio (ours fused / diffusers load + fuse): {med['ours apply (fused)'] / med['diffusers load + fuse']:.2f}")
    print(f"  remove ratio (ours / diffusers unfuse + unload): "
          f"{med['ours remove'] / max(med['diffusers unfuse + unload'], 1e-9):.4f}")

    if args.no_step:
        return
    patched = ours_apply(True)
    theirs.load_lora_adapter(str(lora_file), prefix="unet", adapter_name="step")
    with torch.no_grad():
        diff = (patched(x, t, ctx).float() - theirs(x, t, ctx).sample.float()).abs().max().item()
        effect = (patched(x, t, ctx).float() - ours(x, t, ctx).float()).abs().max().item()
    s_ours = step(lambda: patched(x, t, ctx))
    s_theirs_unfused = step(lambda: theirs(x, t, ctx))
    theirs.fuse_lora(lora_scale=1.0)
    s_theirs_fused = step(lambda: theirs(x, t, ctx))
    theirs.unfuse_lora()
    theirs.unload_lora()
    print(f"  UNet step with LoRA: ours fused {s_ours:.3f} s, diffusers unfused {s_theirs_unfused:.3f} s, "
          f"diffusers fused {s_theirs_fused:.3f} s; max |ours − diffusers unfused| {diff:.2e} (LoRA effect {effect:.2f})")
    n = args.steps
    ours_total = med["ours apply (fused)"] + n * s_ours
    theirs_total = med["diffusers load (unfused)"] + n * s_theirs_unfused
    theirs_fused_total = med["diffusers load + fuse"] + n * s_theirs_fused
    print(f"  UNet part of time-to-image, {n} steps (CFG batch 2): ours {ours_total:.2f} s, diffusers (default, "
          f"unfused) {theirs_total:.2f} s → ratio {ours_total / theirs_total:.2f}; vs diffusers load + fuse "
          f"{theirs_fused_total:.2f} s → ratio {ours_total / theirs_fused_total:.2f}  (goal ≤ 0.85)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--diffusers-worker":
        model, lora, dtype, size, steps, out, threads = sys.argv[2:9]
        diffusers_worker(model, lora, dtype, int(size), int(steps), out, int(threads))
    else:
        main()
