"""Bad input for the few-step graphs and the step cache: located, saying what is allowed, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.graphs.tiny_pipelines import REPO

GRAPHS = REPO / "graphs"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nodegraph.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


def test_cache_interval_and_method_out_of_range_are_located_before_anything_runs():
    done = cli("validate", GRAPHS / "stable_diffusion.yaml", "--set", "cache_interval=0", "--set", "cache=magcache")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    err = done.stderr + done.stdout
    assert "stable_diffusion.yaml:" in err and "cache_interval" in err and ">= 1" in err.replace("≥", ">=")
    assert "'magcache' is not one of the allowed values 'none', 'deepcache'" in err


def test_lcm_steps_and_tcd_gamma_out_of_range_are_located():
    done = cli("validate", GRAPHS / "lcm.yaml", "--set", "steps=60", "--set", "eta=1.5")
    err = done.stderr + done.stdout
    assert done.returncode != 0 and "Traceback" not in err
    assert "lcm.yaml:" in err and "steps" in err and "eta" in err


def test_deepcache_on_a_model_it_does_not_support_names_what_it_supports(tiny_ddpm_graph):
    graph, model = tiny_ddpm_graph
    done = cli("run", graph, "--set", f"model={model}", "--set", "steps=2", "--out", graph.parent / "out", "-q")
    err = done.stderr
    assert done.returncode != 0 and "Traceback" not in err
    assert "predict" in err and "DeepCache supports text-conditioned UNets (UNet2DConditionModel" in err
    assert "this model is a UNet2DModel" in err and "`cache: none`" in err


@pytest.fixture(scope="module")
def tiny_ddpm_graph(tmp_path_factory):
    """graphs/ddpm.yaml on the tiny DDPM checkpoint, its UNetStep asked for DeepCache."""
    from tests.graphs.tiny_pipelines import save_tiny_ddpm

    root = tmp_path_factory.mktemp("ddpm-cache")
    model = save_tiny_ddpm(root / "tiny-ddpm")
    text = (GRAPHS / "ddpm.yaml").read_text()
    text = text.replace("        latents: $state.sample\n        t: $loop.item\n",
                        "        latents: $state.sample\n        t: $loop.item\n        cache: deepcache\n", 1)
    assert "cache: deepcache" in text
    graph = root / "ddpm_cached.yaml"
    graph.write_text(text)
    return graph, model


def test_transformer_cache_choice_and_interval_out_of_range_are_located_before_anything_runs():
    done = cli("validate", GRAPHS / "z_image.yaml", "--set", "cache=teacache", "--set", "cache_interval=99")
    err = done.stderr + done.stdout
    assert done.returncode != 0 and "Traceback" not in err
    assert "z_image.yaml:" in err and "cache_interval" in err and "above the maximum 50" in err
    assert "'teacache' is not one of the allowed values 'none', 'first_block', 'taylorseer', 'mag', 'faster', 'pab'" in err


def test_mag_cache_with_unreadable_ratios_stops_the_run_saying_how_to_calibrate(smooth_z_image, tmp_path):
    done = cli("run", GRAPHS / "z_image.yaml", "--set", f"model={smooth_z_image}", "--set", "cache=mag",
               "--set", "cache_mag_ratios=1.0,fast", "--set", "steps=2", "--set", "width=32", "--set", "height=32",
               "--out", tmp_path, "-q")
    err = done.stderr
    assert done.returncode != 0 and "Traceback" not in err
    assert "node `cached`" in err and "`mag_ratios` must be the model's magnitude ratios, comma-separated numbers" in err
    assert "'1.0,fast'" in err and "--set cache_mag_ratios=calibrate" in err
