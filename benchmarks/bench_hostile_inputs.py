"""Refusing hostile input is cheap: `.venv/bin/python benchmarks/bench_hostile_inputs.py [--repeat 5]`

Times `load_graph` (validation only, nothing runs) on each hostile document of tests/spec/test_hostile_input.py
and on the shipped Stable Diffusion graph (the baseline: a real graph, with its include), in one process, and
prints the median seconds, the ratio to the baseline and the peak Python memory (tracemalloc) of each. Without
the limits the alias bomb would expand to 387 million strings and 10,000 `[` would overflow the stack.

Round two (issue 32) adds the other ways input enters, each refused through the library entry point the CLI
uses: Hub revisions escaping the cache, a FormatString walking to os.environ, Range(10**9), /dev/zero and a
FIFO as a graph, a 30,000-file bundle, a 12000x12000 PNG recipe (5 GB decoded), a 100 MB safetensors header
(20 s and 1.7 GB before), a 5,000-digit number in a ComfyUI workflow.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from nodegraph import REGISTRY, load_graph
from nodegraph.spec.errors import ValidationFailed

REPO = Path(__file__).resolve().parents[1]


def billion_laughs() -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, 9):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    return text


def cases(folder: Path) -> dict[str, Path]:
    def write(name: str, text: str) -> Path:
        (folder / name).write_text(text)
        return folder / name

    huge = folder / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(20 * 2**30)
    write("c.yaml", "nodes:\n" + "".join(f"  n{i}: {{type: Int, value: 1}}\n" for i in range(50)) + "outputs: {x: $n0.value}\n")
    write("b.yaml", "nodes:\n" + "".join(f"  u{i}: {{type: ./c.yaml}}\n" for i in range(50)) + "outputs: {x: $u0.x}\n")
    return {
        "shipped stable_diffusion.yaml (baseline)": REPO / "graphs" / "stable_diffusion.yaml",
        "alias bomb (9 levels of 9)": write("bomb.yaml", billion_laughs()),
        "10,000 nested [": write("flow.yaml", "x: " + "[" * 10_000 + "]" * 10_000),
        "10,000 nested block lists": write("block.yaml", "x:\n  " + "- " * 10_000 + "1\n"),
        "sparse 20 GiB file": huge,
        "2,001 nodes": write("many.yaml", "nodes:\n" + "".join(f"  n{i}: {{type: Int, value: 1}}\n"
                                                              for i in range(2_001)) + "outputs: {x: $n0.value}\n"),
        "256 KiB of small nodes (the size limit)": write("full.yaml", "nodes:\n" + "".join(
            f"  n{i}: {{type: Int, value: 1}}\n" for i in range(8_400)) + "outputs: {x: $n0.value}\n"),
        "includes fanning out 50x50x50": write("a.yaml", "nodes:\n" + "".join(f"  u{i}: {{type: ./b.yaml}}\n"
                                                                            for i in range(50)) + "outputs: {x: $u0.x}\n"),
    }


def load(path) -> str:
    if callable(path):
        return path()
    try:
        load_graph(path)
        return "valid"
    except ValidationFailed as exc:
        return exc.codes[0]


def refused(action) -> str:
    """`action()`'s outcome: "valid", or the code / exception name of its refusal."""
    try:
        action()
        return "valid"
    except ValidationFailed as exc:
        return exc.codes[0]
    except Exception as exc:  # the readers' own refusals: InputRefused, ComfyError, CheckpointError
        return getattr(exc, "code", type(exc).__name__)


def round_two(folder: Path) -> dict:
    """Issue 32's hostile inputs, each as a function the timing loop calls."""
    import json
    import os
    import struct
    import zlib

    from nodegraph import loads_graph
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.models.weight_files import read_safetensors_header
    from nodegraph.spec.bundle import read_png_recipe, unbundle

    os.mkfifo(folder / "fifo.yaml")
    png = folder / "huge.png"  # 12000x12000 gray, all zero: 140 kB on disk

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze = zlib.compressobj(9)
    body = b"".join(squeeze.compress(b"\0" * 12001) for _ in range(12000)) + squeeze.flush()
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0))
                    + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    header = folder / "big.safetensors"
    text = b'{"__metadata__": {"x": "' + b"a" * (100 << 20) + b'"}}'
    header.write_bytes(struct.pack("<Q", len(text)) + text)
    workflow = folder / "wf.json"
    workflow.write_text(json.dumps({"3": {"class_type": "KSampler", "inputs": {}}}).replace("{}", '{"seed": '
                                                                                            + "9" * 5000 + "}"))
    bundle = {"format": 1, "main": "f0.yaml", "files": {f"f{i}.yaml": "" for i in range(30_000)}}
    return {
        "hf:// revision ..%2F.. (cache escape)": lambda: refused(
            lambda: load_graph("hf://a/b@..%2F..%2F..%2Fx/g.yaml")),
        "FormatString {x.__init__.__globals__}": lambda: refused(lambda: loads_graph(
            "nodes:\n  f: {type: FormatString, template: '{x.__init__.__globals__[os].environ}', x: 1}\n"
            "outputs: {t: $f.text}\n")),
        "Range stop 10**9": lambda: refused(lambda: loads_graph(
            "nodes:\n  r: {type: Range, stop: 1000000000}\noutputs: {v: $r.values}\n")),
        "/dev/zero as a graph": lambda: refused(lambda: load_graph("/dev/zero")),
        "a FIFO as a graph": lambda: refused(lambda: load_graph(folder / "fifo.yaml")),
        "bundle of 30,000 files": lambda: refused(lambda: unbundle(bundle, folder / "unpacked")),
        "PNG recipe 12000x12000": lambda: refused(lambda: read_png_recipe(png)),
        "safetensors 100 MB header": lambda: refused(lambda: read_safetensors_header(header, "big")),
        "ComfyUI 5,000-digit number": lambda: refused(lambda: read_workflow(workflow)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    REGISTRY.names()  # node modules imported once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, path in {**cases(Path(tmp)), **round_two(Path(tmp))}.items():
            outcome = load(path)
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                load(path)
                times.append(time.perf_counter() - start)
            tracemalloc.start()
            load(path)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append((name, outcome, statistics.median(times), peak))
    base = rows[0][2]
    print(f"{'document':42} {'result':18} {'median s':>9} {'x baseline':>10} {'peak MiB':>9}")
    for name, outcome, seconds, peak in rows:
        print(f"{name:42} {outcome:18} {seconds:9.4f} {seconds / base:10.2f} {peak / 2**20:9.1f}")


if __name__ == "__main__":
    main()
