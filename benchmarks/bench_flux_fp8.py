"""Flux.1-schnell whole run from fp8 files (issue 28): the transformer file, a T5-XXL-size scaled-fp8 T5, the VAE.

    flock -w 900 /tmp/nodegraph-heavy.lock timeout 480 .venv/bin/python benchmarks/bench_flux_fp8.py --only ours
    flock -w 900 /tmp/nodegraph-heavy.lock timeout 480 .venv/bin/python benchmarks/bench_flux_fp8.py --only diffusers

Files, written once (one tensor at a time) into the cache folder of benchmarks/bench_flux.py and reused:
* `flux1-schnell-fp8.safetensors`: FLUX.1-schnell's transformer (11.9 B parameters) in BFL's layout, Linear
  weights float8_e4m3fn (bench_flux.py writes it);
* `t5xxl_fp8_e4m3fn_scaled.safetensors`: T5 v1.1 XXL's encoder at its real size (24 blocks, 4096 wide, d_ff 10240,
  64 heads, 32128-token embedding in bf16: 4.9 GB) as ComfyUI ships it — every Linear weight float8_e4m3fn with
  its float32 `scale_weight` and `scale_input`, a `scaled_fp8` marker (models/scaled_fp8.py);
* the pipeline folder of bench_flux.py (full-size Flux VAE, one-layer CLIP-L at its real width, the small test T5
  tokenizer), copied with text_encoder_2/config.json set to T5-XXL's depth and vocabulary.

`--only ours`: a fresh `nodegraph run graphs/flux.yaml --dtype bf16` at 256², 1 step, schnell's 256 T5 tokens,
with both files given as `transformer` / `text_encoder_2`: seconds from start to the PNG, peak RSS from the OS
(the mapped file pages it touches count). `--only diffusers`: diffusers' nearest option in one process — its
FluxPipeline in bf16 needs 23.8 GB for the transformer alone, over this 24 GB machine, so it is given the same
transformer file loaded with float8 storage (`from_single_file(torch_dtype=float8_e4m3fn)`, normalisation layers
back in bf16) and `enable_layerwise_casting(float8_e4m3fn → bfloat16)`, the T5 in bf16 with layerwise casting
too (diffusers reads no scaled-fp8 file: the T5 is random weights of the same size). A watchdog ends it when its
RSS passes `--limit` GB (default 16, the issue's goal) and says at which stage. Peak RSS in decimal GB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests" / "flow")]
from bench_flux import write_fp8_transformer, write_pipeline_folder  # noqa: E402
from bench_time_to_image import GB, timed_run  # noqa: E402

T5XXL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, vocab_size=32128,
             relative_attention_num_buckets=32)
T5_LINEARS = ("layer.0.SelfAttention.q", "layer.0.SelfAttention.k", "layer.0.SelfAttention.v",
              "layer.0.SelfAttention.o", "layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1",
              "layer.1.DenseReluDense.wo")


def t5_layout() -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (safetensors dtype, shape)} of ComfyUI's t5xxl_fp8_e4m3fn_scaled file (encoder only)."""
    d, ff, h = T5XXL["d_model"], T5XXL["d_ff"], T5XXL["num_heads"]
    shapes = {"layer.0.SelfAttention.q": (d, d), "layer.0.SelfAttention.k": (d, d), "layer.0.SelfAttention.v": (d, d),
              "layer.0.SelfAttention.o": (d, d), "layer.1.DenseReluDense.wi_0": (ff, d),
              "layer.1.DenseReluDense.wi_1": (ff, d), "layer.1.DenseReluDense.wo": (d, ff)}
    out = {"scaled_fp8": ("F8_E4M3", (0,)), "shared.weight": ("BF16", (T5XXL["vocab_size"], d)),
           "encoder.final_layer_norm.weight": ("BF16", (d,)),
           "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
               ("BF16", (T5XXL["relative_attention_num_buckets"], h))}
    for i in range(T5XXL["num_layers"]):
        block = f"encoder.block.{i}."
        out[block + "layer.0.layer_norm.weight"] = ("BF16", (d,))
        out[block + "layer.1.layer_norm.weight"] = ("BF16", (d,))
        for name in T5_LINEARS:
            out[f"{block}{name}.weight"] = ("F8_E4M3", shapes[name])
            out[f"{block}{name}.scale_weight"] = ("F32", ())
            out[f"{block}{name}.scale_input"] = ("F32", ())
    return out


def write_scaled_t5(path: Path) -> None:
    """Seeded random weights: float8 values of N(0, 1) with scale 0.02 / √(fan-in / 4096) (weights ~ N(0, s²))."""
    import torch
    from random_safetensors import write_streamed

    layout = t5_layout()
    generator = torch.Generator().manual_seed(1)

    def make(name: str, kind: str, shape: tuple[int, ...]):
        if kind == "F8_E4M3":
            return torch.randn(shape, generator=generator).to(torch.float8_e4m3fn)
        if name.endswith(".scale_weight"):
            fan_in = layout[name.replace(".scale_weight", ".weight")][1][1]
            return torch.tensor(0.02 * (4096 / fan_in) ** 0.5, dtype=torch.float32)
        if name.endswith(".scale_input") or name.endswith("layer_norm.weight"):
            return torch.ones(shape, dtype=torch.float32 if kind == "F32" else torch.bfloat16)
        return torch.randn(shape, generator=generator).to(torch.bfloat16)

    write_streamed(path, layout, make)


def prepare(cache: Path) -> tuple[Path, Path, Path]:
    """(transformer file, scaled T5 file, pipeline folder configured for T5-XXL), writing what is missing."""
    cache.mkdir(parents=True, exist_ok=True)
    flux, t5, base, folder = (cache / "flux1-schnell-fp8.safetensors", cache / "t5xxl_fp8_e4m3fn_scaled.safetensors",
                              cache / "pipeline", cache / "pipeline-t5xxl")
    if not base.exists():
        write_pipeline_folder(base)
    if not folder.exists():
        shutil.copytree(base, folder, ignore=shutil.ignore_patterns("model.safetensors"), dirs_exist_ok=True)
        (folder / "text_encoder").mkdir(exist_ok=True)
        shutil.copy(base / "text_encoder" / "model.safetensors", folder / "text_encoder" / "model.safetensors")
        config = json.loads((base / "text_encoder_2" / "config.json").read_text())
        config.update(num_layers=T5XXL["num_layers"], num_decoder_layers=T5XXL["num_layers"],
                      vocab_size=T5XXL["vocab_size"])
        (folder / "text_encoder_2" / "config.json").write_text(json.dumps(config, indent=2))
    for path, write in ((flux, write_fp8_transformer), (t5, write_scaled_t5)):
        if not path.exists():
            write(path)
            print(f"wrote {path} ({path.stat().st_size / GB:.1f} GB)", flush=True)
    return flux, t5, folder


def run_ours(flux: Path, t5: Path, folder: Path, threads: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-flux-fp8-") as out:
        argv = [sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "flux.yaml"), "-q", "--dtype",
                "bf16", "--out", out, "--set", f"model={folder}", "--set", f"transformer={flux}", "--set",
                f"text_encoder_2={t5}", "--set", "width=256", "--set", "height=256", "--set", "steps=1"]
        seconds, rss = timed_run(argv, threads)
    print(f"nodegraph, FLUX.1-schnell-size fp8 transformer + T5-XXL-size scaled-fp8 T5 + VAE, bf16, 256², 1 step: "
          f"{seconds:.1f} s, peak RSS {rss / GB:.2f} GB (files {flux.stat().st_size / GB:.1f} + "
          f"{t5.stat().st_size / GB:.1f} GB)", flush=True)


def run_diffusers(flux: Path, folder: Path, threads: int, limit: float) -> None:
    """benchmarks/bench_flux_fp8_diffusers.py in a fresh process: its stages as it prints them, its wall seconds
    and peak RSS from the OS, or where its watchdog stopped it."""
    import os
    import subprocess
    import time

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               DIFFUSERS_VERBOSITY="error")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "bench_flux_fp8_diffusers.py"), str(flux),
                             str(folder), str(limit)], env=env, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds, code = time.perf_counter() - start, os.waitstatus_to_exitcode(status)
    outcome = "ran" if code == 0 else ("stopped by the watchdog" if code == 3 else f"failed (exit {code})")
    print(f"diffusers, FluxPipeline with layerwise casting (float8 storage), bf16, 256², 1 step: {outcome}, "
          f"{seconds:.1f} s, peak RSS {usage.ru_maxrss * 1024 / GB:.2f} GB", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nodegraph-bench-flux")
    parser.add_argument("--only", choices=("ours", "diffusers", "prepare"), default="ours")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=float, default=16.0, help="diffusers: end the process past this RSS (GB)")
    args = parser.parse_args()
    files = prepare(args.cache)
    if args.only == "ours":
        run_ours(*files, args.threads)
    elif args.only == "diffusers":
        run_diffusers(files[0], files[2], args.threads, args.limit)
