"""An independent judge for generated digits: an SVC trained on scikit-learn's real digits, never on ours."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Judge:
    model: object
    held_out_accuracy: float

    def classify(self, images: torch.Tensor) -> list[int]:
        """Images (B, 3, H, W) in [0, 1] → predicted digits, after the same 8×8, 0–16 encoding as the data."""
        grey = images.float().mean(dim=1, keepdim=True)  # (B, 1, H, W)
        small = F.interpolate(grey, size=(8, 8), mode="area")[:, 0] * 16.0  # (B, 8, 8) on the data's scale
        return [int(p) for p in self.model.predict(small.reshape(len(images), 64).numpy())]


def train_judge(seed: int = 0) -> Judge:
    """SVC(gamma=0.001, C=10) on 75% of the real digits, scored on the other 25%."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.25,
                                                        random_state=seed, stratify=digits.target)
    model = SVC(gamma=0.001, C=10).fit(x_train, y_train)
    return Judge(model, float((model.predict(x_test) == y_test).mean()))
