"""ComfyUI-semantics node for Stable Diffusion 3 / 3.5: CLIPTextEncode with SD3's three text encoders.

The sampling itself is the flow-model loop of nodes/comfy_flow.py (ComfyFlowSigmas → ComfyFlowNoise →
ComfyFlowDenoise → ComfyFlowSamplerStep), which calls the SD3 transformer through nodegraph/comfy/flow.py.
"""

from __future__ import annotations

from typing import Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, TextEncoder, Tokenizer

T5_MIN_TOKENS = 77  # ComfyUI's SD3 T5 tokenizer pads to at least 77 tokens (Flux's: 256)
CLIP_MAX_TOKENS = 1024  # the most CLIP tokens a prompt may have here, as T5's T5_MAX_TOKENS (comfy_flow.py)


@node("ComfySD3TextEncode", version=1)
class ComfySD3TextEncode(Node):
    """ComfyUI's CLIPTextEncode with an SD3 CLIP (comfy/text_encoders/sd3_clip.py `SD3ClipModel`).

    CLIP-L and bigG read the prompt as ComfyUI's CLIPTextEncode does (nodegraph/comfy/text.py: `(word:1.2)`
    weights, 75-token chunks; CLIP-L pads with its end token, bigG with 0), each giving its penultimate layer
    without the final norm; the two sit side by side on features (768 + 1280), zero-padded to T5's width (4096).
    T5 reads the prompt's tokens and `</s>`, padded with 0 to at least 77 tokens and never cut, no mask, and its
    states follow the CLIP ones on the token axis: (1, 77·n + max(77, t), 4096). Without a T5 the CLIP part is the
    whole context (its features zero-padded to the transformer's width when it is called). `(word:1.2)` weights
    move each encoder's weighted states against its empty prompt's (T5's: `</s>` and pads, as long). The pooled
    vector is CLIP-L's pooled state WITHOUT its text projection (ComfyUI's SD3 CLIP-L has
    `return_projected_pooled=False`) beside bigG's projected one: (1, 768 + 1280). A prompt over 1024 T5 tokens or
    1024 CLIP tokens is refused before any encoder runs (attention grows with the square of the length)."""

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text_encoder_2: TextEncoder
        tokenizer_2: Tokenizer
        text_encoder_3: Optional[TextEncoder] = Field(None, description="T5-XXL (none: the CLIP part alone)")
        tokenizer_3: Optional[Tokenizer] = None
        text: str = Field("", description="the prompt, ComfyUI's weight syntax for the CLIP encoders")

    class Outputs(Ports):
        embeddings: Embeddings
        pooled: Embeddings

    def run(self, i, ctx):
        import torch

        from nodegraph.comfy.text import encode, weighted_chunks

        _check_clip_length(i)
        t5_tokens = _t5_tokens(i) if i.text_encoder_3 is not None else None  # refuses a long prompt, encodes nothing
        l_hidden, _ = encode(i.text_encoder, i.tokenizer, i.text, 0, "penultimate")  # (1, 77·n, C_l)
        g_hidden, g_pooled = encode(i.text_encoder_2, i.tokenizer_2, i.text, 0, "penultimate", 0)  # (1, 77·n, C_g)
        if g_pooled is None:
            raise ValueError("`text_encoder_2`: SD3's bigG must have its text projection (its pooled output)")
        first = torch.tensor([[t for t, _ in weighted_chunks(i.text, i.tokenizer)[0]]])  # (1, 77)
        l_pooled = _unprojected_pooled(i.text_encoder, first)  # (1, C_l)
        length = min(l_hidden.shape[1], g_hidden.shape[1])
        clip = torch.cat([l_hidden[:, :length], g_hidden[:, :length]], dim=-1).float()  # (1, 77·n, C_l + C_g)
        if t5_tokens is not None:  # without T5 the transformer call pads the features (comfy/flow.py)
            t5 = _t5_encode(i.text_encoder_3, t5_tokens).float().to(ctx.device)  # (1, t, 4096)
            if clip.shape[-1] > t5.shape[-1]:
                raise ValueError(f"`text_encoder_3`: T5's states are {t5.shape[-1]} wide, narrower than the CLIP "
                                 f"features ({clip.shape[-1]}); these text encoders are not one SD3 model's")
            clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1])).to(ctx.device)  # (1, 77·n, 4096)
            clip = torch.cat([clip, t5], dim=1)  # (1, 77·n + t, 4096)
        pooled = torch.cat([l_pooled.float(), g_pooled.float()], dim=-1)  # (1, C_l + C_g)
        return {"embeddings": clip.to(dtype=ctx.dtype, device=ctx.device),
                "pooled": pooled.to(dtype=ctx.dtype, device=ctx.device)}


def _check_clip_length(i) -> None:
    """Refuse a prompt over CLIP_MAX_TOKENS CLIP tokens (in either tokenizer) before any encoder runs: each 75
    tokens add 77 to the transformer's joint sequence, whose attention grows with the square of its length."""
    from nodegraph.comfy.text import clip_token_count

    for name, tokenizer in (("tokenizer", i.tokenizer), ("tokenizer_2", i.tokenizer_2)):
        count = clip_token_count(i.text, tokenizer, CLIP_MAX_TOKENS)
        if count > CLIP_MAX_TOKENS:
            raise ValueError(f"`text`: the prompt is {count} CLIP tokens or more (`{name}`), over {CLIP_MAX_TOKENS}, "
                             f"the most this import encodes (every 75 CLIP tokens add 77 to the SD3 transformer's "
                             f"joint sequence, whose attention grows with the square of its length); shorten the "
                             f"prompt")


def _t5_tokens(i):
    """(ids (1, t), weights (1, t) or None, empty ids or None) of the prompt for T5; over T5_MAX_TOKENS refused."""
    from nodegraph.comfy.text import plain_text, t5_weighted_tokens
    from nodegraph.nodes.comfy_flow import T5_MAX_TOKENS

    if i.tokenizer_3 is None:
        raise ValueError("`tokenizer_3`: give T5's tokenizer with its encoder")
    plain = plain_text(i.text)
    if plain is None:  # weighted: word by word, each weighted state moved against the empty prompt's
        return t5_weighted_tokens(i.text, i.tokenizer_3, T5_MIN_TOKENS, T5_MAX_TOKENS)
    tokenizer = i.tokenizer_3
    if tokenizer.dropped([plain], T5_MAX_TOKENS)[0]:
        raise ValueError(f"`text`: the prompt ({len(plain)} characters) is longer than {T5_MAX_TOKENS} T5 tokens, the "
                         f"most this import encodes (T5's attention grows with the square of the length); shorten it")
    ids, mask = tokenizer([plain], T5_MAX_TOKENS)  # (1, T5_MAX_TOKENS), the padding last
    return ids[:, :max(T5_MIN_TOKENS, int(mask.sum()))], None, None


def _t5_encode(encoder, tokens):
    """T5's last hidden state of the `_t5_tokens` ids: plain, or with ComfyUI's weighting. (1, t, C)"""
    import torch

    from nodegraph.comfy.text import t5_weighted_encode

    ids, weights, empty = tokens
    if weights is not None:
        return t5_weighted_encode(encoder, ids, weights, empty)
    with torch.no_grad():
        return encoder(ids.to(encoder.device))  # (1, t, C)


def _unprojected_pooled(encoder, ids):
    """CLIP-L's pooled state (the final-normed end token) before any text projection: (1, C)."""
    import torch

    model = getattr(encoder, "text_model", encoder)  # CLIPTextModelWithProjection wraps a CLIPTextModel
    with torch.no_grad():
        return model(ids.to(encoder.device)).pooler_output


@node("ComfyFluxShift", version=1)
class ComfyFluxShift(Node):
    """ComfyUI's ModelSamplingFlux μ (comfy_extras/nodes_model_advanced.py): linear in the image's token count
    width·height / 256, from `base_shift` at 256 tokens to `max_shift` at 4096 (diffusers' calculate_shift on
    the same line); feed it to ComfyFlowSigmas' `shift` with sampling "flux"."""

    class Inputs(Ports):
        max_shift: float = Field(1.15, ge=0.0, le=100.0)
        base_shift: float = Field(0.5, ge=0.0, le=100.0)
        width: int = Field(1024, ge=16, le=16384)
        height: int = Field(1024, ge=16, le=16384)

    class Outputs(Ports):
        shift: float

    def run(self, i, ctx):
        slope = (i.max_shift - i.base_shift) / (4096 - 256)
        return {"shift": (i.width * i.height / (8 * 8 * 2 * 2)) * slope + i.base_shift - slope * 256}
