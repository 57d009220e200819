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
