"""nodegraph's CLIP tokenizer (`tokenizers` only) against transformers' CLIPTokenizer, which it replaced.

    .venv/bin/python benchmarks/bench_tokenizer.py [--repeats 5] [--threads 2]

Two measurements, each in fresh processes, the two tokenizers alternated (who goes first alternates too):
1. tokenizer cost: in a process that has already imported torch and nodegraph.models (as every run has), the
   seconds to import the tokenizer class, read the builtin CLIP tokenizer folder and tokenize one prompt;
2. whole process: `nodegraph run graphs/stable_diffusion.yaml` on `builtin:digits` (2 steps, 32²), start to written
   PNG, wall and CPU (the child's user + system seconds from os.wait4). "transformers" is the same run with
   `CLIPTokenizer.from_folder` replaced by transformers' `CLIPTokenizer.from_pretrained`, which is what
   nodegraph called before; both give the same ids (tests/models/test_clip_tokenizer.py).
   `--embedding` adds the same run with a textual-inversion embedding, where the run before also imported
   transformers' `PreTrainedModel` (adapters/patch.py, now skipped unless transformers' modeling code is loaded).
Medians with their spread (min–max). The machine is shared: trust CPU seconds and large effects, and quote the
load average printed with the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "nodegraph" / "builtin" / "clip_tokenizer"
PROMPT = "a photograph of an astronaut riding a horse"
# replaces nodegraph's tokenizer with transformers', as nodegraph loaded it before (`from_pretrained(folder)`)
USE_TRANSFORMERS = """
import nodegraph.models.clip_tokenizer as ours
def _from_transformers(folder, **options):
    from transformers import CLIPTokenizer
    return CLIPTokenizer.from_pretrained(folder, **options)
ours.CLIPTokenizer.from_folder = staticmethod(_from_transformers)
"""
# what a LoRA or embedding run also imported before: adapters/patch.py imported transformers' PreTrainedModel
OLD_OUTPUT_HOOKS = """
from transformers import PreTrainedModel
"""
TOKENIZE = """
import json, sys, time, torch, nodegraph.models  # what every run has imported before it reads a tokenizer
wall, cpu = time.perf_counter(), time.process_time()
if sys.argv[1] == "transformers":
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(sys.argv[2])
else:
    from nodegraph.models.clip_tokenizer import CLIPTokenizer
    tok = CLIPTokenizer.from_folder(sys.argv[2])
ids = tok([sys.argv[3]], padding="max_length", max_length=77, truncation=True).input_ids
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "ids": ids[0][:12]}))
"""
RUN = """
import sys
if sys.argv[1] == "transformers":
    exec(sys.argv[2])
from nodegraph.cli import main
sys.exit(main(sys.argv[3:]))
"""
SIDES = ("nodegraph", "transformers")


def child_env(threads: int) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads))


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout) of one fresh process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its CPU seconds
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            raise SystemExit(f"{' '.join(argv[:4])} failed:\n{err.read().decode()[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, out.read().decode()


def alternate(make_argv, repeats: int, env, cwd) -> dict[str, dict[str, list[float]]]:
    results = {side: {"wall": [], "cpu": []} for side in SIDES}
    for r in range(repeats):
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            wall, cpu, out = timed(make_argv(side), env, cwd)
            stats = json.loads(out.strip().splitlines()[-1]) if out.strip().startswith("{\"wall") else None
            results[side]["wall"].append(stats["wall"] if stats else wall)
            results[side]["cpu"].append(stats["cpu"] if stats else cpu)
    return results


def table(title: str, results) -> None:
    print(f"\n{title}   (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print("| tokenizer | wall s median (min–max) | CPU s median (min–max) |\n|---|---|---|")
    for side in SIDES:
        cells = [f"{statistics.median(v):.3f} ({min(v):.3f}–{max(v):.3f})" for v in results[side].values()]
        print(f"| {side} | {' | '.join(cells)} |")
    ratio = {k: statistics.median(results["nodegraph"][k]) / statistics.median(results["transformers"][k])
             for k in ("wall", "cpu")}
    print(f"nodegraph / transformers: wall {ratio['wall']:.2f}x, CPU {ratio['cpu']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-run", action="store_true", help="only the tokenizer-cost measurement")
    parser.add_argument("--embedding", action="store_true",
                        help="also a run with a textual-inversion embedding (before: + the old PreTrainedModel import)")
    args = parser.parse_args()
    env = child_env(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        same = [json.loads(timed([sys.executable, "-c", TOKENIZE, side, str(TOKENIZER), PROMPT], env, tmp)[2]
                           .strip().splitlines()[-1])["ids"] for side in SIDES]
        assert same[0] == same[1], f"the two tokenizers disagree: {same}"
        table("Import + load + tokenize one prompt, after `import torch, nodegraph.models` (in-process timers)",
              alternate(lambda side: [sys.executable, "-c", TOKENIZE, side, str(TOKENIZER), PROMPT],
                        args.repeats, env, tmp))
        if args.skip_run:
            return
        graph = REPO / "graphs" / "stable_diffusion.yaml"
        run = ["run", str(graph), "--set", "model=builtin:digits", "--set", "steps=2", "--set", "height=32",
               "--set", "width=32", "--out", tmp, "-q"]
        table("Whole process: nodegraph run stable_diffusion.yaml, builtin:digits, 2 steps, 32² (wall; child CPU)",
              alternate(lambda side: [sys.executable, "-c", RUN, side, USE_TRANSFORMERS, *run],
                        args.repeats, env, tmp))
        if args.embedding:
            import torch
            from safetensors.torch import save_file

            embedding = Path(tmp) / "zqx-emb.safetensors"  # 2 vectors for the digits model's 64-wide CLIP
            save_file({"emb_params": torch.randn(2, 64, generator=torch.Generator().manual_seed(0))}, embedding)
            run += ["--set", f"embedding={embedding}", "--set", "prompt=a photo of zqx-emb"]
            table("Whole process with a textual-inversion embedding (transformers: + the old PreTrainedModel import)",
                  alternate(lambda side: [sys.executable, "-c", RUN, side, USE_TRANSFORMERS + OLD_OUTPUT_HOOKS, *run],
                            args.repeats, env, tmp))

if __name__ == "__main__":
    main()
