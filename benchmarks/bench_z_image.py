"""Z-Image time-to-image, whole process: `nodegraph run graphs/z_image.yaml` vs diffusers' ZImagePipeline.

    flock -w 900 /tmp/nodegraph-heavy.lock timeout 240 .venv/bin/python benchmarks/bench_z_image.py \
        --size-config small [--resident] [--diffusers pipeline|by-hand] [--steps 2] [--size 256] [--repeats 3]
    # the real size, one step per lock hold: build each part once, then one timed process per command
    flock -w 900 /tmp/nodegraph-heavy.lock timeout 480 .venv/bin/python benchmarks/bench_z_image.py \
        --prepare-only --part text_encoder|transformer|vae|rest
    flock -w 900 /tmp/nodegraph-heavy.lock timeout 480 .venv/bin/python benchmarks/bench_z_image.py \
        --only nodegraph|diffusers --results /tmp/nodegraph-bench-zimage/real.jsonl [--diffusers by-hand]
    .venv/bin/python benchmarks/bench_z_image.py --results /tmp/nodegraph-bench-zimage/real.jsonl   # the table

Each run is a fresh Python process, timed from its start until the PNG is written (import + load + encode +
steps + decode + save), with its own peak RSS, alternating the two libraries (median of `--repeats`); the table
gives the ratios and the largest pixel difference. Checkpoint: Z-Image-Turbo's architecture with random weights
stored in bf16 (cached outside the repo): the transformer at diffusers' class defaults (= Turbo: 6.15 B
parameters), Qwen3-4B as text encoder (4.02 B), the Flux VAE, the shift-3 scheduler and the tiny test tokenizer
(its ids are a subset of the real vocabulary). `--size-config small` keeps every width but 6 of the 30
transformer layers and 8 of the 36 text-encoder layers (about 5 GB: for a machine that cannot hold the real one).
`--diffusers by-hand`: where ZImagePipeline cannot fit in memory (it holds the text encoder and the transformer
at once: about 21 GB in bf16 at the real size), diffusers' components are driven one after another instead:
encode, free the encoder, then load the transformer and VAE and run the pipeline on the prompt embeddings.
`--resident`: nodegraph holds the whole transformer (NODEGRAPH_FILE_READS=0) instead of reading a third of its
blocks from the file at each call (models/partial_residency.py, the default CPU run).
Goal (issue 26): bf16, 256², 2 steps: time ratio ≤ 0.85 and peak-RSS ratio ≤ 0.6.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests" / "flow")]
from bench_sdxl import _write_random  # noqa: E402
from bench_time_to_image import GB, alternate_runs, pixel_diff, timed_run, warm_page_cache  # noqa: E402

PROMPT = "a red fox in fresh snow, morning light, photograph"
SEED = 0
QWEN3_4B = dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                max_position_embeddings=40960, tie_word_embeddings=True, hidden_act="silu",
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
FLUX_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
                use_quant_conv=False, use_post_quant_conv=False, force_upcast=True, mid_block_add_attention=True)
MODEL_INDEX = {"_class_name": "ZImagePipeline", "_diffusers_version": "0.42.1",
               "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "Qwen3Model"],
               "tokenizer": ["transformers", "Qwen2Tokenizer"],
               "transformer": ["diffusers", "ZImageTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}


PARTS = ("text_encoder", "transformer", "vae", "rest")  # `--prepare-only --part`: one component per process


def z_image_checkpoint(cache: Path, size_config: str, part: str | None = None) -> Path:
    """Z-Image-Turbo's architecture (or the reduced one) with random bf16 weights, as a diffusers pipeline folder
    (written once, one tensor at a time, so writing needs no more memory than the largest tensor). With `part`,
    only that component is written (each marked done on its own, so the real size can be built in steps)."""
    import torch

    root = cache / f"z-image-random-bf16-{size_config}"
    if (root / ".complete").exists():
        return root
    import diffusers
    from tiny_z_image import build_tokenizer
    from transformers import Qwen3Config, Qwen3Model

    small = size_config == "small"
    text = {**QWEN3_4B, "num_hidden_layers": 8 if small else 36}
    transformer = {"n_layers": 6} if small else {}
    parts = {"text_encoder": ("model", lambda: Qwen3Model(Qwen3Config(**text))),
             "transformer": ("diffusion_pytorch_model", lambda: diffusers.ZImageTransformer2DModel(**transformer)),
             "vae": ("diffusion_pytorch_model", lambda: diffusers.AutoencoderKL(**FLUX_VAE))}
    for seed, (name, (weights_name, build)) in enumerate(parts.items()):
        if (part and part != name) or (root / name / ".done").exists():
            continue
        print(f"writing the Z-Image-architecture {name} to {root} (once) …", flush=True)
        with torch.device("meta"):
            model = build()
        (root / name).mkdir(parents=True, exist_ok=True)
        _write_random(model, root / name, seed, torch.bfloat16, weights_name)
        (root / name / ".done").touch()
        del model
    if part in (None, "rest"):
        build_tokenizer().save_pretrained(root / "tokenizer")
        diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(root / "scheduler")
        (root / "model_index.json").write_text(json.dumps(MODEL_INDEX))
    if all((root / name / ".done").exists() for name in parts) and (root / "model_index.json").exists():
        (root / ".complete").touch()
    return root


def diffusers_worker(model: str, mode: str, dtype_name: str, size: int, steps: int, out: str, threads: int) -> None:
    """The diffusers side, as a user would write it (runs as the timed child process)."""
    import torch
    from diffusers import ZImagePipeline

    torch.set_num_threads(threads)
    try:  # if the machine runs out of memory (the real-size pipeline needs ~21 GB), the kernel ends this run first
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    call = dict(height=size, width=size, num_inference_steps=steps, guidance_scale=0.0,
                generator=torch.Generator("cpu").manual_seed(SEED))
    if mode == "pipeline":
        pipe = ZImagePipeline.from_pretrained(model, torch_dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        image = pipe(PROMPT, **call).images[0]
    else:
        image = _by_hand(model, dtype, call)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def _by_hand(model: str, dtype, call: dict):
    """diffusers' components one after another: the encoder is freed before the transformer loads."""
    import torch
    from diffusers import AutoencoderKL, ZImagePipeline, ZImageTransformer2DModel

    encoding = ZImagePipeline.from_pretrained(model, transformer=None, vae=None, torch_dtype=dtype)
    with torch.no_grad():
        embeds, _ = encoding.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)
    scheduler = encoding.scheduler
    del encoding
    gc.collect()
    transformer = ZImageTransformer2DModel.from_pretrained(model, subfolder="transformer", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=dtype)
    pipe = ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt_embeds=embeds, **call).images[0]


def command(lib: str, model: Path, mode: str, dtype: str, size: int, steps: int, out: Path,
            threads: int) -> list[str]:
    if lib == "diffusers":
        return [sys.executable, __file__, "--diffusers-worker", str(model), mode, dtype, str(size), str(steps),
                str(out / "image.png"), str(threads)]
    sets = dict(model=model, prompt=PROMPT, steps=steps, height=size, width=size, seed=SEED)
    return [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "z_image.yaml"),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
            "--dtype", dtype, "--device", "cpu", "--out", str(out), "-q"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--size-config", choices=["real", "small"], default="real")
    parser.add_argument("--diffusers", choices=["pipeline", "by-hand"], default="pipeline")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-warm", action="store_true", help="skip reading the weights into the page cache")
    parser.add_argument("--prepare-only", action="store_true", help="write the checkpoint (or `--part` of it), stop")
    parser.add_argument("--part", choices=PARTS, help="with --prepare-only: write this component only")
    parser.add_argument("--resident", action="store_true",
                        help="nodegraph holds the whole transformer (NODEGRAPH_FILE_READS=0: no partial residency)")
    parser.add_argument("--only", choices=["nodegraph", "diffusers"],
                        help="one timed process of this side, appended to --results (real size: one per lock hold)")
    parser.add_argument("--results", type=Path, help="with --only: the JSON-lines file to append to; alone: "
                                                     "print the medians and ratios of the runs it holds")
    args = parser.parse_args()
    if args.resident:
        os.environ["NODEGRAPH_FILE_READS"] = "0"  # the timed children inherit it

    root = z_image_checkpoint(args.cache, args.size_config, args.part if args.prepare_only else None)
    if args.prepare_only:
        return
    if args.results and not args.only:
        return print_result(summarize(args.results), args)
    if not args.no_warm:
        warm_page_cache(root)
    if args.only:
        return one_run(args, root)

    def report(lib: str, r: int, seconds: float, rss: int) -> None:
        print(f"  {lib} run {r}: {seconds:.1f} s, {rss / GB:.2f} GB", flush=True)

    result = alternate_runs(lambda lib, out: command(lib, root, args.diffusers, args.dtype, args.size, args.steps,
                                                     out, args.threads), args.repeats, args.threads, "ng-zimage-",
                            report)
    print_result(result, args)


def one_run(args, root: Path) -> None:
    """One fresh timed process of `args.only`, its figures appended to `args.results` and its PNG kept beside."""
    done = summarize_lines(args.results)
    out = args.results.parent / f"{args.only}-{sum(1 for row in done if row['lib'] == args.only)}"
    seconds, rss = timed_run(command(args.only, root, args.diffusers, args.dtype, args.size, args.steps, out,
                                     args.threads), args.threads)
    row = {"lib": args.only, "s": seconds, "rss": rss, "png": str(out / "image.png"), "load": os.getloadavg()[0],
           "resident": args.resident}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {args.only}: {seconds:.1f} s, {rss / GB:.2f} GB (load average {row['load']:.1f})", flush=True)


def summarize_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def summarize(path: Path) -> dict:
    """alternate_runs' figures from the runs a --results file holds (medians, spreads, first PNGs' difference)."""
    import statistics

    rows, result = summarize_lines(path), {}
    for lib in ("nodegraph", "diffusers"):
        mine = [row for row in rows if row["lib"] == lib]
        if not mine:
            raise SystemExit(f"{path} holds no {lib} run: run this benchmark with --only {lib} --results {path}")
        result.update({f"{lib}_s": statistics.median(r["s"] for r in mine), f"{lib}_rss": statistics.median(
            r["rss"] for r in mine), f"{lib}_min": min(r["s"] for r in mine), f"{lib}_max": max(r["s"] for r in mine)})
        result[f"{lib}_n"] = len(mine)
    first = {lib: next(Path(r["png"]) for r in rows if r["lib"] == lib) for lib in ("nodegraph", "diffusers")}
    return {**result, "diff": pixel_diff(first["nodegraph"], first["diffusers"])}


def print_result(result: dict, args) -> None:
    import diffusers
    import torch

    runs = f"{result['nodegraph_n']} + {result['diffusers_n']} runs" if "nodegraph_n" in result else \
        f"median of {args.repeats}"
    print(f"\nZ-Image ({args.size_config} configuration, random bf16 weights) time-to-image, whole process, "
          f"nodegraph CLI{' (whole transformer resident)' if args.resident else ''} vs diffusers "
          f"{diffusers.__version__} ({args.diffusers}); torch {torch.__version__}, "
          f"{args.threads} thread(s), {args.dtype}, {args.size}², {args.steps} steps; {runs}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for lib in ("nodegraph", "diffusers"):
        print(f"  {lib:<10} {result[f'{lib}_s']:7.1f} s ({result[f'{lib}_min']:.1f}–{result[f'{lib}_max']:.1f})"
              f"   peak RSS {result[f'{lib}_rss'] / GB:6.2f} GB")
    print(f"  ratio      time {result['nodegraph_s'] / result['diffusers_s']:.2f} (goal ≤ 0.85)   "
          f"RSS {result['nodegraph_rss'] / result['diffusers_rss']:.2f} (goal ≤ 0.6)   max px Δ {result['diff']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--diffusers-worker":
        model, mode, dtype, size, steps, out, threads = sys.argv[2:9]
        diffusers_worker(model, mode, dtype, int(size), int(steps), out, int(threads))
    else:
        main()
