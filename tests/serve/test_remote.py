"""`nodegraph run --server URL`: the CLI, run by a server."""

import json
import subprocess
import sys

from serve_helpers import ROOT, TOKEN, free_port
from PIL import Image


def cli(*args):
    return subprocess.run([sys.executable, "-m", "nodegraph.cli", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_run_on_a_server_writes_the_png_into_out_without_overwriting(server, tmp_path):
    args = ["--server", server.url, "--token", TOKEN, "graphs/stable_diffusion.yaml", "--set", "model=builtin:digits",
            "--set", "steps=2", "--set", "prompt=a handwritten digit 8", "--out", str(tmp_path), "-q"]
    first, second = cli(*args), cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"image": [str(tmp_path / "image.png")]}
    assert json.loads(second.stdout) == {"image": [str(tmp_path / "image-2.png")]}
    recipe = json.loads(Image.open(tmp_path / "image.png").text["nodegraph"])
    assert recipe["inputs"]["prompt"] == "a handwritten digit 8" and recipe["inputs"]["steps"] == 2
    by_name = cli("--server", server.url, "--token", TOKEN, "sleep", "--set", "value=4", "--out", str(tmp_path))
    assert by_name.returncode == 0 and json.loads(by_name.stdout) == {"value": 4.0}


def test_bad_values_and_unreachable_servers_are_clear_messages(server, tmp_path):
    bad = cli("--server", server.url, "--token", TOKEN, "graphs/stable_diffusion.yaml", "--set", "model=/etc",
              "--out", str(tmp_path))
    assert bad.returncode == 2 and "model_not_allowed" in bad.stderr and "Traceback" not in bad.stderr
    gone = cli("--server", f"http://127.0.0.1:{free_port()}", "sleep", "--out", str(tmp_path))
    assert gone.returncode == 1 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr
    assert list(tmp_path.iterdir()) == []
