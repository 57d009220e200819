"""Model configurations, parsed from diffusers' `config.json`.

Each dataclass lists the keys nodegraph's models use, with diffusers' defaults (a key absent from the file takes
the class default, as in diffusers). `parse_config` checks types and supported values and raises
`CheckpointError` naming the file, the key, what it holds and what nodegraph supports. Keys diffusers knows
whose non-default values need code nodegraph does not have are listed in each class's `_ONLY`; unknown keys
are ignored, as diffusers ignores them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from nodegraph.models.errors import CheckpointError

ACTIVATIONS = ("silu", "swish", "mish", "gelu", "relu")


@dataclass(frozen=True)
class UNet2DConfig:
    """Unconditional UNet (google/ddpm-*): diffusers `UNet2DModel`."""

    sample_size: int | tuple[int, ...] | None = None
    in_channels: int = 3
    out_channels: int = 3
    center_input_sample: bool = False  # maps the input from [0, 1] to [-1, 1] first
    time_embedding_type: str = "positional"
    time_embedding_dim: int | None = None  # None: 4 × block_out_channels[0]
    freq_shift: float = 0  # ddpm-cat uses 1: frequencies are exp(-ln(1e4)·i / (half - freq_shift))
    flip_sin_to_cos: bool = True  # ddpm-cat uses False: [sin, cos] order
    down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    mid_block_type: str | None = "UNetMidBlock2D"
    up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    block_out_channels: tuple[int, ...] = (224, 448, 672, 896)
    layers_per_block: int = 2
    mid_block_scale_factor: float = 1
    downsample_padding: int = 1  # 0 pads (0, 1, 0, 1) before the stride-2 conv (ddpm-cat)
    downsample_type: str = "conv"
    upsample_type: str = "conv"
    dropout: float = 0.0
    act_fn: str = "silu"
    attention_head_dim: int | None = 8  # size of each head here; None means one head as wide as the block
    norm_num_groups: int = 32
    attn_norm_num_groups: int | None = None  # None: norm_num_groups
    norm_eps: float = 1e-5
    resnet_time_scale_shift: str = "default"
    add_attention: bool = True  # False drops the mid block's attention

    _CLASS: ClassVar[str] = "UNet2DModel"
    _CHOICES: ClassVar[dict[str, tuple]] = {
        "time_embedding_type": ("positional",),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "mid_block_type": ("UNetMidBlock2D", None),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D"),
        "downsample_type": ("conv",),
        "upsample_type": ("conv",),
        "act_fn": ACTIVATIONS,
        "resnet_time_scale_shift": ("default",),
    }
    _ONLY: ClassVar[dict[str, tuple]] = {"class_embed_type": (None,), "num_class_embeds": (None,)}


@dataclass(frozen=True)
class UNet2DConditionConfig:
    """Text-conditioned UNet (Stable Diffusion 1.x and 2.x): diffusers `UNet2DConditionModel`."""

    sample_size: int | tuple[int, ...] | None = None
    in_channels: int = 4
    out_channels: int = 4
    center_input_sample: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: float = 0
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    only_cross_attention: bool | tuple[bool, ...] = False  # the first attention also reads the text
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int | tuple[int, ...] = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1
    dropout: float = 0.0
    act_fn: str = "silu"
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int | tuple[int, ...] = 1280  # width of the text embeddings (768 SD1, 1024 SD2)
    transformer_layers_per_block: int | tuple[int, ...] = 1
    # The NUMBER of heads per block, despite its name (a diffusers legacy); head size = channels // heads.
    attention_head_dim: int | tuple[int, ...] = 8
    use_linear_projection: bool = False  # SD2: proj_in/proj_out are Linear, not 1×1 conv
    # Kept for fidelity: SD2.1 sets it to avoid fp16 overflow in QKᵀ. diffusers' SDPA path ignores it, and so
    # does nodegraph: the fused SDPA kernels accumulate the softmax in float32 anyway.
    upcast_attention: bool | None = False  # SDXL's files write null
    mid_block_only_cross_attention: bool | None = None  # unused by UNetMidBlock2DCrossAttn (as in diffusers)
    time_embedding_dim: int | None = None
    # LCM-distilled UNets (Luo et al. 2023): width of the guidance-scale embedding added to the timestep features
    time_cond_proj_dim: int | None = None
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    # SDXL's micro-conditioning: "text_time" adds MLP(cat(pooled text, sinusoids of the time ids)) to the
    # timestep embedding; the time ids are sizes and crops (base) or sizes, crop and aesthetic score (refiner).
    addition_embed_type: str | None = None
    addition_time_embed_dim: int | None = None  # sinusoid width per time id (256 in SDXL)
    projection_class_embeddings_input_dim: int | None = None  # pooled width + ids × addition_time_embed_dim
    addition_embed_type_num_heads: int = 64  # read by diffusers' "text" embedding only, kept for fidelity

    _CLASS: ClassVar[str] = "UNet2DConditionModel"
    _CHOICES: ClassVar[dict[str, tuple]] = {
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "mid_block_type": ("UNetMidBlock2DCrossAttn", None),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "act_fn": ACTIVATIONS,
        "addition_embed_type": (None, "text_time"),
    }
    _ONLY: ClassVar[dict[str, tuple]] = {
        "num_attention_heads": (None,),  # diffusers itself refuses it: heads come from attention_head_dim
        "dual_cross_attention": (False,),
        "class_embed_type": (None,),
        "num_class_embeds": (None,),
        "encoder_hid_dim": (None,),
        "encoder_hid_dim_type": (None,),
        "class_embeddings_concat": (False,),
        "reverse_transformer_layers_per_block": (None,),
        "resnet_time_scale_shift": ("default",),
        "resnet_skip_time_act": (False,),
        "resnet_out_scale_factor": (1, 1.0),
        "time_embedding_type": ("positional",),
        "time_embedding_act_fn": (None,),
        "timestep_post_act": (None,),
        "attention_type": ("default",),
        "cross_attention_norm": (None,),
    }

    def per_block(self, key: str) -> tuple:
        """`key`'s value for each down block: an int or bool is repeated, a list is taken as written."""
        value = getattr(self, key)
        return value if isinstance(value, tuple) else (value,) * len(self.down_block_types)


@dataclass(frozen=True)
class AutoencoderKLConfig:
    """The KL autoencoder of Stable Diffusion: diffusers `AutoencoderKL`."""

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",)
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",)
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 1
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int | tuple[int, ...] | None = 32
    # Latents are multiplied by it before diffusion; SD1.4's file lacks the key, hence the default.
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    force_upcast: bool = True  # pipelines decode in float32 when True (the SD VAE overflows in fp16)
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    _CLASS: ClassVar[str] = "AutoencoderKL"
    _CHOICES: ClassVar[dict[str, tuple]] = {
        "down_block_types": ("DownEncoderBlock2D",),
        "up_block_types": ("UpDecoderBlock2D",),
        "act_fn": ACTIVATIONS,
    }
    _ONLY: ClassVar[dict[str, tuple]] = {}


Config = TypeVar("Config", UNet2DConfig, UNet2DConditionConfig, AutoencoderKLConfig)


def parse_config(cls: type[Config], raw: dict[str, Any], where: str = "config.json") -> Config:
    """Build `cls` from a config.json dict, checking every key nodegraph uses; `where` names the file."""

    def fail(key: str, value: Any, allowed: str) -> CheckpointError:
        return CheckpointError(f"{where}: `{key}` is {value!r}, but nodegraph supports {allowed}.")

    class_name = raw.get("_class_name", cls._CLASS)
    if class_name != cls._CLASS:
        raise fail("_class_name", class_name, repr(cls._CLASS))
    for key, allowed in cls._ONLY.items():
        if raw.get(key, allowed[0]) not in allowed:
            raise fail(key, raw[key], " or ".join(map(repr, allowed)) + " only")
    values = {}
    for f in dataclasses.fields(cls):
        value = raw.get(f.name, f.default)
        value = tuple(value) if isinstance(value, list) else value
        if not _is_type(value, f.type):
            raise fail(f.name, value, f"a value of type `{f.type}`")
        choices = cls._CHOICES.get(f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if choices is not None and item not in choices:
                raise fail(f.name, value, ("entries among " if isinstance(value, tuple) else "one of ")
                           + ", ".join(map(repr, choices)))
        values[f.name] = value
    config = cls(**values)
    getattr(config, "check", lambda fail: _check_lengths(config, fail))(fail)  # a config class may bring its own
    return config


def _check_lengths(config: Any, fail) -> None:
    n = len(config.block_out_channels)
    if n == 0:
        raise fail("block_out_channels", config.block_out_channels, "a non-empty list")
    for key in ("down_block_types", "up_block_types"):
        if len(getattr(config, key)) != n:
            raise fail(key, getattr(config, key), f"one entry per block_out_channels entry ({n})")
    if isinstance(config, UNet2DConditionConfig):
        for key in ("only_cross_attention", "layers_per_block", "cross_attention_dim",
                    "transformer_layers_per_block", "attention_head_dim"):
            if len(config.per_block(key)) != n:
                raise fail(key, getattr(config, key), f"a single value or one per block ({n})")
    if isinstance(config, UNet2DConditionConfig) and config.addition_embed_type == "text_time":
        for key in ("addition_time_embed_dim", "projection_class_embeddings_input_dim"):
            if not isinstance(getattr(config, key), int) or getattr(config, key) <= 0:
                raise fail(key, getattr(config, key), "a positive integer when `addition_embed_type` is 'text_time'")
    groups = config.norm_num_groups
    if groups <= 0 or any(c % groups for c in config.block_out_channels):
        raise fail("norm_num_groups", groups,
                   f"a divisor of every block_out_channels entry {config.block_out_channels}")


_SCALARS = {"int": int, "float": (int, float), "bool": bool, "str": str}


def _is_type(value: Any, annotation: str) -> bool:
    """Check `value` against the few annotation forms the configs use (`int | tuple[int, ...] | None`, …)."""
    for alternative in annotation.split(" | "):
        if alternative == "None":
            if value is None:
                return True
        elif alternative.startswith("tuple["):
            inner = alternative[len("tuple["):-len(", ...]")]
            if isinstance(value, tuple) and all(_is_scalar(v, inner) for v in value):
                return True
        elif _is_scalar(value, alternative):
            return True
    return False


def _is_scalar(value: Any, name: str) -> bool:
    # bool is an int subclass in Python; a JSON `true` where a count belongs is a mistake worth reporting.
    if isinstance(value, bool) and name != "bool":
        return False
    return isinstance(value, _SCALARS[name])
