"""The flow families' latent nodes refuse a side that is not a whole number of latent tokens, naming the side and
the nearest size below (the VAE's factor can make the step other than the 16 the ports check)."""

import pytest

from nodegraph.nodes._diffusion import check_multiple


def test_a_side_off_the_token_grid_is_named_with_the_size_to_use():
    check_multiple(32, height=64, width=96)
    with pytest.raises(ValueError, match=r"`width` 80 must be a multiple of 32 for this model; try 64"):
        check_multiple(32, height=64, width=80)
    with pytest.raises(ValueError, match=r"`height` 16 must be a multiple of 32 .* try 32"):
        check_multiple(32, height=16, width=64)
