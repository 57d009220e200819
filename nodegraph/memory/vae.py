"""When the VAE nodes tile (their `tiling` input): "on", "off", or "auto" = only when the untiled pass's
activations would not fit what the run may still use (its `max_memory` budget, else the free memory)."""

from __future__ import annotations

from typing import Any

from nodegraph.memory.usage import headroom


def should_tile(choice: str, vae: Any, latent_shape: tuple[int, ...], device: Any, budget: int | None,
                tile: int) -> bool:
    if choice != "auto":
        return choice == "on"
    from nodegraph.models.vae_tiling import decode_activation_bytes

    return decode_activation_bytes(vae, latent_shape, tiled=False, tile=tile) > headroom(device, budget)
