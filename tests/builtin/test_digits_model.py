"""The shipped `builtin:digits` model draws the digit it is asked for, judged by an independent classifier."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from digit_judge import train_judge  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
IMAGES_PER_DIGIT = 10


@pytest.fixture(scope="module")
def judge():
    return train_judge()


def test_judge_is_accurate_on_held_out_real_digits(judge):
    print(f"\njudge held-out accuracy on real digits: {judge.held_out_accuracy:.3f}")
    assert judge.held_out_accuracy >= 0.97


def test_generated_digits_are_recognised_as_the_prompted_digit(judge):
    from nodegraph import run_graph

    per_digit = {}
    for digit in range(10):
        out = run_graph(SD_GRAPH, inputs={"model": "builtin:digits", "prompt": f"a handwritten digit {digit}",
                                          "seed": 1000 + digit, "batch_size": IMAGES_PER_DIGIT}, device="cpu")
        images = out["image"]
        assert images.shape == (IMAGES_PER_DIGIT, 3, 32, 32)
        predictions = judge.classify(images)
        per_digit[digit] = sum(p == digit for p in predictions) / IMAGES_PER_DIGIT
    overall = sum(per_digit.values()) / 10
    print("\nper-digit accuracy:", {d: round(a, 2) for d, a in per_digit.items()}, f"overall {overall:.3f}")
    assert overall >= 0.98, per_digit
    assert min(per_digit.values()) >= 0.90, per_digit


def test_the_prompt_decides_which_digit_is_drawn(judge):
    """The same seed with two prompts gives two different digits, each the one asked for."""
    from nodegraph import run_graph

    images = [run_graph(SD_GRAPH, inputs={"model": "builtin:digits", "prompt": p, "seed": 5}, device="cpu")["image"]
              for p in ("the number three", "the number eight")]
    assert not torch.equal(images[0], images[1])
    assert judge.classify(torch.cat(images)) == [3, 8]


@pytest.mark.parametrize("scheduler", ["pndm", "ddim", "unipc", "euler", "euler_a", "dpmpp_2m", "lms"])
def test_every_sampler_draws_the_prompted_digits(judge, scheduler):
    from nodegraph import run_graph

    wrong = []
    for digit in range(10):
        out = run_graph(SD_GRAPH, inputs={"model": "builtin:digits", "prompt": f"the number {digit}",
                                          "seed": 7000 + digit, "batch_size": 2, "scheduler": scheduler}, device="cpu")
        wrong += [(digit, p) for p in judge.classify(out["image"]) if p != digit]
    assert len(wrong) <= 1, wrong  # at most 1 of 20


def test_diffusers_draws_the_same_image_from_the_shipped_folder():
    """The shipped folder is an ordinary diffusers pipeline, and our graph matches it pixel for pixel."""
    import diffusers

    from nodegraph import run_graph
    from nodegraph.models.sources import resolve_source

    folder = resolve_source("builtin:digits").root
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a handwritten digit 2", num_inference_steps=25, guidance_scale=7.5,
                  generator=torch.Generator("cpu").manual_seed(3), output_type="pt").images  # (1, 3, 32, 32)
    ours = run_graph(SD_GRAPH, inputs={"model": "builtin:digits", "prompt": "a handwritten digit 2", "seed": 3},
                     device="cpu")["image"]
    diff = ((ours * 255).round() - (theirs * 255).round()).abs().max().item()
    assert diff <= 1, diff
