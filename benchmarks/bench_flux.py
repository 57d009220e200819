"""Flux.1-schnell at full transformer size from an fp8 file: time-to-image and peak RSS of `nodegraph run`.

    flock -w 900 /tmp/nodegraph-heavy.lock timeout 240 .venv/bin/python benchmarks/bench_flux.py [--repeats 1]

FLUX.1-schnell's transformer (19 double + 38 single blocks, 3072 wide: 11.9 B parameters) with random weights in
BFL's single-file layout, its Linear weights stored float8_e4m3fn (ComfyUI's `flux1-schnell-fp8` layout; biases
and norms bf16): about 12 GB, written once to the cache folder one tensor at a time. Beside it a Flux pipeline
folder for the rest: the Flux VAE at full size, and CLIP-L / T5 at their real widths (768 / 4096) but one layer
each and a small T5 vocabulary (the text encoders are not what this measures). Each run is a fresh process,
`nodegraph run graphs/flux.yaml --dtype bf16` at 256², 1 step (schnell's 256 T5 tokens), timed from start until
the PNG is written, with its peak RSS (the float8 file's pages it touches count: they are mapped).
diffusers' FluxPipeline is not run: at this size in bf16 it needs ~24 GB for the transformer alone (issue 27).
The first call may spend its 4 minutes writing the file; call again to measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests" / "flow")]
from bench_time_to_image import GB, timed_run  # noqa: E402

SCHNELL = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
               num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=False,
               axes_dims_rope=(16, 56, 56))
FLUX_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
                use_quant_conv=False, use_post_quant_conv=False)


def write_fp8_transformer(path: Path) -> None:
    """BFL-layout FLUX.1-schnell transformer with seeded random weights: 2-D weights float8_e4m3fn, the rest bf16."""
    import torch
    from diffusers import FluxTransformer2DModel
    from random_safetensors import write_streamed
    from test_flux_single_file import to_bfl

    with torch.device("meta"):
        state = to_bfl(FluxTransformer2DModel(**SCHNELL).state_dict())
    generator = torch.Generator().manual_seed(0)

    def make(name: str, kind: str, shape: tuple[int, ...]):
        if kind == "F8_E4M3":
            return (torch.randn(shape, generator=generator) * 0.02).to(torch.float8_e4m3fn)
        if name.endswith(".scale"):  # RMSNorm scales
            return torch.ones(shape, dtype=torch.bfloat16)
        return (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)

    write_streamed(path, {name: ("F8_E4M3" if meta.ndim == 2 else "BF16", tuple(meta.shape))
                          for name, meta in state.items()}, make)


def write_pipeline_folder(folder: Path) -> None:
    """A FluxPipeline folder around the file: full-size VAE, one-layer CLIP-L / T5 at real widths, schnell's
    scheduler, the transformer's config (its weights come from the fp8 file)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from tiny_flux import CLIP_TOKENIZER, build_t5_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    torch.manual_seed(0)
    t5_tokenizer = build_t5_tokenizer()
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=1, projection_dim=768))
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), d_model=4096, d_kv=64, d_ff=10240, num_layers=1,
                                 num_heads=64, feed_forward_proj="gated-gelu"))
    tiny = FluxTransformer2DModel(**{**SCHNELL, "num_layers": 1, "num_single_layers": 1, "num_attention_heads": 1})
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=AutoencoderKL(**FLUX_VAE),
                        text_encoder=clip, tokenizer=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER),
                        text_encoder_2=t5, tokenizer_2=t5_tokenizer, transformer=tiny)
    pipe.save_pretrained(folder)
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "transformer" / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel",
                                                                   **SCHNELL}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nodegraph-bench-flux")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    file, folder = args.cache / "flux1-schnell-fp8.safetensors", args.cache / "pipeline"
    if not folder.exists():
        write_pipeline_folder(folder)
    if not file.exists():
        write_fp8_transformer(file)
        print(f"wrote {file} ({file.stat().st_size / GB:.1f} GB)", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-flux-") as out:
        for r in range(args.repeats):
            argv = [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "flux.yaml"), "-q",
                    "--dtype", "bf16", "--out", f"{out}/{r}", "--set", f"model={folder}",
                    "--set", f"transformer={file}", "--set", "width=256", "--set", "height=256", "--set", "steps=1"]
            runs.append(timed_run(argv, args.threads))
            print(f"run {r}: {runs[-1][0]:.1f} s, peak RSS {runs[-1][1] / GB:.2f} GB", flush=True)
    seconds, rss = statistics.median(s for s, _ in runs), statistics.median(m for _, m in runs)
    print(f"nodegraph, FLUX.1-schnell-size fp8 transformer file, bf16, 256², 1 step: {seconds:.1f} s, peak RSS "
          f"{rss / GB:.2f} GB (median of {len(runs)}; file {file.stat().st_size / GB:.1f} GB)")


if __name__ == "__main__":
    main()
