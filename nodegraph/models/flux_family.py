"""Is a source a Flux.1 checkpoint, and which (dev: a guidance embedding; schnell: none)? Read from config files
(or a single file's key index) alone, so a checkpoint of another family is refused before any weight loads."""

from __future__ import annotations

import os

from nodegraph.models.errors import CheckpointError

FLUX_PIPELINES = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline")  # one set of components
FLUX_NEEDS = ("a Flux.1 pipeline (FluxPipeline: CLIP-L, T5-XXL, a FluxTransformer2DModel and the 16-channel VAE), "
              "e.g. black-forest-labs/FLUX.1-dev or black-forest-labs/FLUX.1-schnell")
OTHERS = {  # model_index _class_name prefix → (what it is, the graph that runs it)
    "StableDiffusionXL": ("an SDXL checkpoint", "graphs/sdxl.yaml"),
    "StableDiffusion3": ("a Stable Diffusion 3 checkpoint", "graphs/sd3.yaml"),
    "StableDiffusion": ("a Stable Diffusion 1.x/2.x checkpoint", "graphs/stable_diffusion.yaml"),
    "ZImage": ("a Z-Image checkpoint", "graphs/z_image.yaml"),
    "Flux": ("a Flux variant this graph does not run (Fill, Control, Kontext, ...)", None),
    "DDPM": ("a DDPM (pixel-space UNet) checkpoint", "graphs/ddpm.yaml"),
}


def flux_problem(source: str | os.PathLike, revision: str | None = None, input_name: str = "model",
                 graph: str = "graphs/flux.yaml") -> str | None:
    """None when `source` is a Flux.1 pipeline folder or hub repo; else what it is and what to pass instead."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    given = f"`{input_name}` {str(source)!r}"
    if is_single_file(source):
        return _single_file_problem(source, given, input_name, graph)
    try:
        kind = read_config(source, "model_index", revision).get("_class_name")
        if kind and kind not in FLUX_PIPELINES:
            what, other = next((v for k, v in OTHERS.items() if kind.startswith(k)), (f"a {kind}", None))
            run = f"; run it with {other}" if other else ""
            return f"{given} is {what} ({kind}), but {graph} needs {FLUX_NEEDS}{run}."
        transformer = read_config(source, "transformer", revision)
        vae = read_config(source, "vae", revision)
    except CheckpointError as exc:
        return f"{given} is not a Flux pipeline ({exc}); pass {FLUX_NEEDS}."
    if transformer.get("_class_name") != "FluxTransformer2DModel":
        return (f"{given}: its transformer is a {transformer.get('_class_name')}, not a FluxTransformer2DModel; "
                f"pass {FLUX_NEEDS}.")
    channels, features = vae.get("latent_channels", 4), transformer.get("in_channels", 64)
    if channels * 4 != features:
        return (f"{given}: its VAE has {channels} latent channels but the transformer takes {features} features "
                f"(4 per latent channel, packed 2×2); Flux.1 text-to-image needs {channels * 4}: is this Fill or "
                f"Depth? Pass {FLUX_NEEDS}.")
    return None


def _single_file_problem(source, given: str, input_name: str, graph: str) -> str | None:
    from nodegraph.models.single_file.detect import detect
    from nodegraph.models.single_file.flux import detect_flux_file
    from nodegraph.models.single_file.loader import opened
    from nodegraph.models.single_file.z_image import detect_flow_file

    shapes = opened(source, False).shapes
    if detect_flux_file(shapes) is not None and any(k.startswith("text_encoders.") for k in shapes):
        return (f"{given} is an all-in-one Flux checkpoint; pass it as `transformer`, `text_encoder`, "
                f"`text_encoder_2` and `vae`, with a Flux pipeline folder or repo as `{input_name}` (the tokenizers, "
                f"scheduler and configs come from there).")
    if detect_flux_file(shapes) is not None:
        return (f"{given} holds a Flux transformer (BFL's layout); pass it as `transformer`, with a Flux pipeline "
                f"folder or repo as `{input_name}` (the text encoders, tokenizers, VAE, scheduler and configs come "
                f"from there).")
    if detect_flow_file(shapes):
        return f"{given} is a Z-Image file, not Flux; run it with graphs/z_image.yaml, or pass {FLUX_NEEDS}."
    try:
        family = detect(shapes, str(source)).name
    except CheckpointError:
        return f"{given} is not a Flux pipeline; pass {FLUX_NEEDS}."
    other = "graphs/sdxl.yaml" if family.startswith("sdxl") else "graphs/stable_diffusion.yaml"
    return (f"{given} is a {family} single-file checkpoint (a UNet, not a Flux transformer); run it with {other}, "
            f"or pass {FLUX_NEEDS}.")


def transformer_problem(source: str | os.PathLike, name: str = "transformer") -> str | None:
    """None when `source` (given as the graph input `name`) is a Flux transformer file or folder."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    given = f"`{name}` {str(source)!r}"
    try:
        if is_single_file(source):
            from nodegraph.models.single_file.flux import detect_flux_file
            from nodegraph.models.single_file.loader import opened

            if detect_flux_file(opened(source, False).shapes) is not None:
                return None
            read_config(source, "transformer")  # raises, saying what the file holds
            return f"{given} is not a Flux transformer file."
        kind = read_config(source, "transformer").get("_class_name")
    except CheckpointError as exc:
        return f"{given}: {exc}"
    return None if kind == "FluxTransformer2DModel" else f"{given} holds a {kind}, not a FluxTransformer2DModel."


def latent_channels(model: str | os.PathLike, revision: str | None = None) -> int:
    """The VAE latent channels the model's transformer takes (its input features / 4, packed 2×2)."""
    from nodegraph.models.loading import read_config

    return read_config(model, "transformer", revision).get("in_channels", 64) // 4


def has_guidance(model: str | os.PathLike, transformer: str | os.PathLike = "", revision: str | None = None) -> bool:
    """Whether the transformer (`transformer` when given, else the model's) has dev's guidance embedding."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    if transformer and is_single_file(transformer):  # BFL's layout: dev has `guidance_in`, schnell not
        from nodegraph.models.single_file.loader import opened

        return any(".guidance_in." in f".{key}" for key in opened(transformer, False).shapes)
    if transformer:
        return bool(read_config(transformer, "transformer").get("guidance_embeds", False))
    return bool(read_config(model, "transformer", revision).get("guidance_embeds", False))


TEXT_SLOTS = {"text_encoder": ("clip", "CLIP-L (e.g. clip_l.safetensors)"),
              "text_encoder_2": ("t5", "T5-XXL (e.g. t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors)")}


def component_problem(source: str | os.PathLike, name: str, latent_channels: int = 16) -> str | None:
    """None when `source`, given as the graph input `name` ("transformer", "text_encoder" = CLIP-L,
    "text_encoder_2" = T5, "vae" with `latent_channels`), holds that Flux component; else what it holds. Keys,
    shapes, configs only."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    if name == "transformer":
        return transformer_problem(source)
    given = f"`{name}` {str(source)!r}"
    try:
        if name == "vae":
            if is_single_file(source):
                from nodegraph.models.flow_family import _vae_file_channels

                channels = _vae_file_channels(source)
            else:
                channels = read_config(source, "vae").get("latent_channels", 4)
            return None if channels == latent_channels else (
                f"{given} is a VAE with {channels} latent channels; this Flux transformer needs {latent_channels} "
                f"(Flux's VAE, ae.safetensors), not an SD/SDXL VAE.")
        wanted, needs = TEXT_SLOTS[name]
        if is_single_file(source):
            from nodegraph.models.single_file.loader import opened
            from nodegraph.models.single_file.text_files import WHAT, all_in_one_part, detect_text_file

            ckpt = opened(source, False)
            kind = detect_text_file(ckpt.shapes)
            if kind == wanted or (kind is None and all_in_one_part(ckpt, name) is not None):
                return None  # a text-encoder file, or an all-in-one checkpoint holding this one
            holds = WHAT[kind] if kind else "no CLIP or T5 text encoder alone"
            return f"{given} holds {holds}; `{name}` takes {needs}."
        config = read_config(source, name)
    except CheckpointError as exc:
        return f"{given}: {exc}"
    kind = "t5" if config.get("model_type") == "t5" else "clip" if "clip" in str(config.get("model_type")) else None
    return None if kind == wanted else f"{given} holds a {config.get('model_type')} model; `{name}` takes {needs}."
