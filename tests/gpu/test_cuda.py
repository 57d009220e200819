"""What only a CUDA device can show. Marked `gpu`: where torch sees no CUDA device, tests/conftest.py skips them
with that reason (reported as skipped, never as passed); `pytest -m gpu` runs them alone on a GPU machine."""

import pathlib

import pytest

pytestmark = pytest.mark.gpu

SD = pathlib.Path(__file__).parents[2] / "graphs" / "stable_diffusion.yaml"
DIGITS = dict(model="builtin:digits", prompt="a handwritten digit 4", steps=3, seed=11)


def image(device: str, **changes):
    from nodegraph import run_graph

    return run_graph(SD, {**DIGITS, **changes}, device=device)["image"].float().cpu()


def test_a_seed_makes_the_same_image_on_cuda_as_on_the_cpu():
    """Noise comes from a CPU generator moved to the device, so a seed means one image everywhere; what is left
    is the kernels' rounding (TF32 convolutions included), far below what another seed changes."""
    import torch

    cpu, cuda, other_seed = image("cpu"), image("cuda"), image("cuda", seed=12)
    assert cuda.shape == cpu.shape
    same = (cuda - cpu).abs().mean().item()
    apart = (other_seed - cpu).abs().mean().item()
    assert apart > 0.02, "the fixture must tell seeds apart"
    assert same < apart / 20, (same, apart)
    assert torch.equal(image("cuda"), cuda)  # and a device repeats itself


def test_without_a_device_a_run_and_the_servers_model_budget_use_the_gpu():
    import torch

    from nodegraph.core.context import RunContext
    from nodegraph.exec.lru_caches import default_model_budget

    assert RunContext().device.type == "cuda"
    assert default_model_budget() == torch.cuda.get_device_properties(0).total_memory // 2
