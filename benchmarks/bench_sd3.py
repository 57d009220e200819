"""SD3.5 time-to-image, whole process: `nodegraph run graphs/sd3.yaml` vs diffusers' StableDiffusion3Pipeline.

    flock -w 900 /tmp/nodegraph-heavy.lock timeout 240 .venv/bin/python benchmarks/bench_sd3.py --prepare-only \
        [--size-config real|small]
    flock -w 900 /tmp/nodegraph-heavy.lock .venv/bin/python benchmarks/bench_sd3.py [--size-config real|small] \
        [--steps 2] [--size 256] [--repeats 3]

Each run is a fresh Python process, timed from its start until the PNG is written (import + load + encode + steps +
decode + save), with its own peak RSS, alternating the two libraries (median of `--repeats`); the table gives the
ratios and the largest pixel difference. Checkpoint: SD3.5 Medium's architecture with random weights stored in
bf16 (cached outside the repo): the MMDiT-X transformer at the hub config (2.24 B parameters and the 384² position
table), CLIP-L and OpenCLIP bigG with their projections, T5-XXL (4.76 B), the 16-channel SD3 VAE, the shift-3
scheduler, the real CLIP tokenizer and the tiny test T5 tokenizer (its ids are a subset of the real vocabulary).
`--size-config small` keeps every width but 6 of the 24 transformer blocks (dual attention in the first 3),
8 of bigG's 32 layers and 4 of T5's 24 (about 5 GB, for a machine that cannot hold the real one: about 16 GB in
bf16, which diffusers' pipeline holds at once). Guidance 4.5 (SD3.5 Medium's card), no negative prompt.
Goal (issue 27): bf16, 256², 2 steps: time ratio ≤ 0.85 and peak-RSS ratio ≤ 0.6.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
from bench_sdxl import _write_random  # noqa: E402
from bench_time_to_image import GB, alternate_runs, warm_page_cache  # noqa: E402

PROMPT = "a red fox in fresh snow, morning light, photograph"
SEED, GUIDANCE = 0, 4.5
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              projection_dim=768, hidden_act="quick_gelu", vocab_size=49408, max_position_embeddings=77,
              bos_token_id=0, eos_token_id=2, pad_token_id=1)
CLIP_G = dict(CLIP_L, hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
              projection_dim=1280, hidden_act="gelu")
T5_XXL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, relative_attention_num_buckets=32,
              relative_attention_max_distance=128, feed_forward_proj="gated-gelu", vocab_size=32128,
              layer_norm_epsilon=1e-6)
MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
              num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
              pooled_projection_dim=2048, pos_embed_max_size=384, dual_attention_layers=list(range(13)),
              qk_norm="rms_norm")
SD3_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
               up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
               latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609,
               use_quant_conv=False, use_post_quant_conv=False, force_upcast=True, mid_block_add_attention=True)
MODEL_INDEX = {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.42.1",
               "feature_extractor": [None, None], "image_encoder": [None, None],
               "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
               "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
               "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
               "text_encoder_3": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
               "tokenizer_2": ["transformers", "CLIPTokenizer"], "tokenizer_3": ["transformers", "T5TokenizerFast"],
               "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}


def sd3_checkpoint(cache: Path, size_config: str) -> Path:
    """SD3.5 Medium's architecture (or the reduced one) with random bf16 weights, as a diffusers pipeline folder
    (written once, one tensor at a time, so writing needs no more memory than the largest tensor)."""
    import torch

    root = cache / f"sd3.5-medium-random-bf16-{size_config}"
    if (root / ".complete").exists():
        return root
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel

    from tests.sd3.tiny_sd3 import CLIP_TOKENIZER, build_t5_tokenizer

    print(f"writing the SD3.5-Medium-architecture checkpoint to {root} (once) …", flush=True)
    small = size_config == "small"
    transformer = {**MEDIUM, "num_layers": 6, "dual_attention_layers": [0, 1, 2]} if small else MEDIUM
    clip_g = {**CLIP_G, "num_hidden_layers": 8} if small else CLIP_G
    t5 = {**T5_XXL, "num_layers": 4} if small else T5_XXL
    parts = [("text_encoder", "model", lambda: CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L))),
             ("text_encoder_2", "model", lambda: CLIPTextModelWithProjection(CLIPTextConfig(**clip_g))),
             ("text_encoder_3", "model", lambda: T5EncoderModel(T5Config(**t5))),
             ("transformer", "diffusion_pytorch_model", lambda: diffusers.SD3Transformer2DModel(**transformer)),
             ("vae", "diffusion_pytorch_model", lambda: diffusers.AutoencoderKL(**SD3_VAE))]
    for seed, (name, weights_name, build) in enumerate(parts):
        if (root / name / f"{weights_name}.safetensors").exists():  # written by an interrupted earlier call
            continue
        with torch.device("meta"):
            model = build()
        if name == "text_encoder_3":  # T5's embedding is tied: write it once (`shared`), as real files hold it
            model.encoder.embed_tokens = None
        (root / name).mkdir(parents=True, exist_ok=True)
        _write_random(model, root / name, seed, torch.bfloat16, weights_name)
        del model
    CLIPTokenizer.from_pretrained(CLIP_TOKENIZER).save_pretrained(root / "tokenizer")
    CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!").save_pretrained(root / "tokenizer_2")
    build_t5_tokenizer().save_pretrained(root / "tokenizer_3")
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps(MODEL_INDEX))
    (root / ".complete").touch()
    return root


def diffusers_worker(model: str, dtype_name: str, size: int, steps: int, out: str, threads: int) -> None:
    """The diffusers side, as a user would write it (runs as the timed child process)."""
    import torch
    from diffusers import StableDiffusion3Pipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    pipe = StableDiffusion3Pipeline.from_pretrained(model, torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, height=size, width=size, num_inference_steps=steps, guidance_scale=GUIDANCE,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def command(lib: str, model: Path, dtype: str, size: int, steps: int, out: Path, threads: int) -> list[str]:
    if lib == "diffusers":
        return [sys.executable, __file__, "--diffusers-worker", str(model), dtype, str(size), str(steps),
                str(out / "image.png"), str(threads)]
    sets = dict(model=model, prompt=PROMPT, steps=steps, height=size, width=size, seed=SEED, guidance_scale=GUIDANCE)
    return [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "sd3.yaml"),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
            "--dtype", dtype, "--device", "cpu", "--out", str(out), "-q"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--size-config", choices=["real", "small"], default="real")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--prepare-only", action="store_true", help="write the checkpoint and stop")
    parser.add_argument("--no-warm", action="store_true", help="skip reading the weights into the page cache")
    args = parser.parse_args()

    root = sd3_checkpoint(args.cache, args.size_config)
    if args.prepare_only:
        return
    if not args.no_warm:
        warm_page_cache(root)

    def report(lib: str, r: int, seconds: float, rss: int) -> None:
        print(f"  {lib} run {r}: {seconds:.1f} s, {rss / GB:.2f} GB", flush=True)

    result = alternate_runs(lambda lib, out: command(lib, root, args.dtype, args.size, args.steps, out, args.threads),
                            args.repeats, args.threads, "ng-sd3-", report)
    import diffusers
    import torch

    print(f"\nSD3.5 Medium ({args.size_config} configuration, random bf16 weights) time-to-image, whole process, "
          f"nodegraph CLI vs diffusers {diffusers.__version__}; torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.dtype}, {args.size}², {args.steps} steps; median of {args.repeats}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for lib in ("nodegraph", "diffusers"):
        print(f"  {lib:<10} {result[f'{lib}_s']:7.1f} s ({result[f'{lib}_min']:.1f}–{result[f'{lib}_max']:.1f})"
              f"   peak RSS {result[f'{lib}_rss'] / GB:6.2f} GB")
    print(f"  ratio      time {result['nodegraph_s'] / result['diffusers_s']:.2f} (goal ≤ 0.85)   "
          f"RSS {result['nodegraph_rss'] / result['diffusers_rss']:.2f} (goal ≤ 0.6)   max px Δ {result['diff']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--diffusers-worker":
        model, dtype, size, steps, out, threads = sys.argv[2:8]
        diffusers_worker(model, dtype, int(size), int(steps), out, int(threads))
    else:
        main()
