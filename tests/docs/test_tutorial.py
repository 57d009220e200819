"""Every command in docs/tutorial.md runs as written and does what the text says.

The DDPM commands name the hub model `google/ddpm-cat-256`; here the hub is a hand-made cache (HF_HUB_OFFLINE=1)
holding a tiny random DDPM in that repo's flat layout, so the commands run unchanged without a network.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial.md"
sys.path.insert(0, str(REPO / "tests" / "graphs"))


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TUTORIAL.read_text(), flags=re.S)


def fake_hub_cache(root: Path) -> Path:
    """`google/ddpm-cat-256` in a hub cache: refs/main → a snapshot with the repo's flat file layout."""
    from tiny_pipelines import save_tiny_ddpm

    saved = save_tiny_ddpm(root / "saved")
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = root / "hub" / "models--google--ddpm-cat-256" / "snapshots" / sha
    snapshot.mkdir(parents=True)
    shutil.copy(saved / "model_index.json", snapshot)
    shutil.copy(saved / "scheduler" / "scheduler_config.json", snapshot)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        shutil.copy(saved / "unet" / name, snapshot)
    (root / "hub" / "models--google--ddpm-cat-256" / "refs").mkdir()
    (root / "hub" / "models--google--ddpm-cat-256" / "refs" / "main").write_text(sha)
    return root / "hub"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("tutorial")
    (work / "graphs").symlink_to(REPO / "graphs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(fake_hub_cache(work / "cache")),
           "OMP_NUM_THREADS": "1"}
    return work, env


def test_every_shell_command_in_the_tutorial_runs(workdir):
    work, env = workdir
    commands = [line for block in blocks("sh") for line in block.strip().splitlines()]
    assert len(commands) >= 8
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == ".venv/bin/nodegraph", command
        result = subprocess.run([sys.executable, "-m", "nodegraph.cli", *argv[1:]], cwd=work, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
    # What the text promises about the files those commands wrote:
    for image in ("ddpm/image.png", "sd/image.png", "sd-again/image.png", "euler-a/image.png", "img2img/image.png"):
        assert (work / "out" / image).is_file(), image
    assert sorted(p.name for p in (work / "out" / "batch").iterdir()) == [f"image_{i}.png" for i in range(4)]
    first, again = (np.asarray(PIL.Image.open(work / "out" / p)) for p in ("sd/image.png", "sd-again/image.png"))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, np.asarray(PIL.Image.open(work / "out" / "euler-a" / "image.png")))


def test_the_python_example_runs(workdir, monkeypatch):
    work, _ = workdir
    monkeypatch.chdir(work)
    (code,) = blocks("python")[1:]  # the first python block quotes the seed's loop, not nodegraph
    printed = []
    exec(compile(code, str(TUTORIAL), "exec"), {"print": lambda *a: printed.append(a)})
    assert str(printed[0][0]) == "torch.Size([1, 3, 32, 32])"
