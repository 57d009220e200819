"""The training data of the built-in digits model: scikit-learn's bundled handwritten digits.

`load_digits` ships inside scikit-learn (no download): 1,797 greyscale 8×8 images with 17 grey levels.
They are upscaled to 32×32 so the VAE has something to compress 4× per side into an 8×8 latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Several phrasings per digit so the text encoder learns the digit, not one sentence; `{d}` is the numeral
# and `{w}` the English word.
PROMPT_TEMPLATES = (
    "a handwritten digit {d}",
    "the number {w}",
    "digit {d}",
    "a {d}",
    "the digit {w}",
    "a handwritten {w}",
    "number {d}",
    "a drawing of the number {d}",
    "{w}",
    "{d}",
)

# Share of prompts replaced by the empty string, so the model also learns the unconditional prediction that
# classifier-free guidance subtracts.
EMPTY_PROMPT_RATE = 0.1


def load_digit_images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (N, 3, size, size) float32 in [-1, 1] and their labels (N,) int64."""
    from sklearn.datasets import load_digits  # a training-only dependency

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (N, 8, 8) in [0, 1]
    x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)  # (N, 1, S, S)
    x = (x.clamp(0, 1) * 2 - 1).repeat(1, 3, 1, 1)  # grey to RGB, [-1, 1]
    return x, torch.tensor(digits.target, dtype=torch.int64)
