"""SDXL time-to-image, whole process: `nodegraph run graphs/sdxl.yaml` vs diffusers' StableDiffusionXLPipeline.

    .venv/bin/python benchmarks/bench_sdxl.py [--only sdxl|tiny] [--steps 3] [--size 512] [--repeats 2]

Each run is a fresh Python process, timed from its start until the PNG is written (import + load + sample +
decode + save), with its own peak RSS (ru_maxrss of that child), alternating the two libraries on the same
checkpoint, prompt, seed, size and step count; the table gives medians and the largest pixel difference.
Checkpoints (random weights, cached outside the repo):
- sdxl: SDXL base 1.0's real architecture (UNet 2.6 B parameters, both text encoders, VAE; configs from
  tests/models/data/reference/sdxl-configs.json), random weights stored in float32 like the hub repo's default
  files (about 14 GB on disk; `--weights bf16` stores bf16 instead, 7 GB);
- sdxl-small: the same with 1/2/2 transformer layers per level and an 8-layer second text encoder (a
  quarter of the size: a reduced run for small machines);
- tiny: the tiny SDXL base of tests/graphs/tiny_sdxl.py (fixed costs only).
Goal (issue 11): bf16 on the CPU, 512×512, 2–4 steps: time ratio ≤ 0.85 and peak-RSS ratio ≤ 0.6.
`--baseline DIR` runs an earlier nodegraph checkout in diffusers' place, for before/after figures of a change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_time_to_image import GB, alternate_runs, warm_page_cache  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse"
SEED = 0
CONFIGS = REPO / "tests" / "models" / "data" / "reference"


def _write_random(model, folder: Path, seed: int, dtype, weights_name: str) -> None:
    """Save a meta-built model's config and small seeded Gaussian weights (norm weights at 1) in `dtype` as one
    `<weights_name>.safetensors`, like the hub's SDXL 1.0 files (the UNet's is one 10 GB file in fp32).

    safetensors' own writer needs every tensor in memory at once; this writes the same format (8-byte header
    length, JSON header of dtype / shape / byte offsets, then the raw tensors in order) one tensor at a time, so
    writing the 14 GB checkpoint needs no more RAM than its largest tensor.
    """
    import torch

    if hasattr(model.config, "save_pretrained"):  # transformers: say which class, as save_pretrained would
        model.config.architectures = [type(model).__name__]
        model.config.torch_dtype = dtype
        model.config.save_pretrained(folder)
    else:
        model.save_config(folder)
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}
    state = model.state_dict()
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, meta in state.items():
        kind = torch.int64 if name.endswith("position_ids") else dtype
        size = meta.numel() * kind.itemsize
        header[name] = {"dtype": names[kind], "shape": list(meta.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    generator = torch.Generator().manual_seed(seed)
    with open(folder / f"{weights_name}.safetensors", "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for name, meta in state.items():
            if name.endswith("position_ids"):
                tensor = torch.arange(meta.shape[-1]).expand(meta.shape).contiguous()
            elif "norm" in name and name.endswith("weight"):
                tensor = torch.ones(meta.shape, dtype=dtype)
            else:
                tensor = (torch.randn(meta.shape, generator=generator) * 0.02).to(dtype)
            f.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())  # raw little-endian bytes


def sdxl_checkpoint(cache: Path, weights: str, small: bool = False) -> Path:
    """SDXL base 1.0's architecture (or a reduced one) with random weights stored in `weights` ("fp32" or
    "bf16"), as a diffusers pipeline folder (written once)."""
    import torch

    root = cache / f"sdxl-base-random-{weights}{'-small' if small else ''}"
    if (root / ".complete").exists():
        return root
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    print(f"writing the SDXL-architecture checkpoint to {root} (once) …", flush=True)
    sdxl = json.loads((CONFIGS / "sdxl-configs.json").read_text())
    clip_l = json.loads((CONFIGS / "real-configs.json").read_text())["SD14_TEXT_ENCODER"]
    if small:
        sdxl["SDXL_BASE_UNET"]["transformer_layers_per_block"] = [1, 2, 2]
        sdxl["SDXL_TEXT_ENCODER_2"]["num_hidden_layers"] = 8
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[weights]
    parts = [("unet", "diffusion_pytorch_model",
              lambda: diffusers.UNet2DConditionModel.from_config(sdxl["SDXL_BASE_UNET"])),
             ("vae", "diffusion_pytorch_model", lambda: diffusers.AutoencoderKL.from_config(sdxl["SDXL_VAE"])),
             ("text_encoder", "model", lambda: CLIPTextModel(CLIPTextConfig.from_dict(clip_l))),
             ("text_encoder_2", "model",
              lambda: CLIPTextModelWithProjection(CLIPTextConfig.from_dict(sdxl["SDXL_TEXT_ENCODER_2"])))]
    for seed, (name, weights_name, build) in enumerate(parts):
        with torch.device("meta"):
            model = build()
        (root / name).mkdir(parents=True, exist_ok=True)
        _write_random(model, root / name, seed, dtype, weights_name)
        del model
    for name in ("tokenizer", "tokenizer_2"):
        shutil.copytree(REPO / "nodegraph" / "builtin" / "clip_tokenizer", root / name, dirs_exist_ok=True)
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(sdxl["SDXL_SCHEDULER"]))
    (root / "model_index.json").write_text(json.dumps(sdxl["SDXL_BASE_MODEL_INDEX"]))
    (root / ".complete").touch()
    return root


def tiny_checkpoint(cache: Path) -> Path:
    root = cache / "tiny-sdxl"
    if not (root / "base" / ".complete").exists():
        sys.path[:0] = [str(REPO), str(REPO / "tests" / "graphs")]
        from tiny_sdxl import save_tiny_sdxl

        save_tiny_sdxl(root / "base", root / "refiner")
        (root / "base" / ".complete").touch()
    return root / "base"


def diffusers_worker(model: str, dtype_name: str, size: int, steps: int, out: str, threads: int) -> None:
    """The diffusers side, as a user would write it (runs as the timed child process)."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=dtype, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=steps, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def command(lib: str, model: Path, dtype: str, size: int, steps: int, out: Path, threads: int,
            baseline: Path | None = None) -> list[str]:
    """The child's argv. With `baseline` (another nodegraph checkout), the "diffusers" side runs `nodegraph run`
    from that checkout instead: a before/after measurement of a change to nodegraph itself."""
    if lib == "diffusers" and baseline is None:
        return [sys.executable, __file__, "--diffusers-worker", str(model), dtype, str(size), str(steps),
                str(out / "image.png"), str(threads)]
    tree = REPO if lib == "nodegraph" else baseline
    sets = dict(model=model, prompt=PROMPT, steps=steps, height=size, width=size, seed=SEED)
    args = ["run", str(tree / "graphs" / "sdxl.yaml"), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
            "--dtype", dtype, "--device", "cpu", "--out", str(out), "-q"]
    if lib == "nodegraph":
        return [sys.executable, "-m", "nodegraph.cli", *args]
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); from nodegraph.cli import main; "
                                  f"sys.exit(main({args!r}))"]


def measure(name: str, model: Path, dtype: str, size: int, steps: int, threads: int, repeats: int,
            baseline: Path | None = None) -> dict:
    runs: dict[str, list] = {"nodegraph": [], "diffusers": []}

    def report(lib: str, r: int, seconds: float, rss: int) -> None:
        runs[lib].append((seconds, rss))
        shown = "before" if baseline is not None and lib == "diffusers" else lib
        print(f"  {name} {shown} run {r}: {seconds:.1f} s, {rss / GB:.2f} GB", flush=True)

    result = alternate_runs(lambda lib, out: command(lib, model, dtype, size, steps, out, threads, baseline),
                            repeats, threads, "ng-sdxl-", report)
    spread = {f"{lib}_range": (min(s for s, _ in rs), max(s for s, _ in rs)) for lib, rs in runs.items()}
    return {"case": name, "size": size, "steps": steps, "dtype": dtype, **result, **spread}


def print_table(rows: list[dict], threads: int, repeats: int, weights: str, baseline: Path | None) -> None:
    import diffusers
    import torch

    other = f"nodegraph from {baseline} (before)" if baseline else f"diffusers {diffusers.__version__}"
    print(f"\nSDXL time-to-image, whole process (import + load + steps + decode + PNG), nodegraph CLI vs {other}; "
          f"torch {torch.__version__}, {threads} thread(s), {os.cpu_count()} CPUs; median of {repeats} (min–max); "
          f"SDXL weights stored in {weights}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    name = "before" if baseline else "diffusers"
    head = (f"{'checkpoint':<11}{'size':<6}{'steps':<6}{'dtype':<6}{'nodegraph s':>18}{name + ' s':>18}"
            f"{'ratio':>7}{'ng RSS GB':>11}{name[:6] + ' RSS GB':>14}{'ratio':>7}{'max px Δ':>10}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        times = [f"{r[f'{lib}_s']:.1f} ({r[f'{lib}_range'][0]:.1f}–{r[f'{lib}_range'][1]:.1f})"
                 for lib in ("nodegraph", "diffusers")]
        print(f"{r['case']:<11}{r['size']:<6}{r['steps']:<6}{r['dtype']:<6}{times[0]:>18}{times[1]:>18}"
              f"{r['nodegraph_s'] / r['diffusers_s']:>7.2f}{r['nodegraph_rss'] / GB:>11.2f}"
              f"{r['diffusers_rss'] / GB:>14.2f}{r['nodegraph_rss'] / r['diffusers_rss']:>7.2f}{r['diff']:>10}")
    print("goal (sdxl, bf16, 512 px, vs diffusers): time ratio ≤ 0.85, RSS ratio ≤ 0.6; max px Δ in 0–255 units")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nodegraph-bench")
    parser.add_argument("--only", choices=["tiny", "sdxl", "sdxl-small"], default=None)
    parser.add_argument("--weights", default="fp32", choices=["fp32", "bf16"],
                        help="dtype the random checkpoint is stored in (the hub repo's default files are fp32)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--size", type=int, default=512, help="image size for the sdxl checkpoint (tiny: 64)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a nodegraph checkout (e.g. `git worktree add /tmp/before <commit>`) to run instead of "
                             "diffusers: before/after figures for a change")
    parser.add_argument("--no-warm", action="store_true",
                        help="skip reading the weights into the page cache first (when they cannot all stay there)")
    args = parser.parse_args()

    checkpoints = {}
    if args.only in (None, "tiny"):
        checkpoints["tiny"] = (tiny_checkpoint(args.cache), 64)
    if args.only in (None, "sdxl"):
        checkpoints["sdxl"] = (sdxl_checkpoint(args.cache, args.weights), args.size)
    if args.only == "sdxl-small":
        checkpoints["sdxl-small"] = (sdxl_checkpoint(args.cache, args.weights, small=True), args.size)
    rows = []
    for name, (root, size) in checkpoints.items():
        if not args.no_warm:
            warm_page_cache(root)
        rows.append(measure(name, root, args.dtype, size, args.steps, args.threads, args.repeats, args.baseline))
    print_table(rows, args.threads, args.repeats, args.weights, args.baseline)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--diffusers-worker":
        model, dtype, size, steps, out, threads = sys.argv[2:8]
        diffusers_worker(model, dtype, int(size), int(steps), out, int(threads))
    else:
        main()
