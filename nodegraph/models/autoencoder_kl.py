"""The KL-regularised autoencoder of latent diffusion (Rombach et al., 2022), matching diffusers' `AutoencoderKL`.

Images (B, 3, H, W) in [-1, 1] ↔ latents (B, latent_channels, H/2^(n-1), W/2^(n-1)) for n blocks. Latents are
multiplied by `config.scaling_factor` before diffusion and divided by it before decoding (the caller's job).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nodegraph.models.attention import SpatialSelfAttention
from nodegraph.models.base import Conv2d, GroupNorm, Model
from nodegraph.models.config import AutoencoderKLConfig, parse_config
from nodegraph.models.embeddings import activation
from nodegraph.models.unet_blocks import DownBlock, MidBlock, ResnetArgs, UpBlock

EPS = 1e-6  # diffusers hard-codes this for every VAE norm, whatever the config


class DiagonalGaussian:
    """The encoder's posterior N(mean, std²) per latent element; log-variance clamped to [-30, 20]."""

    def __init__(self, moments: torch.Tensor):
        self.mean, self.logvar = moments.chunk(2, dim=1)  # (B, C, h, w) each
        self.logvar = self.logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std·ε. ε is drawn on the generator's device (a CPU generator gives the same latents on every
        machine) in the posterior's dtype, then moved, as diffusers' `randn_tensor` does."""
        noise_device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, device=noise_device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean


class Encoder(nn.Module):
    def __init__(self, c: AutoencoderKLConfig):
        super().__init__()
        ch = c.block_out_channels
        resnet = ResnetArgs(None, c.norm_num_groups, EPS, c.act_fn)
        self.conv_in = Conv2d(c.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], c.layers_per_block, resnet,
                      downsample_padding=0 if i < len(ch) - 1 else None)
            for i in range(len(ch))
        )
        self.mid_block = _mid_block(c, resnet)
        self.conv_norm_out = GroupNorm(c.norm_num_groups, ch[-1], eps=EPS)
        self.conv_act = activation(c.act_fn)
        self.conv_out = Conv2d(ch[-1], 2 * c.latent_channels, 3, padding=1)  # mean and log-variance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x, _ = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, c: AutoencoderKLConfig):
        super().__init__()
        rev = c.block_out_channels[::-1]
        resnet = ResnetArgs(None, c.norm_num_groups, EPS, c.act_fn)
        self.conv_in = Conv2d(c.latent_channels, rev[0], 3, padding=1)
        self.mid_block = _mid_block(c, resnet)
        self.up_blocks = nn.ModuleList(
            UpBlock(rev[max(i - 1, 0)], rev[i], [0] * (c.layers_per_block + 1), resnet, add_upsample=i < len(rev) - 1)
            for i in range(len(rev))
        )
        self.conv_norm_out = GroupNorm(c.norm_num_groups, rev[-1], eps=EPS)
        self.conv_act = activation(c.act_fn)
        self.conv_out = Conv2d(rev[-1], c.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


def _mid_block(c: AutoencoderKLConfig, resnet: ResnetArgs) -> MidBlock:
    # one attention head as wide as the block
    make = (lambda channels: SpatialSelfAttention(channels, channels, c.norm_num_groups, EPS)) \
        if c.mid_block_add_attention else None
    return MidBlock(c.block_out_channels[-1], resnet, make)


class AutoencoderKL(Model):
    """`encode(x) -> DiagonalGaussian`, `decode(z) -> image`; no scaling by `scaling_factor` inside."""

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        self.config = c = config
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quant_conv = Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1) if c.use_quant_conv else None
        self.post_quant_conv = Conv2d(c.latent_channels, c.latent_channels, 1) if c.use_post_quant_conv else None

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> "AutoencoderKL":
        return cls(parse_config(AutoencoderKLConfig, raw))

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        moments = self.encoder(x)  # (B, 2·latent_channels, h, w)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return DiagonalGaussian(moments)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Round trip through a sampled latent (diffusers' `forward` with `sample_posterior=True`)."""
        return self.decode(self.encode(x).sample(generator))
