"""Memory benchmark: an SDXL-size VAE decode of a large image, untiled vs nodegraph's exact tiling vs diffusers.

    flock /tmp/nodegraph-heavy.lock .venv/bin/python benchmarks/bench_memory.py [--size 2048] [--tile 256] [--dtype bf16]
        [--only VARIANT ...] [--work DIR]

Builds an SDXL-architecture AutoencoderKL with random weights (diffusers' own init, saved once as fp32
safetensors into a temporary folder), then decodes one seeded latent of size/8 in a fresh process per variant:
nodegraph untiled, nodegraph lean untiled (models/vae_lean.py), nodegraph tiled (models/vae_tiling.py), diffusers
untiled and diffusers `enable_tiling()`; "identical" where the image equals nodegraph untiled's bit for bit.
Each process reports its peak RSS from the OS (VmHWM), its RSS once the weights are loaded and resident, and the
decode time; the images are compared with nodegraph's untiled one in 1/255 steps of the [0, 1] image. Needs about
3× the untiled decode's activations in free RAM at 2048² (check `free -g` first; the untiled runs are the big ones).

"Above the weights" is the peak minus the RSS with every weight resident: nodegraph maps an fp32 file's tensors
without reading them (models/checkpoint.py read_tensors), so right after loading they are not yet in the RSS and the
decode would page them in (319 MB here) and count them as its own (diffusers' loading maps them too); each process
reads every weight once before the decode starts. The column "above load" is the peak minus the RSS right after
loading, the figure this benchmark printed before.

`--work DIR` keeps the weights and each variant's image and figures (DIR/results.jsonl) between commands, so one
long variant a command fits the shared lock's hold: e.g. `--work /tmp/nodegraph-bench-vae --only nodegraph-tiled`,
then `--only nodegraph-untiled` in another hold; the differences are then printed against the untiled image from
whichever command made it. Where one tiled 2048² decode outlasts a hold (the machine's other jobs taking a core),
`--only nodegraph-tiled-head`, then `--only nodegraph-tiled-tail` runs it in two processes (the tail's image is
compared); `--only nodegraph-tiled-last` runs the tail alone from random rows of the held shape, for its memory
(the decode's peak: the last up block holds the widest full-size activation) without the image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SDXL_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, norm_num_groups=32,
                latent_channels=4, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
VARIANTS = ("nodegraph-untiled", "nodegraph-lean", "nodegraph-tiled", "diffusers-untiled", "diffusers-enable_tiling",
            "nodegraph-tiled-head", "nodegraph-tiled-tail", "nodegraph-tiled-last", "nodegraph-tiled-widest")
HALVES = {"nodegraph-tiled-head", "nodegraph-tiled-tail"}  # the tiled decode in two processes (see _tiled_head)
# nodegraph-tiled-last: memory only, the tail from random rows of the shape the decode holds there (_random_rows);
# nodegraph-tiled-widest: memory only, the last resnet and the output conv from random rows (_widest)


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def child(variant: str, folder: str, size: int, tile: int, out: str, dtype_name: str = "fp32") -> None:
    import numpy as np
    import torch

    torch.set_grad_enabled(False)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    z = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    if variant.startswith("nodegraph"):
        from nodegraph.memory.usage import release_free_heap
        from nodegraph.models.loading import load_component
        from nodegraph.models.vae_lean import lean_decode
        from nodegraph.models.vae_tiling import tiled_decode

        vae = load_component(folder, "vae", dtype=dtype)
        release = _progress(Path(out).with_name(f"progress-{variant}-{size}-{dtype_name}.json"), release_free_heap)
        state = Path(out).with_name(f"tiled-head-state-{size}-{dtype_name}.pt")
        decode = {"tiled": lambda: tiled_decode(vae, z, tile, release), "lean": lambda: lean_decode(vae, z),
                  "untiled": lambda: vae.decode(z),
                  "tiled-head": lambda: _tiled_head(vae, z, tile, release, state),
                  "tiled-tail": lambda: _tiled_tail(vae, tile, release, state),
                  "tiled-last": lambda: _tiled_tail(vae, tile, release, None, size) is None,
                  "tiled-widest": lambda: _widest(vae, tile, release, size) is None,
                  }[variant.split("-", 1)[1]]
    else:
        import diffusers

        vae = diffusers.AutoencoderKL.from_pretrained(folder, torch_dtype=dtype).eval()
        if variant.endswith("enable_tiling"):
            vae.enable_tiling()

        def decode():
            return vae.decode(z).sample
    after_load = _vm("VmRSS")
    global _LOADED, _START
    for t in (*vae.parameters(), *vae.buffers()):  # page every weight in (a mapped file's are not yet resident)
        t.sum()
    loaded = _LOADED = _vm("VmRSS")
    start = _START = time.perf_counter()
    image = decode()
    seconds = time.perf_counter() - start
    if isinstance(image, torch.Tensor):
        np.save(out, (image.float() / 2 + 0.5).clamp(0, 1).numpy())
    print(json.dumps({"after_load": after_load, "loaded": loaded, "peak": _vm("VmHWM"), "seconds": seconds}))


_LOADED, _START = 0, 0.0


def _progress(path: Path, release):
    """`release` that also writes the peak so far above the loaded weights and the seconds to `path` after every
    band, so a decode stopped by the hold's timeout still tells how far it got and what it had used."""
    bands = [0]

    def call() -> None:
        release()
        bands[0] += 1
        path.write_text(json.dumps({"bands": bands[0], "peak_above_weights": _vm("VmHWM") - _LOADED,
                                    "seconds": time.perf_counter() - _START}))
    return call


def _widest(vae, tile: int, release, size: int):
    """The last resnet and the output conv (GroupNorm, act, conv to RGB) from random rows of their input's shape,
    (1, C, size, size) in band chunks: the widest full-size activation the tiled decode holds (128 channels at
    full size for SDXL's VAE), in a quarter of the last up block's time. Memory only."""
    import torch

    from nodegraph.models import vae_tiling as vt

    dec = vae.decoder
    resnet = dec.up_blocks[-1].resnets[-1]
    c = resnet.conv1.in_channels
    rows = vt.band_rows(size, tile, c)
    g = torch.Generator().manual_seed(0)
    x = vt.Rows((1, c, size, size), vae.dtype, torch.device("cpu"))
    for r in range(0, size, rows):
        x.append(torch.randn(1, c, min(rows, size - r), size, generator=g, dtype=vae.dtype))
    x = vt._resnet(resnet, x, tile, release)
    return vt._norm_act_conv(dec.conv_norm_out, dec.conv_act, dec.conv_out, x, tile, release).tensor()


def _tiled_head(vae, z, tile: int, release, state: Path) -> None:
    """The first part of `tiled_decode` (same steps, vae_tiling's own functions), up to the last up block: saves the
    rows held there (the last upsampler's input) to `state`. With `_tiled_tail` in another process it is the
    tiled decode in two commands, each short enough for one hold of the shared lock at 2048² under load; the peak
    of the two is the decode's (the tail starts from exactly what the whole decode holds at that point)."""
    import torch

    from nodegraph.models import vae_tiling as vt

    dec = vae.decoder
    if vae.post_quant_conv is not None:
        z = vae.post_quant_conv(z)
    x = vt.Rows.whole(dec.mid_block(dec.conv_in(z)))
    *head, last = dec.up_blocks
    for i, block in enumerate(head):
        for resnet in block.resnets:
            x = vt._resnet(resnet, x, tile, release)
        if i < len(head) - 1:
            x = vt.Upsampled(block.upsamplers[0], x)
    torch.save({"shape": tuple(x.shape), "chunks": x.chunks}, state)


def _random_rows(vae, tile: int, size: int) -> dict:
    """Random rows shaped as what `tiled_decode` holds at the last up block's input: (1, C, size/2, size/2) in the
    chunks of band_rows rows the previous resnet writes. Memory and time of the convolutions and GroupNorms do not
    depend on the values, so the tail's peak from these is the whole decode's there (the image is not compared)."""
    import torch

    from nodegraph.models.vae_tiling import band_rows

    block = vae.decoder.up_blocks[-2]
    c, side = block.resnets[-1].conv2.out_channels, size // 2
    rows = band_rows(side, tile, max(c, block.resnets[-1].conv1.in_channels))
    g = torch.Generator().manual_seed(0)
    chunks = [(r, torch.randn(1, c, min(rows, side - r), side, generator=g, dtype=vae.dtype))
              for r in range(0, side, rows)]
    return {"shape": (1, c, side, side), "chunks": chunks}


def _tiled_tail(vae, tile: int, release, state: Path | None, size: int = 0):
    """The rest of `tiled_decode` from `_tiled_head`'s rows: the last upsampler, the last up block, the output conv.
    Without `state`: from random rows of the same shape (`_random_rows`), for the memory figure alone."""
    import torch

    from nodegraph.models import vae_tiling as vt

    dec = vae.decoder
    assert dec.up_blocks[-1].upsamplers is None, "the last up block of an AutoencoderKL has no upsampler"
    saved = torch.load(state) if state is not None else _random_rows(vae, tile, size)
    x = vt.Rows(saved["shape"], saved["chunks"][0][1].dtype, saved["chunks"][0][1].device)
    for _, chunk in saved.pop("chunks"):
        x.append(chunk)
    x = vt.Upsampled(dec.up_blocks[-2].upsamplers[0], x)
    for resnet in dec.up_blocks[-1].resnets:
        x = vt._resnet(resnet, x, tile, release)
    return vt._norm_act_conv(dec.conv_norm_out, dec.conv_act, dec.conv_out, x, tile, release).tensor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels (a multiple of 8)")
    parser.add_argument("--tile", type=int, default=256, help="nodegraph's tile side")
    parser.add_argument("--only", nargs="*", choices=VARIANTS, default=VARIANTS[:5])
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="weights and activations")
    parser.add_argument("--work", help="folder kept between commands (weights, images, results.jsonl)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, folder, size, tile, out, dtype = args.child
        return child(variant, folder, int(size), int(tile), out, dtype)

    import torch

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-memory-"))
    if not (work / "vae" / "diffusion_pytorch_model.safetensors").exists():
        import diffusers

        torch.manual_seed(0)
        diffusers.AutoencoderKL(**SDXL_VAE).save_pretrained(work / "vae")
    weights = (work / "vae" / "diffusion_pytorch_model.safetensors").stat().st_size
    print(f"SDXL-size VAE decode, {args.size}² image, {args.dtype} compute, fp32 weights {weights / 2**20:.0f} MB, "
          f"{torch.get_num_threads()} threads", flush=True)
    print(f"{'variant':<26}{'peak RSS':>10}{'above weights':>15}{'above load':>12}{'seconds':>9}"
          f"{'max |Δ| (1/255)':>18}", flush=True)
    results = {}
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    for variant in args.only:
        out = work / f"{variant}-{args.size}-{args.dtype}.npy"
        run = subprocess.run([sys.executable, __file__, "--child", variant, str(work / "vae"), str(args.size),
                              str(args.tile), str(out), args.dtype], capture_output=True, text=True, env=env)
        if run.returncode:
            print(f"{variant}: failed (exit {run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
            continue
        results[variant] = r = json.loads(run.stdout.strip().splitlines()[-1])
        with open(work / "results.jsonl", "a") as f:
            f.write(json.dumps(dict(r, variant=variant, size=args.size, dtype=args.dtype, tile=args.tile)) + "\n")
        print(f"{variant:<26}{r['peak'] / 2**30:>9.2f}G{(r['peak'] - r['loaded']) / 2**30:>14.2f}G"
              f"{(r['peak'] - r['after_load']) / 2**30:>11.2f}G{r['seconds']:>9.1f}"
              f"{_delta(work, variant, args.size, args.dtype):>18}", flush=True)
    _halves(work, args.size, args.dtype)
    for other in ("nodegraph-lean", "nodegraph-tiled"):
        if other not in results or "nodegraph-untiled" not in results:
            continue
        t, u = results[other], results["nodegraph-untiled"]
        print(f"{other[10:]} / untiled: peak above weights {(t['peak'] - t['loaded']) / (u['peak'] - u['loaded']):.2f}×, "
              f"time {t['seconds'] / u['seconds']:.2f}×")


def _halves(work: Path, size: int, dtype: str) -> None:
    """The tiled decode run as head and tail (the latest of each in results.jsonl): its peak is the larger one."""
    with open(work / "results.jsonl") as f:
        latest = {r["variant"]: r for r in map(json.loads, f) if r["size"] == size and r["dtype"] == dtype}
    if HALVES <= set(latest):
        h, t = latest["nodegraph-tiled-head"], latest["nodegraph-tiled-tail"]
        print(f"nodegraph-tiled in two processes: peak above weights {max(h['peak'] - h['loaded'], t['peak'] - t['loaded']) / 2**30:.2f}G "
              f"(head {(h['peak'] - h['loaded']) / 2**30:.2f}G, tail {(t['peak'] - t['loaded']) / 2**30:.2f}G), "
              f"{h['seconds'] + t['seconds']:.1f} s")


def _delta(work: Path, variant: str, size: int, dtype: str) -> str:
    """Largest difference from nodegraph's untiled image of the same size and dtype (this command's or an earlier
    one's in --work), in 1/255 steps; "-" where there is none."""
    import numpy as np

    base = work / f"nodegraph-untiled-{size}-{dtype}.npy"
    if variant == "nodegraph-untiled" or not base.exists() or not (work / f"{variant}-{size}-{dtype}.npy").exists():
        return "-"
    image, reference = np.load(work / f"{variant}-{size}-{dtype}.npy"), np.load(base)
    if np.array_equal(image, reference):
        return "identical"
    return f"{np.abs(image - reference).max() * 255:.4f}"


if __name__ == "__main__":
    main()
