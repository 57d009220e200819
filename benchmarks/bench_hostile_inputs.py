"""Refusing hostile graphs is cheap: `.venv/bin/python benchmarks/bench_hostile_inputs.py [--repeat 5]`

Times `load_graph` (validation only, nothing runs) on each hostile document of tests/spec/test_hostile_input.py
and on the shipped Stable Diffusion graph (the baseline: a real graph, with its include), in one process, and
prints the median seconds, the ratio to the baseline and the peak Python memory (tracemalloc) of each. Without
the limits the alias bomb would expand to 387 million strings and 10,000 `[` would overflow the stack.
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


def load(path: Path) -> str:
    try:
        load_graph(path)
        return "valid"
    except ValidationFailed as exc:
        return exc.codes[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    REGISTRY.names()  # node modules imported once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, path in cases(Path(tmp)).items():
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
