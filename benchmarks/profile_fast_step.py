"""Where one fast-mode UNet call spends its time, against the machine's own bf16 GEMM peak.

    .venv/bin/python benchmarks/profile_fast_step.py [--threads 1,2] [--dtype bf16] [--mode fast|default]

SD1.5-size UNet (random weights, benchmarks/bench_time_to_image.py's checkpoint), batch 2, 4×32×32 latents,
77×768 text, as `bench_time_to_image.py --step`. For each thread count it prints:
- the peak: the best of 2048×2048×2048 GEMMs on oneDNN with a packed weight (what the convolutions and linear
  layers of fast mode run on), in GFLOP/s;
- one call, profiled (torch.profiler, the median-time call of 3), grouped by operation: milliseconds, share, and
  for convolutions and linear layers the GFLOP/s they reached (their FLOPs counted by torch's FlopCounterMode on
  the default UNet) and that as a share of the peak.
The load average is printed with the table: quote it with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUPS = {  # profiler op name → group (anything else: "other")
    "mkldnn::_convolution_pointwise": "convolution", "aten::mkldnn_convolution": "convolution",
    "aten::convolution_overrideable": "convolution",
    "mkldnn::_linear_pointwise": "linear", "aten::addmm": "linear", "aten::mm": "linear", "aten::bmm": "linear",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention (SDPA)",
    "aten::native_group_norm": "group norm", "aten::native_layer_norm": "layer norm",
    "aten::silu": "elementwise", "aten::gelu": "elementwise", "aten::add": "elementwise", "aten::mul": "elementwise",
    "aten::copy_": "layout copies, cat, upsample", "aten::cat": "layout copies, cat, upsample",
    "aten::upsample_nearest2d": "layout copies, cat, upsample", "aten::clone": "layout copies, cat, upsample",
}


def gemm_peak(dtype) -> float:
    import torch

    a = torch.randn(2048, 2048).to(dtype)
    packed = torch.ops.mkldnn._reorder_linear_weight(torch.randn(2048, 2048).to(dtype), 2048)
    best = float("inf")
    for _ in range(8):
        start = time.perf_counter()
        torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 ** 3 / best / 1e9


def flops(unet, args) -> dict[str, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        unet(*args)
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    return {"convolution": counts.get("aten.convolution", 0),
            "linear": sum(counts.get(k, 0) for k in ("aten.addmm", "aten.mm", "aten.bmm"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--mode", choices=["fast", "default"], default="fast")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    import torch
    from bench_time_to_image import sd15_checkpoint
    from torch.profiler import ProfilerActivity, profile

    from nodegraph.exec.heap import reuse_freed_heap
    from nodegraph.fast import prepare
    from nodegraph.models.loading import load_component

    reuse_freed_heap()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    root = sd15_checkpoint(args.cache, os.cpu_count())
    default = load_component(root, "unet", dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randn(2, 4, 32, 32, generator=generator).to(dtype), torch.tensor(500),
              torch.randn(2, 77, 768, generator=generator).to(dtype))
    with torch.no_grad():
        counted = flops(default, inputs)
        unet = prepare(default) if args.mode == "fast" else default
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            peak = gemm_peak(dtype)
            unet(*inputs)  # packing, first touch
            times = []
            for _ in range(3):
                start = time.perf_counter()
                unet(*inputs)
                times.append(time.perf_counter() - start)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                unet(*inputs)
            by_group: dict[str, float] = {}
            for event in prof.key_averages():
                group = GROUPS.get(event.key, "other")
                by_group[group] = by_group.get(group, 0.0) + event.self_cpu_time_total / 1e3  # ms
            total = sum(by_group.values())
            print(f"\n{args.mode} UNet call, {args.dtype}, {threads} thread(s): {statistics.median(times):.3f} s "
                  f"(median of 3, unprofiled); GEMM peak {peak:.0f} GFLOP/s; load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"| part | ms | share | GFLOP/s | of peak |\n|---|---|---|---|---|")
            for group, ms in sorted(by_group.items(), key=lambda kv: -kv[1]):
                rate = counted.get(group, 0) / (ms / 1e3) / 1e9 if group in counted and ms else None
                extra = f"{rate:.0f} | {rate / peak:.0%}" if rate else "— | —"
                print(f"| {group} | {ms:.0f} | {ms / total:.0%} | {extra} |")
            print(f"| total (profiled) | {total:.0f} | 100% | {sum(counted.values()) / (total / 1e3) / 1e9:.0f} | |")


if __name__ == "__main__":
    main()
