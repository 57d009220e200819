"""Partial re-execution on the server, counted from the run's own events."""

import io

import numpy as np
from serve_helpers import DIGITS
from PIL import Image

BASE = {**DIGITS, "prompt": "a handwritten digit 5", "seed": 31, "scheduler": "euler_a"}


def ran(handle) -> list[str]:
    return [e["node"] for e in handle.events() if e["type"] == "node_finished" and not e["cached"]]


def image(client, handle) -> np.ndarray:
    [item] = handle.result()["image"]
    return np.asarray(Image.open(io.BytesIO(client.download(item["url"]))).convert("RGB"))


def test_reruns_execute_only_what_changed_and_identical_ones_nothing_but_still_write_a_file(client):
    first = client.submit("stable_diffusion", **BASE)
    base_image = image(client, first)

    same = client.submit("stable_diffusion", **BASE)
    same_image = image(client, same)
    assert ran(same) == []
    assert same.status()["executed"] == 0 and same.status()["cached"] == 1
    assert same.result()["image"][0]["url"] != first.result()["image"][0]["url"]
    assert np.array_equal(same_image, base_image)

    prompt = client.submit("stable_diffusion", **{**BASE, "prompt": "a handwritten digit 2"})
    image(client, prompt)
    # the text branch and below; scheduler, seed, timesteps and noise are the in-place state the loop starts from
    assert ran(prompt) == ["scheduler", "seed", "cond", "embeddings", "timesteps", "noise", "denoise", "decode"]

    seed = client.submit("stable_diffusion", **{**BASE, "seed": 32})
    seed_image = image(client, seed)
    assert ran(seed) == ["scheduler", "seed", "timesteps", "noise", "denoise", "decode"]
    assert not np.array_equal(seed_image, base_image)

    again = client.submit("stable_diffusion", **{**BASE, "seed": 32})
    assert np.array_equal(image(client, again), seed_image) and ran(again) == []
