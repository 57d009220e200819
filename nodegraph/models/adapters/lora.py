"""LoRA files (kohya/A1111 and diffusers/peft `.safetensors`) → one delta form → a patched copy of a model.

Both formats hold, per adapted layer, a down projection A (r, in[, kh, kw]) and an up projection B (out, r[, 1, 1])
and a scale `alpha / r` (kohya stores `alpha` per layer; peft files store it in their `lora_adapter_metadata`
or not at all, which means alpha = r, scale 1: diffusers' reading, `lora_conversion_utils.py`,
`utils/peft_utils.py:get_peft_kwargs`). Applied with strength s the layer computes, as peft's LoRA layers do,

    y = base(x) + B(A(x)) · s · alpha / r                (A with the base conv's kernel, stride and padding)

either unfused (a wrapper layer: exactly that arithmetic) or fused into a new weight
W' = W + s · alpha / r · (B ⊗ A) (diffusers' `fuse_lora`; equal up to float rounding, and no cost per step).
The model given is never modified: `patch.replace_modules` builds a copy-on-write tree.

Kohya names are module paths with "." written "_" (`lora_unet_down_blocks_0_attentions_0_proj_in`,
`lora_te_text_model_encoder_layers_0_mlp_fc1`): they are matched by writing each layer's path the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.adapters.patch import replace_modules, with_weight
from nodegraph.models.adapters.streamed_lora import fuse_on_call, streams
from nodegraph.models.errors import CheckpointError
from nodegraph.models.weight_files import read_safetensors_header

KOHYA_PARTS = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
               "lora_te2_": "text_encoder_2"}
KOHYA_SUFFIXES = {".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha"}
PEFT_PARTS = ("unet", "transformer", "text_encoder", "text_encoder_2")
PEFT_SUFFIXES = {".lora_A.weight": "down", ".lora_B.weight": "up"}
SHOWN = 3  # keys quoted in an error


@dataclass
class LoraLayer:
    down: torch.Tensor  # (r, in) or (r, in, kh, kw)
    up: torch.Tensor  # (out, r) or (out, r, 1, 1)
    alpha: float | None = None  # None: alpha = r

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.down.shape[0]


@dataclass
class LoraFile:
    path: str
    style: str  # "kohya" (names with "_") or "peft" (module paths)
    parts: dict[str, dict[str, LoraLayer]]  # "unet" / "text_encoder" / "text_encoder_2" → layer name → layer

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def read_lora(path: str) -> LoraFile:
    """Read a LoRA `.safetensors` file; CheckpointError says what is wrong with any other file."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise CheckpointError(f"LoRA file {path!r} does not exist; give the path of a .safetensors LoRA")
    if not path.endswith(".safetensors"):
        raise CheckpointError(f"{path}: LoRA files are read as .safetensors only (pickled .pt/.ckpt files can run "
                              f"code when loaded); convert it to .safetensors")
    read_safetensors_header(path, path)  # the header checked against spec/limits.py before safetensors reads it
    try:
        with safe_open(path, framework="pt") as f:
            keys, metadata = list(f.keys()), f.metadata() or {}
            names = {_comfy_as_kohya(k): k for k in keys}
            style = _style(path, list(names))  # before any tensor is read: a 4 GB checkpoint is refused unread
            tensors = {name: f.get_tensor(k) for name, k in names.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({exc})") from None
    if style == "kohya":
        return LoraFile(path, "kohya", _group(path, tensors, _kohya_split))
    parts = _group(path, tensors, _peft_split)
    _apply_peft_alphas(parts, metadata)
    return LoraFile(path, "peft", parts)


COMFY_PREFIXES = {"diffusion_model.": "lora_unet_", "text_encoders.clip_l.transformer.": "lora_te1_"}


def _comfy_as_kohya(key: str) -> str:
    """ComfyUI's names for kohya layers (`diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight`) as
    kohya's own (`lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`), as diffusers reads them."""
    for prefix, kohya in COMFY_PREFIXES.items():
        if key.startswith(prefix):
            for suffix in KOHYA_SUFFIXES:
                if key.endswith(suffix):
                    return kohya + key[len(prefix):-len(suffix)].replace(".", "_") + suffix
    return key


def _style(path: str, keys: list[str]) -> str:
    if not keys:
        raise CheckpointError(f"{path} holds no tensors; it is not a LoRA")
    if all(k.startswith(tuple(KOHYA_PARTS)) for k in keys):
        return "kohya"
    if any(k.endswith(tuple(PEFT_SUFFIXES)) for k in keys):
        return "peft"
    if not any("lora" in k.lower() for k in keys):
        raise CheckpointError(f"{path} holds no LoRA layers ({len(keys)} tensors such as {_few(keys)}): it looks "
                              f"like a model checkpoint. Load it as the graph's `model`, and give `lora` a LoRA file")
    raise CheckpointError(f"{path}: unrecognised LoRA layout (keys such as {_few(keys)}); nodegraph reads kohya/A1111 "
                          f"(lora_unet_*/lora_te*_ … lora_down/lora_up) and diffusers/peft (unet.… lora_A/lora_B)")


def _kohya_split(key: str) -> tuple[str, str, str] | None:
    for prefix, part in KOHYA_PARTS.items():
        if key.startswith(prefix):
            for suffix, role in KOHYA_SUFFIXES.items():
                if key.endswith(suffix):
                    return part, key[len(prefix):-len(suffix)], role
    return None


def _peft_split(key: str) -> tuple[str, str, str] | None:
    part, _, rest = key.partition(".")
    if part not in PEFT_PARTS:
        return None
    for suffix, role in PEFT_SUFFIXES.items():
        if rest.endswith(suffix):
            name = rest[:-len(suffix)]
            return part, name, role
    return None


def _group(path: str, tensors: dict[str, torch.Tensor], split) -> dict[str, dict[str, LoraLayer]]:
    found: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in tensors.items():
        parsed = split(key)
        if parsed is None:
            unknown.append(key)
            continue
        part, name, role = parsed
        found.setdefault((part, name), {})[role] = tensor
    if unknown:
        raise CheckpointError(f"{path}: {len(unknown)} keys are not plain LoRA layers (e.g. {_few(unknown)}); "
                              f"LoHa/LoKr/DoRA layers are not supported, only lora_down/lora_up (lora_A/lora_B)")
    parts: dict[str, dict[str, LoraLayer]] = {}
    for (part, name), roles in found.items():
        if "down" not in roles or "up" not in roles:
            raise CheckpointError(f"{path}: layer {name!r} ({part}) lacks its "
                                  f"{'down (A)' if 'down' not in roles else 'up (B)'} matrix; the file is incomplete")
        alpha = float(roles["alpha"]) if "alpha" in roles else None
        parts.setdefault(part, {})[name] = LoraLayer(roles["down"], roles["up"], alpha)
    return parts


def _apply_peft_alphas(parts: dict[str, dict[str, LoraLayer]], metadata: dict[str, str]) -> None:
    """diffusers writes each part's LoraConfig in `lora_adapter_metadata` ({"unet.lora_alpha": …} flattened)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return
    from nodegraph.spec.reading import JsonProblem, load_json  # numbers bounded: the file may be a stranger's

    try:
        config = load_json(raw)
    except JsonProblem:
        return
    if not isinstance(config, dict):  # not diffusers' flattened LoraConfig: no alphas to read
        return
    for part, layers in parts.items():
        alpha = config.get(f"{part}.lora_alpha", config.get("lora_alpha"))
        pattern = config.get(f"{part}.alpha_pattern", config.get("alpha_pattern")) or {}
        for name, layer in layers.items():
            chosen = next((a for suffix, a in pattern.items() if name == suffix or name.endswith("." + suffix)),
                          alpha)
            if chosen is not None:
                layer.alpha = float(chosen)


def _few(keys) -> str:
    keys = list(keys)
    return ", ".join(repr(k) for k in keys[:SHOWN]) + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


class LoraWrapped(nn.Module):
    """A Linear/Conv2d layer plus LoRA, unfused: `base(x) + B(A(x)) · scale`, peft's order of operations."""

    def __init__(self, base: nn.Module, down: torch.Tensor, up: torch.Tensor, scale: float):
        super().__init__()
        self.base, self.scale = base, scale
        self.register_buffer("down", down, persistent=False)
        self.register_buffer("up", up, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        conv = _innermost(self.base)
        down, up = self.down.to(x.dtype), self.up.to(x.dtype)  # no-ops but beside a float8 layer
        if isinstance(conv, nn.Conv2d):
            h = F.conv2d(x, down, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
            return result + F.conv2d(h, up) * self.scale
        return result + F.linear(F.linear(x, down), up) * self.scale


def _innermost(layer: nn.Module) -> nn.Module:
    while isinstance(layer, LoraWrapped):
        layer = layer.base
    return layer


def adaptable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear/Conv2d layer (or one already LoRA-wrapped) by module path, not looking inside wrappers."""
    found: dict[str, nn.Module] = {}

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, (nn.Linear, nn.Conv2d, LoraWrapped)):
                found[path] = child
            else:
                walk(child, path + ".")

    walk(model, "")
    return found


def match_layers(lora: LoraFile, part: str, model: nn.Module, what: str) -> dict[str, tuple[nn.Module, LoraLayer]]:
    """Module path → (layer, LoRA layer) for every layer of `part`; CheckpointError when any name or shape does
    not fit `model` (a LoRA for another family must fail loudly, never apply half or nothing)."""
    layers = adaptable_layers(model)
    # CLIPTextModel paths lost their `text_model.` in transformers 5 (CLIPTextModelWithProjection kept it), and
    # files spell them either way: compare without it
    sep = "_" if lora.style == "kohya" else "."
    by_name = {_strip_text_model(p.replace(".", sep), sep): p for p in layers}
    if lora.style == "kohya" and part == "unet":
        by_name.update(_sgm_aliases(model, layers))
    matched, unmatched, misfit = {}, [], []
    for name, lora_layer in lora.parts.get(part, {}).items():
        path = by_name.get(_strip_text_model(name, sep))
        if path is None:
            unmatched.append(name)
            continue
        layer = _innermost(layers[path])
        if not _fits(layer, lora_layer):
            misfit.append(f"{name} ({_shape(lora_layer)} vs the layer's {_layer_shape(layer)})")
            continue
        matched[path] = (layers[path], lora_layer)
    total = len(lora.parts.get(part, {}))
    if unmatched:
        raise CheckpointError(f"{lora.path}: {len(unmatched)} of {total} {part} LoRA layers match no layer of {what} "
                              f"(e.g. {_few(unmatched)}); the LoRA is probably for another model family (an SDXL "
                              f"LoRA on SD 1.x, or the reverse). Use a LoRA trained for this model")
    if misfit:
        raise CheckpointError(f"{lora.path}: {len(misfit)} of {total} {part} LoRA layers do not fit {what}'s shapes "
                              f"(e.g. {'; '.join(misfit[:SHOWN])}); the LoRA is for another model (SD 1.x and SD 2.x "
                              f"differ in width). Use a LoRA trained for this model")
    return matched


_SGM_FIXED = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "time_embedding.linear_1": "time_embed.0",
              "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
              "add_embedding.linear_2": "label_emb.0.2"}
_SGM_RESNET = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
               "conv_shortcut": "skip_connection"}


def _sgm_aliases(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, str]:
    """kohya-ss names SDXL UNet layers after sgm's UNet (`input_blocks_4_1_…`, `middle_block_0_in_layers_2`,
    `output_blocks_2_2_conv`): those names for an SDXL model's layers, as diffusers' SDXL loader reads them
    (`_maybe_map_sgm_blocks_to_diffusers`: input block i = down block (i−1)//(n+1), slot (i−1)%(n+1); output
    block i = up block i//(n+1), slot i%(n+1); inner 0/1/2 = resnet/attention/upsampler; n = layers_per_block)."""
    config = getattr(model, "config", None)
    n = getattr(config, "layers_per_block", None)
    if getattr(config, "addition_embed_type", None) != "text_time" or not isinstance(n, int):
        return {}  # SD 1.x/2.x kohya files use diffusers' own names
    aliases = {}
    for path in layers:
        parts = path.split(".")
        sgm = _mid_sgm_path(parts) if parts[0] == "mid_block" else _sgm_path(parts, n)
        if sgm is not None:
            aliases[sgm.replace(".", "_")] = path
    return aliases


def _sgm_path(parts: list[str], n: int) -> str | None:
    path = ".".join(parts)
    for diffusers_name, sgm in _SGM_FIXED.items():
        if path == diffusers_name:
            return sgm
    if len(parts) < 4 or not parts[1].isdigit() or not parts[3].isdigit():
        return None
    block, kind, slot, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
    resnet_rest = [_SGM_RESNET.get(rest[0], rest[0]), *rest[1:]] if rest else []
    if parts[0] == "down_blocks":
        if kind == "downsamplers":
            return f"input_blocks.{(block + 1) * (n + 1)}.0.op"
        index = 1 + block * (n + 1) + slot
        inner = {"resnets": ["0", *resnet_rest], "attentions": ["1", *rest]}.get(kind)
        return None if inner is None else ".".join([f"input_blocks.{index}", *inner])
    if parts[0] == "up_blocks":
        if kind == "upsamplers":
            return ".".join([f"output_blocks.{block * (n + 1) + n}.2", *rest])
        index = block * (n + 1) + slot
        inner = {"resnets": ["0", *resnet_rest], "attentions": ["1", *rest]}.get(kind)
        return None if inner is None else ".".join([f"output_blocks.{index}", *inner])
    return None


def _mid_sgm_path(parts: list[str]) -> str | None:
    if parts[:1] != ["mid_block"] or len(parts) < 4:
        return None
    if parts[1] == "resnets":
        return ".".join([f"middle_block.{0 if parts[2] == '0' else 2}", _SGM_RESNET.get(parts[3], parts[3]),
                         *parts[4:]])
    if parts[1] == "attentions":
        return ".".join(["middle_block.1", *parts[3:]])
    return None


def _strip_text_model(name: str, sep: str) -> str:
    return name.removeprefix(f"text_model{sep}")


def _fits(layer: nn.Module, lora: LoraLayer) -> bool:
    down, up = lora.down, lora.up
    if down.shape[0] != up.shape[1]:
        return False
    if isinstance(layer, nn.Conv2d):
        return (down.dim() == 4 and up.dim() == 4 and down.shape[1] == layer.in_channels
                and tuple(down.shape[2:]) == tuple(layer.kernel_size) and up.shape[0] == layer.out_channels
                and tuple(up.shape[2:]) == (1, 1))
    return down.dim() == 2 and up.dim() == 2 and down.shape[1] == layer.in_features and up.shape[0] == layer.out_features


def _shape(lora: LoraLayer) -> str:
    return f"A {tuple(lora.down.shape)}, B {tuple(lora.up.shape)}"


def _layer_shape(layer: nn.Module) -> str:
    return str(tuple(layer.weight.shape))


def apply_lora(model: nn.Module, matched: dict[str, tuple[nn.Module, LoraLayer]], strength: float,
               fuse: bool, on_call: bool = False) -> nn.Module:
    """A patched copy of `model` (which is left as it was); strength 0 or no layers returns `model` itself.
    Fused into a streamed layer, or into any plain layer with `on_call` (a budget the copies would break), the
    LoRA is fused at each call instead of into a held copy: the same numbers (adapters/streamed_lora.py)."""
    if strength == 0 or not matched:
        return model
    replacements = {}
    for path, (layer, lora) in matched.items():
        scale = strength * lora.scale
        weight = _innermost(layer).weight
        # a layer read from the file (models/partial_residency.py) or streamed from it (models/streaming.py)
        # computes in the run's dtype, not its stored one
        dtype = getattr(_innermost(layer), "compute_dtype", weight.dtype)
        wide = dtype if dtype.itemsize > 1 else torch.float32  # float8 layers (models/fp8.py): A, B wide
        device = getattr(_innermost(layer), "compute_device", weight.device)  # CUDA-streamed: the host holds W
        down, up = lora.down.to(device=device, dtype=wide), lora.up.to(device=device, dtype=wide)
        if fuse and streams(layer, on_call):  # fused at each call, never held (streamed_lora.py)
            replacements[path] = fuse_on_call(layer, lora.down, lora.up, scale, dtype)
        elif fuse and not isinstance(layer, LoraWrapped):
            base = layer.adapter_weight() if hasattr(layer, "adapter_weight") else layer.weight  # file-read: checked
            fused = _fused(base, lora, scale, getattr(layer, "weight_scale", None), dtype)
            replacements[path] = with_weight(layer, fused)
        else:
            replacements[path] = LoraWrapped(layer, down, up, scale)
    return replace_modules(model, replacements)


def _fused(weight: torch.Tensor, lora: LoraLayer, scale: float, weight_scale: float | None = None,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """W + scale · (B ⊗ A) in a new tensor of `dtype` (default W's), accumulated in float32: for a k×k conv,
    Σ_r B[o, r] · A[r, i, :, :].
    One GEMM that reads W and writes the result (`addmm`): no copy of W and no temporary of its size. A scaled-fp8
    layer's weight (models/scaled_fp8.py) is W·s: the sum is (W·s + ΔW) / s, stored back on the same scale,
    rounded to nearest (e4m3fn saturating at 448·s). That is only approximately ComfyUI's: its current
    mixed_precision_ops `set_weight` re-quantises with a recalculated scale, its older scaled_fp8_op divided by the
    old scale with seeded stochastic rounding (tests/fp8: within e4m3's 1/16 step of the real sum)."""
    down = lora.down.to(device=weight.device, dtype=torch.float32).flatten(1)  # (r, in·kh·kw)
    up = lora.up.to(device=weight.device, dtype=torch.float32).flatten(1)  # (out, r)
    base = weight.to(torch.float32, memory_format=torch.contiguous_format)  # a view for contiguous fp32 weights
    fused = torch.addmm(base.flatten(1), up, down, alpha=scale / (weight_scale or 1.0)).view(weight.shape)
    if weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return fused.to(dtype or weight.dtype, memory_format=torch.channels_last)  # keep a channels-last layout
    return fused.to(dtype or weight.dtype)
