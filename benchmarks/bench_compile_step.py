"""torch.compile (inductor, CPU) on the SD1.5-size UNet, as a measured experiment for fast mode (issue 20).

    .venv/bin/python benchmarks/bench_compile_step.py [--threads 2] [--repeats 5] [--cache DIR] [--tiny]

One process: the default nodegraph UNet compiled with inductor (freezing on, so oneDNN weights are prepacked as
fast mode packs them), against fast mode's eager UNet (nodegraph/fast) on the same inputs: batch 2, 4×32×32
latents, 77×768 text, bf16, as `bench_time_to_image.py --step`. Prints the compile time (the first call) and
the median step of each, with the load average. Run it twice with the same `--inductor-cache` to see the compile
time with a warm on-disk cache. `--tiny` uses the tests' tiny pipeline instead (a smoke test: seconds).

The cross-attention's once-per-run k/v cache reads `is_inference`/`_version`, which dynamo cannot trace (a graph
break at every cross-attention, after which the blocks recompile per instance until dynamo's recompile limit);
for this experiment k and v are computed directly, which costs 2 small GEMMs per cross-attention per call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--inductor-cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench" / "inductor")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(args.inductor_cache)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import torch
    import torch._inductor.config as inductor_config

    from nodegraph.fast import prepare
    from nodegraph.models.attention import Attention
    from nodegraph.models.loading import load_component

    inductor_config.freezing = True  # weights become constants: inductor prepacks oneDNN convolutions and GEMMs
    Attention._context_keys_values = lambda self, context: (self.to_k(context), self.to_v(context))
    torch.set_num_threads(args.threads)
    if args.tiny:
        from bench_time_to_image import tiny_checkpoint

        root, shape, text_dim = tiny_checkpoint(args.cache), (2, 4, 8, 8), 32
    else:
        from bench_time_to_image import sd15_checkpoint

        root, shape, text_dim = sd15_checkpoint(args.cache, args.threads), (2, 4, 32, 32), 768
    dtype = torch.bfloat16
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randn(*shape, generator=generator).to(dtype), torch.tensor(500),
              torch.randn(2, 77, text_dim, generator=generator).to(dtype))
    fast = prepare(load_component(root, "unet", dtype=dtype))
    compiled = torch.compile(load_component(root, "unet", dtype=dtype))
    with torch.no_grad():
        start = time.perf_counter()
        out_compiled = compiled(*inputs)
        compile_s = time.perf_counter() - start
        out_fast = fast(*inputs)
        times: dict[str, list[float]] = {"compiled": [], "fast (eager)": []}
        for r in range(args.repeats):
            for name, model in ([("compiled", compiled), ("fast (eager)", fast)][:: 1 if r % 2 == 0 else -1]):
                start = time.perf_counter()
                model(*inputs)
                times[name].append(time.perf_counter() - start)
    print(json.dumps({"compile_s": round(compile_s, 1),
                      **{name: {"median": round(statistics.median(t), 3), "min": round(min(t), 3),
                                "max": round(max(t), 3)} for name, t in times.items()},
                      "max |compiled - fast|": (out_compiled.float() - out_fast.float()).abs().max().item(),
                      "threads": args.threads, "load average": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
