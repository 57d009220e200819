"""diffusers' side of benchmarks/bench_flux_fp8.py: FluxPipeline with its nearest low-memory option on a CPU.

FluxPipeline in bf16 cannot be loaded on this 24 GB machine (the transformer alone is 23.8 GB in bf16), and its
model / sequential / group offloading move weights between the CPU and an accelerator, which this machine does not
have. What remains is layerwise casting (`diffusers.hooks.apply_layerwise_casting`: weights stored float8, each
layer cast to bf16 for its own call). The transformer comes from the same fp8 file through
`FluxTransformer2DModel.from_single_file(torch_dtype=float8_e4m3fn)`, its normalisation weights put back in bf16
(they are not cast by the hooks); T5-XXL (diffusers reads no scaled-fp8 file) is built at the same size from the
folder's config with random bf16 weights, each Linear cast to float8 as it is made (but `wo`, which transformers'
T5 needs in the compute dtype); CLIP-L and the VAE come from
the folder in bf16. Run in a child process: a watchdog thread ends it (exit 3) when its RSS passes the limit,
naming the stage it was in, so the shared machine never runs out of memory.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

STAGE = ["start"]


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def _watchdog(limit: float, started: float) -> None:
    peak = 0
    while True:
        peak = max(peak, _rss())
        if peak > limit:
            print(f"diffusers: over the {limit / 1e9:.1f} GB limit while `{STAGE[0]}` ({peak / 1e9:.2f} GB after "
                  f"{time.perf_counter() - started:.1f} s); stopped", flush=True)
            os._exit(3)
        time.sleep(0.05)


def _stage(name: str, started: float) -> None:
    print(f"  {time.perf_counter() - started:6.1f} s  RSS {_rss() / 1e9:5.2f} GB  -> {name}", flush=True)
    STAGE[0] = name


def _float8_t5(folder: Path, torch):
    """T5-XXL's encoder from the folder's config: every layer made on the meta device, then given random bf16
    weights (N(0, 0.02²)) and, for Linear layers, cast to float8 at once (peak: one layer wide)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config.from_pretrained(folder / "text_encoder_2")
    with torch.device("meta"):
        model = T5EncoderModel(config)
    generator = torch.Generator().manual_seed(1)
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        module.to_empty(device="cpu", recurse=False)
        for p in module.parameters(recurse=False):
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        narrow = isinstance(module, torch.nn.Linear) and not name.endswith(".wo")
        module.to(torch.float8_e4m3fn if narrow else torch.bfloat16)
    # FluxPipeline takes the prompt embeddings' dtype (and so the latents') from `text_encoder_2.dtype`, which
    # transformers reads off a parameter (float8 here); diffusers' own models report the compute dtype instead
    model.__class__ = type("T5EncoderModelBf16", (type(model),), {"dtype": property(lambda self: torch.bfloat16)})
    for name, buffer in model.named_buffers():
        if buffer.is_meta:
            raise SystemExit(f"T5 buffer {name} left on the meta device")
    return model.eval()


def main(flux: Path, folder: Path, limit_gb: float) -> None:
    started = time.perf_counter()
    threading.Thread(target=_watchdog, args=(limit_gb * 1e9, started), daemon=True).start()
    import torch
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
    from diffusers.hooks import apply_layerwise_casting

    _stage("FluxTransformer2DModel.from_single_file(float8_e4m3fn)", started)
    transformer = FluxTransformer2DModel.from_single_file(str(flux), config=str(folder), subfolder="transformer",
                                                          torch_dtype=torch.float8_e4m3fn)
    for module in transformer.modules():  # norms and other non-Linear weights: back to bf16 (hooks skip them)
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            for p in module.parameters(recurse=False):
                p.data = p.data.to(torch.bfloat16)
    apply_layerwise_casting(transformer, torch.float8_e4m3fn, torch.bfloat16, skip_modules_pattern=())
    _stage("T5-XXL (float8 storage, layerwise casting)", started)
    t5 = _float8_t5(folder, torch)
    # transformers' T5 casts the feed-forward's input to `wo`'s dtype (its `_keep_in_fp32_modules`): wo stays bf16
    apply_layerwise_casting(t5, torch.float8_e4m3fn, torch.bfloat16, skip_modules_pattern=(r"\.wo$",))
    _stage("FluxPipeline (CLIP-L, VAE in bf16)", started)
    from transformers import CLIPTextModel

    pipe = FluxPipeline.from_pretrained(folder, transformer=transformer, text_encoder_2=t5, torch_dtype=torch.bfloat16,
                                        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder",
                                                                                   torch_dtype=torch.bfloat16),
                                        vae=AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.bfloat16))
    _stage("pipe(256², 1 step, 256 T5 tokens)", started)
    image = pipe("a red fox in fresh snow", height=256, width=256, num_inference_steps=1, guidance_scale=0.0,
                 max_sequence_length=256, generator=torch.Generator().manual_seed(0)).images[0]
    _stage("done", started)
    image.save(os.devnull, format="PNG")
    print(f"diffusers: whole run {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
