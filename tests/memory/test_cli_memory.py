"""The memory options of the CLI: `run --max-memory`, `run -v`'s memory report, `validate --memory`."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodegraph.cli import main

SD = str(Path(__file__).parents[2] / "graphs" / "stable_diffusion.yaml")
DIGITS = ["--set", "model=builtin:digits", "--set", "steps=1", "--set", "prompt=4"]


def test_a_malformed_budget_is_a_usage_error_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", SD, *DIGITS, "--max-memory", "6 parsecs"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "`--max-memory` is '6 parsecs'" in err and "e.g. 6GB" in err and "Traceback" not in err


def test_an_impossible_budget_exits_before_loading_with_the_least_budget(capsys, monkeypatch, tmp_path):
    from nodegraph.models import loading

    monkeypatch.setattr(loading, "load_component", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["run", SD, *DIGITS, "--max-memory", "64MB", "-q", "--no-prefetch", "--out", str(tmp_path)]) == 2
    assert "Give --max-memory" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_validate_memory_prints_the_estimate_without_loading(capsys, monkeypatch):
    from nodegraph.models import loading

    monkeypatch.setattr(loading, "load_component", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["validate", SD, "--set", "model=builtin:digits", "--memory", "--dtype", "fp16"]) == 0
    out = capsys.readouterr().out
    assert "unet.unet: 1.5 MB" in out and "peak:" in out  # the digits UNet: 1.6 M weights, 2 bytes each


def test_run_verbose_reports_each_nodes_peak_and_the_estimate(capsys, tmp_path):
    assert main(["run", SD, *DIGITS, "-q", "-v", "--no-prefetch", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "memory (peak RSS):" in err and "  decode " in err and "(estimate" in err


@pytest.mark.parametrize("config, says", [("[1]", "the VAE's config is a JSON list, not an object"),
                                          ('{"block_out_channels": 128', "config.json:1:27: malformed JSON"),
                                          ('{"block_out_channels": "wide"}', "`block_out_channels` is wide")])
def test_validate_memory_refuses_a_vae_config_that_is_not_an_object_of_sizes_naming_the_file(
        capsys, tmp_path, config, says):
    import json

    import torch
    from safetensors.torch import save_file

    (tmp_path / "vae").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                           "vae": ["diffusers", "AutoencoderKL"]}))
    save_file({"decoder.conv_in.weight": torch.zeros(1)}, tmp_path / "vae" / "diffusion_pytorch_model.safetensors")
    (tmp_path / "vae" / "config.json").write_text(config)
    assert main(["validate", SD, "--set", f"model={tmp_path}", "--memory"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'vae' / 'config.json'}" in err and says in err, err
    assert "internal error" not in err and "Traceback" not in err
