"""GLIGEN, grounded text-to-image generation (Li et al., 2023, "GLIGEN: Open-Set Grounded Text-to-Image Generation",
CVPR): phrases placed in boxes steer a frozen Stable Diffusion UNet through one gated self-attention layer
("fuser") added to each of its transformer blocks, between the self-attention and the cross-attention.

* Grounding tokens (§3.2, eq. 5): each box (x1, y1, x2, y2 in [0, 1] of the latent) gets Fourier features
  (8 frequencies 100^(k/8), sin then cos of the four coordinates per frequency), concatenated with the phrase's
  pooled CLIP embedding and sent through an MLP (Linear 512, SiLU, Linear 512, SiLU, Linear D). A padded slot
  (mask 0) uses the learned null phrase and null position features instead. Up to 30 boxes.
* Gated self-attention (§3.2, eq. 8): the visual tokens v (B, HW, C) and the grounding tokens h (B, N, D → C by
  `linear`) attend together; only the visual part is kept:
  v ← v + tanh(γ_attn)·SelfAttn(LayerNorm([v; h]))[:HW],  then v ← v + tanh(γ_dense)·FF(LayerNorm(v)).
  The heads are the transformer block's own (8 on SD1.x, 64-wide on SD2.x: ComfyUI's rule for its files).

The modules keep diffusers' names (`GLIGENTextBoundingboxProjection` as `position_net.linears.{0,2,4}`,
`null_positive_feature`, `null_position_feature`; `GatedSelfAttentionDense` as `fuser.linear`, `fuser.attn.to_q`,
`fuser.ff.net.0.proj`, `fuser.alpha_attn`, …), which are also the keys of ComfyUI's `gligen/` files after their
`<block>.transformer_blocks.0.fuser.` prefix. `grounded_unet` gives a copy-on-write UNet with the fusers in place;
the loaded UNet is never changed.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from nodegraph.models.attention import BasicTransformerBlock, FeedForward, multi_head_attention
from nodegraph.models.base import LayerNorm, Linear

MAX_OBJECTS = 30  # grounding tokens per prompt: the paper's and both implementations' padding length
FOURIER_FREQS = 8
_FUSER_KEY = re.compile(r"(?:^|\.)(input_blocks|middle_block|output_blocks)\.(\d+)\.(.*?)\bfuser\.(.+)$")
_SECTIONS = ("input_blocks", "middle_block", "output_blocks")


class GLIGENError(ValueError):
    """A GLIGEN file or box list that cannot be used; the message says what to do."""


def box_features(boxes: torch.Tensor, freqs: int = FOURIER_FREQS) -> torch.Tensor:
    """boxes (B, N, 4) → Fourier features (B, N, freqs·2·4): per frequency 100^(k/freqs), the sines of the four
    coordinates, then their cosines."""
    bands = (100 ** (torch.arange(freqs) / freqs)).to(device=boxes.device, dtype=boxes.dtype)  # (F,)
    angles = bands[:, None] * boxes.unsqueeze(-2)  # (B, N, F, 4)
    return torch.stack([angles.sin(), angles.cos()], dim=-2).flatten(-3)  # (B, N, F, 2, 4) → (B, N, 8F)


class PositionNet(nn.Module):
    """(boxes (B, N, 4), masks (B, N), phrases (B, N, P)) → grounding tokens (B, N, D)."""

    def __init__(self, phrase_dim: int, out_dim: int, freqs: int = FOURIER_FREQS):
        super().__init__()
        self.freqs = freqs
        position_dim = freqs * 2 * 4
        self.linears = nn.Sequential(Linear(phrase_dim + position_dim, 512), nn.SiLU(), Linear(512, 512), nn.SiLU(),
                                     Linear(512, out_dim))
        self.null_positive_feature = nn.Parameter(torch.zeros(phrase_dim), requires_grad=False)
        self.null_position_feature = nn.Parameter(torch.zeros(position_dim), requires_grad=False)

    def forward(self, boxes: torch.Tensor, masks: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
        m = masks.unsqueeze(-1)  # (B, N, 1)
        xyxy = box_features(boxes, self.freqs)  # (B, N, 64)
        xyxy = xyxy * m + (1 - m) * self.null_position_feature.to(xyxy).view(1, 1, -1)
        phrases = phrases * m + (1 - m) * self.null_positive_feature.to(phrases).view(1, 1, -1)
        return self.linears(torch.cat([phrases, xyxy], dim=-1))  # (B, N, D)


class _Projections(nn.Module):
    """The fuser's attention weights (`to_q`, `to_k`, `to_v`, `to_out.0`); the heads come with each call."""

    def __init__(self, dim: int):
        super().__init__()
        self.to_q = Linear(dim, dim, bias=False)
        self.to_k = Linear(dim, dim, bias=False)
        self.to_v = Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([Linear(dim, dim)])

    def forward(self, h: torch.Tensor, heads: int) -> torch.Tensor:
        return self.to_out[0](multi_head_attention(self.to_q(h), self.to_k(h), self.to_v(h), heads))


class GatedSelfAttention(nn.Module):
    """The fuser of one transformer block of width `dim`, reading grounding tokens of width `token_dim`."""

    def __init__(self, dim: int, token_dim: int):
        super().__init__()
        self.linear = Linear(token_dim, dim)
        self.attn = _Projections(dim)
        self.ff = FeedForward(dim)
        self.norm1 = LayerNorm(dim)
        self.norm2 = LayerNorm(dim)
        self.alpha_attn = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.alpha_dense = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, x: torch.Tensor, objs: torch.Tensor, heads: int) -> torch.Tensor:
        n_visual = x.shape[1]  # x (B, HW, C), objs (B, N, D)
        tokens = torch.cat([x, self.linear(objs.to(x))], dim=1)  # (B, HW + N, C)
        x = x + torch.tanh(self.alpha_attn) * self.attn(self.norm1(tokens), heads)[:, :n_visual]
        return x + torch.tanh(self.alpha_dense) * self.ff(self.norm2(x))


class GLIGEN(nn.Module):
    """A GLIGEN text-box model: the position net and one fuser per UNet transformer block, in the UNet's order
    (down blocks, mid block, up blocks)."""

    def __init__(self, widths: list[int], phrase_dim: int, token_dim: int):
        super().__init__()
        self.position_net = PositionNet(phrase_dim, token_dim)
        self.fusers = nn.ModuleList(GatedSelfAttention(w, token_dim) for w in widths)
        self.phrase_dim, self.token_dim, self.widths = phrase_dim, token_dim, list(widths)
        self.source = ""  # the file it was read from (read_gligen), for messages

    def to_run(self, device: torch.device, dtype: torch.dtype) -> "GLIGEN":
        """The fusers in the UNet's dtype, the position net in float32: the boxes' Fourier angles (up to 56 rad)
        lose their fraction in half precision (ComfyUI also runs it on float32 boxes and casts the tokens)."""
        self.fusers.to(device=device, dtype=dtype)
        self.position_net.to(device=device)  # float32, as read
        return self

    def tokens(self, boxes: torch.Tensor, masks: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
        """(B, 30, 4) boxes, (B, 30) masks, (B, 30, P) phrases → (B, 30, D) grounding tokens."""
        p = next(self.position_net.parameters())
        with torch.no_grad():
            return self.position_net(boxes.to(p), masks.to(p), phrases.to(p))


def pad_objects(boxes: list[tuple[float, float, float, float]], phrases: list[torch.Tensor], phrase_dim: int):
    """Boxes (x1, y1, x2, y2 in [0, 1]) and their phrases' pooled embeddings (P,) → (1, 30, 4) boxes, (1, 30)
    masks, (1, 30, P) phrases, the free slots zero with mask 0."""
    if len(boxes) > MAX_OBJECTS:
        raise GLIGENError(f"{len(boxes)} GLIGEN boxes on one prompt; GLIGEN reads at most {MAX_OBJECTS}: "
                          f"drop some boxes")
    out_boxes, masks = torch.zeros(1, MAX_OBJECTS, 4), torch.zeros(1, MAX_OBJECTS)
    out_phrases = torch.zeros(1, MAX_OBJECTS, phrase_dim)
    for k, (box, phrase) in enumerate(zip(boxes, phrases, strict=True)):
        out_boxes[0, k] = torch.tensor(box, dtype=torch.float32)
        out_phrases[0, k] = phrase.reshape(-1).float()
        masks[0, k] = 1.0
    return out_boxes, masks, out_phrases


class GroundedBlock(nn.Module):
    """A UNet transformer block with its fuser after the self-attention (diffusers' `BasicTransformerBlock` with
    `attention_type="gated"`; ComfyUI's `middle_patch`). `objs` (G, N, D): G divides the batch; row g grounds the
    g-th of G equal batch slices (G = 1: every sample; G = 2 for a [negative; positive] batch)."""

    def __init__(self, block: BasicTransformerBlock, fuser: GatedSelfAttention, objs: torch.Tensor):
        super().__init__()
        self.block, self.fuser, self.objs = block, fuser, objs

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b = self.block
        x = b.attn1(b.norm1(x), context if b.only_cross_attention else None) + x  # (B, HW, C)
        B, G = x.shape[0], self.objs.shape[0]
        if B % G:
            raise GLIGENError(f"GLIGEN tokens for {G} batch groups cannot ground a batch of {B}")
        x = self.fuser(x, self.objs.to(x).repeat_interleave(B // G, dim=0), b.attn1.heads)
        x = b.attn2(b.norm2(x), context) + x
        return b.ff(b.norm3(x)) + x


def transformer_blocks(unet: nn.Module) -> list[tuple[str, BasicTransformerBlock]]:
    """(path, block) of every transformer block of a UNet, in the order its forward runs them."""
    found = [(name, m) for name, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)]
    order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(found, key=lambda item: order.get(item[0].split(".")[0], 3))  # stable: module order within


def check_fits(gligen: GLIGEN, unet: nn.Module) -> list:
    """The UNet's transformer blocks, if `gligen` has one fuser of the right width for each; else a GLIGENError."""
    source = gligen.source or "the GLIGEN model"
    blocks = transformer_blocks(unet)
    widths = [b.norm1.normalized_shape[0] for _, b in blocks]
    context = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
    if widths != gligen.widths or (isinstance(context, int) and context != gligen.token_dim):
        raise GLIGENError(
            f"{source} does not match this checkpoint's UNet: it has {len(gligen.widths)} fusers of widths "
            f"{gligen.widths} and {gligen.token_dim}-wide tokens, the UNet {len(widths)} transformer blocks of widths "
            f"{widths} and text width {context}; use a GLIGEN file made for this model family (SD1.x files for "
            f"SD1.x checkpoints)")
    return blocks


def grounded_unet(unet: nn.Module, gligen: GLIGEN, objs: torch.Tensor) -> nn.Module:
    """A copy-on-write UNet whose transformer blocks run `gligen`'s fusers on `objs` (G, N, D) (see GroundedBlock);
    it shares every tensor with `unet`, which is left as it was."""
    from nodegraph.models.adapters.patch import replace_modules

    blocks = check_fits(gligen, unet)
    return replace_modules(unet, {path: GroundedBlock(block, fuser, objs)
                                  for (path, block), fuser in zip(blocks, gligen.fusers, strict=True)})


def gligen_state(sd: dict[str, torch.Tensor], source: str) -> GLIGEN:
    """A GLIGEN model from the tensors of a ComfyUI-layout file (`…input_blocks.1.1.transformer_blocks.0.fuser.*`,
    `position_net.*`, as in gligen_sd14_textbox_pruned.safetensors)."""
    groups: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m = _FUSER_KEY.search(key)
        if m:
            groups.setdefault((_SECTIONS.index(m.group(1)), int(m.group(2))), {})[m.group(4)] = value
    if any(k.startswith("position_net.linears_text") for k in sd):
        raise GLIGENError(f"{source}: a text-image GLIGEN model (linears_text/linears_image); only text-box GLIGEN "
                          f"files (gligen_sd14_textbox_pruned) are covered")
    if not groups or "position_net.null_positive_feature" not in sd or "position_net.linears.4.weight" not in sd:
        raise GLIGENError(f"{source} is not a GLIGEN text-box file (no `…fuser.*` and `position_net.*` tensors); "
                          f"use a file from ComfyUI's gligen/ folder such as gligen_sd14_textbox_pruned.safetensors")
    fusers = [groups[k] for k in sorted(groups)]
    try:
        widths = [f["linear.weight"].shape[0] for f in fusers]
        token_dim = fusers[0]["linear.weight"].shape[1]
    except KeyError as e:
        raise GLIGENError(f"{source}: a fuser lacks its `linear.weight`; the file is damaged") from e
    phrase_dim = sd["position_net.null_positive_feature"].shape[0]
    with torch.device("meta"):
        model = GLIGEN(widths, phrase_dim, token_dim)
    state = {f"fusers.{i}.{name}": t for i, f in enumerate(fusers) for name, t in f.items()}
    state.update({k: v for k, v in sd.items() if k.startswith("position_net.")})
    try:  # extra tensors are ignored, as ComfyUI loads these files (strict=False); missing ones are not
        missing, _ = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:
        raise GLIGENError(f"{source}: its tensors do not form a GLIGEN text-box model ({str(e).splitlines()[0]}); "
                          f"the file is damaged or of another GLIGEN kind") from e
    if missing:
        raise GLIGENError(f"{source}: {len(missing)} tensors of a GLIGEN text-box model are missing ({missing[0]}, "
                          f"…); the file is damaged or of another GLIGEN kind")
    model.source = source  # named in check_fits' message
    return model.float().eval().requires_grad_(False)


def read_gligen(path: str | Path) -> GLIGEN:
    """Load a GLIGEN `.safetensors` file in ComfyUI's layout (see gligen_state)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nodegraph.models.errors import CheckpointError
    from nodegraph.models.weight_files import read_safetensors_header

    path = Path(path)
    if path.suffix != ".safetensors":
        raise GLIGENError(f"{path.name}: GLIGEN files are read as .safetensors only; convert the file")
    try:  # a regular file (a FIFO or device is refused, never opened to block) with a header within spec/limits.py
        read_safetensors_header(path, path.name)
    except CheckpointError as e:
        raise GLIGENError(f"GLIGEN file {e}") from None
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise GLIGENError(f"{path.name} cannot be read as safetensors ({e}); is it a complete download?") from e
    return gligen_state(sd, path.name)
