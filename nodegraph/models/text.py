"""CLIP text encoder and tokenizer. The encoder is nodegraph's own (`clip_text.py`: transformers' module tree and
arithmetic, without the seconds its modeling code takes to import), loaded with the same strict key, dtype and pickle
rules as the diffusion models; the tokenizer is nodegraph's too (`clip_tokenizer.py`, on the `tokenizers` package:
transformers' CLIPTokenizer pipeline without importing transformers)."""

from __future__ import annotations

from typing import Any

import torch

from nodegraph.models.base import install_weights
from nodegraph.models.checkpoint import TRANSFORMERS_WEIGHTS, find_weights, fit, read_entries, read_tensors
from nodegraph.models.errors import CheckpointError
from nodegraph.models.sources import Source

TEXT_ENCODERS = ("CLIPTextModel", "CLIPTextModelWithProjection")  # the second is SDXL's `text_encoder_2`
TOKENIZERS = ("CLIPTokenizer", "CLIPTokenizerFast")
_TEXT_PREFIX = "text_model."  # checkpoints saved by transformers 4 (every SD hub repo) nest the model under it


def build_text_encoder(raw_config: dict[str, Any], where: str = "config.json"):
    """An uninitialised CLIPTextModel (or CLIPTextModelWithProjection, when the config's `architectures` names
    it) on the meta device, from a text encoder's config.json (nodegraph's classes, see clip_text.py)."""
    from nodegraph.models.clip_text import ACTIVATIONS, TEXT_ENCODER_CLASSES, CLIPTextConfig

    model_type = raw_config.get("model_type", "clip_text_model")
    if model_type != "clip_text_model":
        raise CheckpointError(f"{where}: `model_type` is {model_type!r}, but nodegraph supports 'clip_text_model' "
                              f"(a CLIPTextModel or CLIPTextModelWithProjection) only.")
    config = CLIPTextConfig.from_dict(raw_config)
    if config.hidden_act not in ACTIVATIONS:
        raise CheckpointError(f"{where}: `hidden_act` is {config.hidden_act!r}; nodegraph's CLIP text encoder "
                              f"supports {' and '.join(map(repr, ACTIVATIONS))} (every released SD text encoder).")
    if config.hidden_size % config.num_attention_heads:
        raise CheckpointError(f"{where}: `hidden_size` {config.hidden_size} is not a multiple of "
                              f"`num_attention_heads` {config.num_attention_heads}; the config is damaged.")
    with torch.device("meta"):
        return TEXT_ENCODER_CLASSES[text_encoder_class(raw_config)](config)


def text_encoder_class(raw_config: dict[str, Any]) -> str:
    architectures = raw_config.get("architectures") or ["CLIPTextModel"]
    return architectures[0] if architectures[0] in TEXT_ENCODERS else "CLIPTextModel"


def load_text_encoder(src: Source, folder: str, raw_config: dict[str, Any], dtype: torch.dtype,
                      device: torch.device, variant: str | None, allow_pickle: bool):
    config_path = f"{folder}/config.json" if folder else "config.json"
    model = build_text_encoder(raw_config, src.where(config_path))
    weights = find_weights(src, folder, TRANSFORMERS_WEIGHTS, variant, allow_pickle)
    # transformers keeps the `text_model.` prefix in a CLIPTextModelWithProjection's own state dict
    rename = _strip_prefix if hasattr(model, "embeddings") else (lambda key: key)
    what = f"the {type(model).__name__} of {src.where(config_path)}"
    fitted = fit(read_entries(src, weights), model, rename, what)
    install_weights(model, read_tensors(fitted, dtype, device))
    _materialize_buffers(model, device)
    return model.eval()


def _strip_prefix(key: str) -> str:
    return key[len(_TEXT_PREFIX):] if key.startswith(_TEXT_PREFIX) else key


def _materialize_buffers(model: torch.nn.Module, device: torch.device) -> None:
    """Non-persistent buffers are not in the checkpoint, so they are still on the meta device: rebuild them."""
    embeddings = model.embeddings if hasattr(model, "embeddings") else model.text_model.embeddings
    if embeddings.position_ids.is_meta:
        positions = torch.arange(embeddings.position_embedding.num_embeddings, device=device).expand((1, -1))
        embeddings.register_buffer("position_ids", positions, persistent=False)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a buffer the loader does not know about: fail here rather than in the first forward
        raise RuntimeError(f"{type(model).__name__} tensors left uninitialised after loading: {', '.join(left)}")


def load_tokenizer(src: Source, folder: str):
    """CLIPTokenizer from `vocab.json` + `merges.txt` (transformers 4 layout) or `tokenizer.json` (transformers 5)."""
    from nodegraph.models.clip_tokenizer import CLIPTokenizer

    names = src.files(folder)
    where = src.where(folder) if folder else src.name
    if not ({"vocab.json", "merges.txt"} <= set(names) or "tokenizer.json" in names):
        raise CheckpointError(f"no tokenizer in {where}: expected vocab.json and merges.txt, or tokenizer.json; "
                              f"the folder holds {', '.join(names) or 'nothing'}.")
    local = [src.fetch(f"{folder}/{n}" if folder else n) for n in names if n.endswith((".json", ".txt"))]
    try:
        return CLIPTokenizer.from_folder(local[0].parent)
    except Exception as e:
        raise CheckpointError(f"the tokenizer in {where} could not be read: {e}") from None
