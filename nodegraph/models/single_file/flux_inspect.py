"""`nodegraph inspect` for the files Flux users hold: BFL's transformer (dev or schnell, bf16 or float8, with or
without `model.diffusion_model.`), and ComfyUI's text_encoders/ files (clip_l, clip_g, t5xxl). The transformer is
checked against a model built on the meta device (the keys and shapes a load would check)."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any


def describe_flux_or_text_file(ckpt, config: str | None) -> dict[str, Any] | None:
    """The inspect record of a Flux transformer or a lone text-encoder file; None for other files."""
    from nodegraph.models.single_file.flux import detect_flux_file
    from nodegraph.models.single_file.text_files import detect_text_file

    if detect_flux_file(ckpt.shapes) is not None:
        return _transformer(ckpt, config)
    kind = detect_text_file(ckpt.shapes)
    return _text_encoder(ckpt, kind, config) if kind else None


def _stats(entries: dict) -> dict[str, Any]:
    dtypes = Counter(str(e.dtype).removeprefix("torch.") for e in entries.values())
    return {"tensors": len(entries), "parameters": sum(math.prod(e.shape) for e in entries.values()),
            "bytes": sum(math.prod(e.shape) * e.dtype.itemsize for e in entries.values()),
            "dtype": ", ".join(f"{d} ({n})" if len(dtypes) > 1 else d for d, n in dtypes.most_common())}


def _transformer(ckpt, config: str | None) -> dict[str, Any]:
    import torch

    from nodegraph.models.checkpoint import fit
    from nodegraph.models.config import parse_config
    from nodegraph.models.flux_transformer import FluxTransformer2DModel, FluxTransformerConfig
    from nodegraph.models.single_file.flux import detect_flux_file, flux_entries, inferred_config
    from nodegraph.models.single_file.z_image import _component_config

    shown = str(ckpt.path)
    entries = flux_entries(ckpt.entries, detect_flux_file(ckpt.shapes))
    raw = _component_config(config, "transformer")[0] if config else \
        inferred_config({k: e.shape for k, e in entries.items()}, shown)
    with torch.device("meta"):
        model = FluxTransformer2DModel(parse_config(FluxTransformerConfig, raw, shown))
    fitted = fit(entries, model, lambda key: key, "the Flux transformer of its config")
    dev = raw.get("guidance_embeds", False)
    variant = "flux-dev" if dev else "flux-schnell"
    which = "dev: guidance embedding" if dev else "schnell: no guidance embedding"
    return {"family": variant, "description": f"Flux.1 transformer alone ({which})",
            "prediction_type": "flow matching (Flux)", "scheduler": "FlowMatchEulerDiscreteScheduler",
            "configs": config or "inferred from the shapes", "unused_keys": [],
            "components": {"transformer": {**_stats(fitted), "config": {k: v for k, v in raw.items()
                                                                        if not k.startswith("_")}}}}


def _text_encoder(ckpt, kind: str, config: str | None) -> dict[str, Any]:
    shapes = ckpt.shapes
    if kind == "t5":
        layers = {int(m[1]) for k in shapes if (m := re.match(r"encoder\.block\.(\d+)\.", k))}
        vocab, width = next(shapes[k] for k in ("shared.weight", "encoder.embed_tokens.weight") if k in shapes)
        facts = {"d_model": width, "num_layers": len(layers), "vocab_size": vocab}
        name, what = "text_encoder_2", "T5 v1.1 encoder alone (Flux's text_encoder_2, SD3's text_encoder_3)"
        used = {k: e for k, e in ckpt.entries.items() if not k.startswith(("decoder.", "lm_head."))}
    else:
        bare = {k.removeprefix("text_model."): s for k, s in shapes.items()}
        layers = {int(m[1]) for k in bare if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
        facts = {"hidden_size": bare["embeddings.token_embedding.weight"][1], "num_hidden_layers": len(layers),
                 "projection": "text_projection.weight" in shapes}
        name, what = "text_encoder", "CLIP text encoder alone (clip_l: Flux's text_encoder; clip_g: SD3's)"
        used = {k: e for k, e in ckpt.entries.items() if k not in ("logit_scale", "text_model.embeddings.position_ids")}
    return {"family": f"{kind}_text_encoder", "description": what, "prediction_type": "none: a text encoder",
            "scheduler": "none", "configs": config or "from the pipeline's folder when loaded (`config`)",
            "unused_keys": sorted(set(shapes) - set(used)),
            "components": {name: {**_stats(used), "config": facts}}}
