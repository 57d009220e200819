"""Which family (SD 1.x/2.x or SDXL) and which kind of SDXL checkpoint a source holds, from its config files or a
single file's key index alone: no weights are read, so a wrong checkpoint is refused before anything loads."""

from __future__ import annotations

import os
from typing import Any, Literal

from nodegraph.models.errors import CheckpointError
from nodegraph.models.loading import read_config

Role = Literal["base", "refiner", "sd"]
Family = Literal["sd", "sdxl"]
FAMILIES = {  # family → (its UNet, what tells it apart, which graph runs it)
    "sd": ("a Stable Diffusion 1.x/2.x UNet", "no SDXL added conditions", "run it with graphs/stable_diffusion.yaml"),
    "sdxl": ("an SDXL UNet", "it takes SDXL's pooled text embedding and size conditions",
             "run it with graphs/sdxl.yaml (an SDXL refiner: as `refiner` of graphs/sdxl_refiner.yaml)"),
}


def sdxl_role(source: str | os.PathLike, revision: str | None = None,
              allow_pickle: bool = False) -> tuple[Role, dict[str, Any]]:
    """("base" | "refiner" | "sd", model_index.json) for a pipeline folder, hub repo or single-file checkpoint
    (whose family is read from its keys; it has no model_index.json, so {}).

    "sd" is any UNet without SDXL's `text_time` added embedding (Stable Diffusion 1.x/2.x). Base and refiner
    are told apart by how many time ids the added embedding takes: (its input width − the pooled text width)
    / `addition_time_embed_dim` is 6 for a base (sizes, crop, target size) and 5 for a refiner (sizes, crop,
    aesthetic score). A refiner also ships no first text encoder.
    """
    from nodegraph.models.single_file import is_single_file

    if is_single_file(source):
        from nodegraph.models.single_file.detect import detect
        from nodegraph.models.single_file.loader import opened

        family = detect(opened(source, allow_pickle).shapes, str(source)).name
        if family.endswith("_inpaint"):
            raise CheckpointError(f"{source} is an inpainting checkpoint (9-channel UNet input); the SDXL graphs "
                                  f"take text-to-image checkpoints.")
        return {"sdxl_base": "base", "sdxl_refiner": "refiner"}.get(family, "sd"), {}
    from nodegraph.models.flow_family import transformer_checkpoint

    if other := transformer_checkpoint(source, revision):
        raise CheckpointError(f"{source} is {other}.")
    index = read_config(source, "model_index", revision)
    unet = read_config(source, "unet", revision)
    if unet.get("addition_embed_type") != "text_time":
        return "sd", index
    te2 = read_config(source, "text_encoder_2", revision)
    pooled = te2.get("projection_dim")
    width, per_id = unet.get("projection_class_embeddings_input_dim"), unet.get("addition_time_embed_dim")
    if not all(isinstance(v, int) and v > 0 for v in (pooled, width, per_id)):
        raise CheckpointError(f"{source}: the SDXL UNet's `projection_class_embeddings_input_dim` ({width}), "
                              f"`addition_time_embed_dim` ({per_id}) or text_encoder_2's `projection_dim` "
                              f"({pooled}) is missing; the config files are incomplete.")
    ids, rest = divmod(width - pooled, per_id)
    if rest or ids not in (5, 6):
        raise CheckpointError(f"{source}: the SDXL UNet's added embedding takes {width} features, which fits "
                              f"neither a base (pooled {pooled} + 6 × {per_id}) nor a refiner (pooled + 5 × "
                              f"{per_id}).")
    return ("base" if ids == 6 else "refiner"), index


def unet_family(source: str | os.PathLike, revision: str | None = None, allow_pickle: bool = False) -> Family:
    """"sdxl" when the source's UNet has SDXL's `text_time` added embedding, else "sd" (Stable Diffusion 1.x/2.x),
    from unet/config.json, or for a single file from its keys (the family `detect` reads from the header)."""
    from nodegraph.models.single_file import is_single_file

    if is_single_file(source):
        from nodegraph.models.single_file.detect import detect
        from nodegraph.models.single_file.loader import opened

        return "sdxl" if detect(opened(source, allow_pickle).shapes, str(source)).name.startswith("sdxl") else "sd"
    return "sdxl" if read_config(source, "unet", revision).get("addition_embed_type") == "text_time" else "sd"


def refuse_other_family(source: str | os.PathLike, wanted: Family, input_name: str = "model",
                        revision: str | None = None, allow_pickle: bool = False) -> None:
    """Raise a ValueError naming `input_name` and the graph to use when `source`'s UNet is not of family `wanted`."""
    from nodegraph.models.flow_family import transformer_checkpoint

    if other := transformer_checkpoint(source, revision):
        raise ValueError(f"`{input_name}` {str(source)!r} is {other}.")
    found = unet_family(source, revision, allow_pickle)
    if found != wanted:
        unet, detail, graph = FAMILIES[found]
        raise ValueError(f"`{input_name}` {str(source)!r} holds {unet} ({detail}), but this graph needs "
                         f"{FAMILIES[wanted][0]}: {graph}.")
