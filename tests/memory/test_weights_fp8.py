"""`--weights fp8`: the run mode's choice to hold the denoiser's weights as float8, from the command line to the
loader, recorded in the PNG and re-run from it; refused before loading where torch has no float8."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodegraph.cli import main
from nodegraph.core.mode import RunMode

SD = str(Path(__file__).parents[2] / "graphs" / "stable_diffusion.yaml")
DIGITS = ["--set", "model=builtin:digits", "--set", "steps=1", "--set", "prompt=4", "-q", "--no-prefetch"]


def test_run_mode_reads_fp8_as_e4m3fn_and_refuses_other_names():
    assert RunMode(weights="fp8").weights == "fp8_e4m3fn"
    assert RunMode(weights="fp8_e5m2").weights == "fp8_e5m2"
    with pytest.raises(ValueError, match="`weights` must be one of fp8"):
        RunMode(weights="int4")


def test_fp8_weights_change_the_node_cache_signature_and_nothing_else_does():
    assert RunMode(weights="fp8").signature() != RunMode().signature()
    assert RunMode().signature() == repr(("None", "None", "False")).encode()  # runs without it: as before


@pytest.fixture
def stores(monkeypatch):
    """The `store` of every install_fp8 call: which loads held their weights as float8."""
    from nodegraph.models import fp8

    seen, real = [], fp8.install_fp8
    monkeypatch.setattr(fp8, "install_fp8", lambda *a, **k: seen.append(k.get("store")) or real(*a, **k))
    return seen


def _recipe(png: Path) -> tuple[dict, str]:
    from PIL import Image

    with Image.open(png) as image:
        return json.loads(image.text["nodegraph"]), image.text["parameters"]


def test_weights_fp8_loads_the_unet_as_fp8_and_the_png_records_it(tmp_path, stores, capsys):
    import numpy as np
    from PIL import Image

    assert main(["run", SD, *DIGITS, "--out", str(tmp_path / "plain")]) == 0
    assert stores == []  # the file's own dtype without the option
    assert main(["run", SD, *DIGITS, "--weights", "fp8", "--out", str(tmp_path / "fp8")]) == 0
    assert stores == ["fp8_e4m3fn"]  # the UNet only: the VAE and text encoder keep the run's dtype
    recipe, parameters = _recipe(tmp_path / "fp8" / "image.png")
    assert recipe["weights"] == "fp8_e4m3fn" and "nodegraph weights: fp8_e4m3fn" in parameters
    assert "weights" not in _recipe(tmp_path / "plain" / "image.png")[0]
    plain, fp8 = (np.asarray(Image.open(tmp_path / d / "image.png"), dtype=np.int16) for d in ("plain", "fp8"))
    assert np.abs(plain - fp8).max() > 0  # the fp8 weights were the ones used


def test_a_png_made_with_fp8_weights_re_runs_with_them_unless_told_file(tmp_path, stores):
    assert main(["run", SD, *DIGITS, "--weights", "fp8_e5m2", "--out", str(tmp_path / "a")]) == 0
    assert main(["run", str(tmp_path / "a" / "image.png"), "-q", "--no-prefetch", "--out", str(tmp_path / "b")]) == 0
    assert stores == ["fp8_e5m2", "fp8_e5m2"]
    assert (tmp_path / "a" / "image.png").read_bytes() == (tmp_path / "b" / "image.png").read_bytes()
    assert main(["run", str(tmp_path / "a" / "image.png"), "-q", "--no-prefetch", "--weights", "file",
                 "--out", str(tmp_path / "c")]) == 0
    assert stores == ["fp8_e5m2", "fp8_e5m2"] and "weights" not in _recipe(tmp_path / "c" / "image.png")[0]


def test_fp8_on_a_torch_without_float8_exits_before_loading(tmp_path, monkeypatch, capsys):
    import torch

    from nodegraph.models import loading

    monkeypatch.delattr(torch, "float8_e4m3fn")
    monkeypatch.setattr(loading, "load_component", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["run", SD, *DIGITS, "--weights", "fp8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "`--weights fp8_e4m3fn`" in err and "no torch.float8_e4m3fn" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_an_unknown_weights_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", SD, *DIGITS, "--weights", "int4"])
    assert exit_.value.code == 2 and "--weights" in capsys.readouterr().err
