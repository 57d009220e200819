"""nodegraph installed from its wheel, outside the repository: the README's main command, a ComfyUI workflow and
the server's graph list work from there (they read the shipped graphs, which must travel in the wheel).

The wheel goes into a fresh venv with `--no-deps`; the venv sees the test venv's dependencies through a `.pth`
line, which adds that folder to `sys.path` without running its `.pth` files, so the editable install of this
checkout stays invisible and `import nodegraph` can only find the wheel's copy.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def _run(args, cwd, timeout=300, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh venv holding only nodegraph's wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # pip builds in the source tree: a copy keeps build/ and *.egg-info out of the checkout
    for name in ("nodegraph", "graphs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip"]
    built = _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(source)],
                 cwd=tmp)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("nodegraph-*.whl")
    venv = tmp / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp).returncode == 0
    done = _run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "-q",
                 str(wheel)], cwd=tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    site = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp).stdout.strip())
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = _run([str(installed / "python"), "-c", "import nodegraph; print(nodegraph.__file__)"], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout
    assert not Path(where.stdout.strip()).is_relative_to(ROOT)


def test_the_readme_command_makes_an_image_outside_the_repository(installed, tmp_path):
    # The README's main command, word for word, run where no graphs/ folder exists.
    assert not (tmp_path / "graphs").exists()
    made = _run([str(installed / "nodegraph"), "run", "graphs/stable_diffusion.yaml", "--set", "model=builtin:digits",
                 "--set", "prompt=a handwritten digit 7", "--out", "out"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    from PIL import Image

    with Image.open(tmp_path / "out" / "image.png") as image:
        assert image.format == "PNG" and min(image.size) > 0


def test_a_comfyui_workflow_runs_from_the_wheel(installed, tmp_path):
    from tests.comfy.workflows import DEFAULT_API
    from tests.graphs.tiny_pipelines import save_tiny_sd
    from tests.models.single_file.ldm_layout import write_sd_file

    folder = save_tiny_sd(tmp_path / "tiny-sd1")
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    write_sd_file(folder, tmp_path / "models" / "checkpoints" / "tiny-sd1.safetensors")
    (tmp_path / "workflow.json").write_text(json.dumps(DEFAULT_API))
    made = _run([str(installed / "nodegraph"), "run", "workflow.json", "--models", "models", "--out", "out", "-q",
                 "--set", f"config={folder}"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    assert len(list((tmp_path / "out").glob("*.png"))) == 1


def test_the_server_lists_the_shipped_graphs(installed, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    server = subprocess.Popen([str(installed / "nodegraph"), "serve", "--port", str(port), "--data", "data"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        graphs = _wait_for_graphs(f"http://127.0.0.1:{port}", server)
    finally:
        server.terminate()
        server.wait(30)
    names = {entry["name"] if isinstance(entry, dict) else entry for entry in graphs}
    assert {"stable_diffusion", "sdxl", "img2img"} <= names, names


def _wait_for_graphs(url: str, server: subprocess.Popen) -> list:
    deadline = time.monotonic() + 120  # a bound for a stuck start, not a speed assumption
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited: {server.stdout.read().decode()[-3000:]}")
        try:
            return httpx.get(f"{url}/graphs", timeout=5).json()["graphs"]
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("the server did not answer within 120 s")
