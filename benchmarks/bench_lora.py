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


def write_lora(unet, rank: int, path: Path) -> int:
    import torch
    from safetensors.torch import save_file
    from torch import nn

    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name, layer in unet.named_modules():
        if not name.endswith(LORA_LAYERS) or not isinstance(layer, (nn.Linear, nn.Conv2d)):
            continue
        if isinstance(layer, nn.Conv2d):
            down = torch.randn(rank, layer.in_channels, *layer.kernel_size, generator=g)
            up = torch.randn(layer.out_channels, rank, 1, 1, generator=g)
        else:
            down, up = torch.randn(rank, layer.in_features, generator=g), torch.randn(layer.out_features, rank,
                                                                                       generator=g)
        tensors[f"unet.{name}.lora_A.weight"] = down / down[0].numel() ** 0.5
        tensors[f"unet.{name}.lora_B.weight"] = 0.1 * up / rank ** 0.5
    save_file(tensors, path)
    return len(tensors) // 2


def timed(fn, sync):
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["full", "half"], default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px images)")
    parser.add_argument("--steps", type=int, default=25, help="steps in the time-to-image estimate")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-step", action="store_true", help="apply/remove only (skip the UNet step timings)")
    args = parser.parse_args()

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
    main()
