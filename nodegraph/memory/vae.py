"""How the VAE nodes run their pass (their `tiling` input): "on" = the exact tiled pass, "off" = untiled, "auto" =
untiled when its activations fit what the run may still use (its `max_memory` budget, else the free memory),
else tiled. A decode that runs untiled takes the lean pass (models/vae_lean.py: the same bits) when the plain
one would not fit, so the tiled decode (which rounds differently in bf16) is the last resort."""

from __future__ import annotations

from typing import Any, Literal

from nodegraph.memory.usage import headroom

Pass = Literal["plain", "lean", "tiled"]


def should_tile(choice: str, vae: Any, latent_shape: tuple[int, ...], device: Any, budget: int | None,
                tile: int) -> bool:
    if choice != "auto":
        return choice == "on"
    from nodegraph.models.vae_tiling import decode_activation_bytes

    return decode_activation_bytes(vae, latent_shape, tiled=False, tile=tile) > headroom(device, budget)


def decode_pass(choice: str, vae: Any, latent_shape: tuple[int, ...], device: Any, budget: int | None,
                tile: int) -> Pass:
    """plain if its activations fit, else lean if they fit ("off": lean whether or not), else tiled ("on":
    tiled always)."""
    if choice == "on":
        return "tiled"
    from nodegraph.models.vae_tiling import decode_activation_bytes

    room = headroom(device, budget)
    if decode_activation_bytes(vae, latent_shape, tiled=False, tile=tile) <= room:
        return "plain"
    if choice == "off" or decode_activation_bytes(vae, latent_shape, tiled=False, tile=tile, lean=True) <= room:
        return "lean"
    return "tiled"
