"""The four front-ends run through one runner (nodegraph/runner): ComfyUI's default workflow (2 steps, tiny SD1.x)
run by the ComfyUI command, and the same workflow imported as a graph and run by the CLI, a `nodegraph serve`
server (through `nodegraph run --server`) and a batch, make the same image; the three nodegraph PNGs are the
same bytes (pixels, `parameters` and the recipe), the ComfyUI one the same pixels under ComfyUI's own chunks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import PIL.Image
from workflows import api

from nodegraph.cli import main

TOKEN = "four-front-ends"


def only_png(folder: Path) -> Path:
    (png,) = sorted(Path(folder).rglob("*.png"))
    return png


def pixels(png: Path) -> np.ndarray:
    with PIL.Image.open(png) as img:
        return np.asarray(img.convert("RGB"))


def start_server(data: Path, *models: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "nodegraph.cli", "serve", "--port", str(port), "--data", str(data),
            "--token", TOKEN, *(x for m in models for x in ("--models", str(m)))]
    import torch

    # the thread count this process computes with: another one may round a pixel differently
    threads = str(torch.get_num_threads())
    proc = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": threads}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def test_cli_comfyui_command_server_and_batch_make_the_same_png(tmp_path, models_dir, sd1_folder):
    from nodegraph.batch import run_batch
    from nodegraph.exec.png_metadata import read_recipe

    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(api(n3_steps=2)))
    config = ["--set", f"config={sd1_folder}"]
    assert main(["run", str(workflow), "--models", str(models_dir), "--out", str(tmp_path / "comfy"), "-q",
                 "--no-prefetch", *config]) == 0
    graph = tmp_path / "graph" / "workflow.yaml"
    assert main(["import-comfy", str(workflow), "--models", str(models_dir), "-o", str(graph)]) == 0

    assert main(["run", str(graph), "--out", str(tmp_path / "cli"), "-q", "--no-prefetch", *config]) == 0
    cli_png = only_png(tmp_path / "cli")
    values = read_recipe(cli_png)["inputs"]  # every input value the CLI's run used, in the graph's order
    last = list(values)[-1]
    run_batch(graph, {last: [values[last]]}, sets={k: v for k, v in values.items() if k != last},
              out=tmp_path / "batch")
    proc, url = start_server(tmp_path / "data", models_dir, sd1_folder.parent)
    try:
        assert main(["run", "--server", url, "--token", TOKEN, str(graph), "--out", str(tmp_path / "server"), "-q",
                     *config]) == 0
    finally:
        proc.terminate()
        proc.wait(30)

    made = {name: only_png(tmp_path / name).read_bytes() for name in ("cli", "batch", "server")}
    assert made["batch"] == made["cli"] and made["server"] == made["cli"]
    assert np.array_equal(pixels(only_png(tmp_path / "comfy")), pixels(cli_png))
    with PIL.Image.open(only_png(tmp_path / "comfy")) as img:
        assert set(img.text) == {"prompt"}  # ComfyUI's own chunk (an API workflow has no editor `workflow`)
