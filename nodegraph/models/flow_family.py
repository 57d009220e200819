"""Is a source a Z-Image checkpoint? Read from its config files (or a single file's key index) alone, so a
checkpoint of another family, or a VAE with the wrong latent width, is refused before any weight loads."""

from __future__ import annotations

import os

from nodegraph.models.errors import CheckpointError

Z_IMAGE_PIPELINES = ("ZImagePipeline", "ZImageImg2ImgPipeline")
Z_IMAGE_NEEDS = ("a Z-Image pipeline (ZImagePipeline: a Qwen3 text encoder, a ZImageTransformer2DModel and a "
                 "16-channel Flux-style VAE), e.g. Tongyi-MAI/Z-Image-Turbo")
OTHER_PIPELINES = {  # model_index _class_name prefix → (what it is, the graph that runs it)
    "StableDiffusionXL": ("an SDXL checkpoint", "graphs/sdxl.yaml"),
    "StableDiffusion3": ("a Stable Diffusion 3 checkpoint", None),
    "StableDiffusion": ("a Stable Diffusion 1.x/2.x checkpoint", "graphs/stable_diffusion.yaml"),
    "Flux": ("a Flux checkpoint", None),
    "DDPM": ("a DDPM (pixel-space UNet) checkpoint", "graphs/ddpm.yaml"),
}


def z_image_problem(source: str | os.PathLike, revision: str | None = None, input_name: str = "model") -> str | None:
    """None when `source` is a Z-Image pipeline folder or hub repo; else what it is and what to pass instead."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    given = f"`{input_name}` {str(source)!r}"
    if is_single_file(source):
        return _single_file_problem(source, given)
    try:
        index = read_config(source, "model_index", revision)
        kind = index.get("_class_name")
        if kind and kind not in Z_IMAGE_PIPELINES:
            what, graph = next((v for k, v in OTHER_PIPELINES.items() if kind.startswith(k)), (f"a {kind}", None))
            run = f"; run it with {graph}" if graph else ""
            return f"{given} is {what} ({kind}), but graphs/z_image.yaml needs {Z_IMAGE_NEEDS}{run}."
        transformer = read_config(source, "transformer", revision)
        vae = read_config(source, "vae", revision)
    except CheckpointError as exc:
        return f"{given} is not a Z-Image pipeline ({exc}); pass {Z_IMAGE_NEEDS}."
    if transformer.get("_class_name") != "ZImageTransformer2DModel":
        return (f"{given}: its transformer is a {transformer.get('_class_name')}, not a ZImageTransformer2DModel; "
                f"pass {Z_IMAGE_NEEDS}.")
    channels = vae.get("latent_channels", 4)
    if channels != transformer.get("in_channels", 16):
        return (f"{given}: its VAE has {channels} latent channels but the transformer takes "
                f"{transformer.get('in_channels', 16)}; Z-Image needs the 16-channel Flux VAE (ae.safetensors), "
                f"not an SD/SDXL VAE.")
    return None


def _single_file_problem(source, given: str) -> str | None:
    from nodegraph.models.single_file.detect import detect
    from nodegraph.models.single_file.loader import opened

    try:
        family = detect(opened(source, False).shapes, str(source)).name
    except CheckpointError:
        return None  # not an SD-family file: the Z-Image loaders read it and say what they find
    graph = "graphs/sdxl.yaml" if family.startswith("sdxl") else "graphs/stable_diffusion.yaml"
    return (f"{given} is a {family} single-file checkpoint (a UNet, not a Z-Image transformer); run it with "
            f"{graph}, or pass {Z_IMAGE_NEEDS}.")


def transformer_checkpoint(source: str | os.PathLike, revision: str | None = None) -> str | None:
    """For the UNet graphs: what `source` is when it is a Z-Image pipeline (a transformer, no UNet), and the graph
    that runs it; None otherwise (single files and UNet folders)."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    if is_single_file(source):
        return None
    kind = read_config(source, "model_index", revision).get("_class_name")
    if kind in Z_IMAGE_PIPELINES:
        return f"a Z-Image checkpoint ({kind}: a flow-matching transformer, no UNet); run it with graphs/z_image.yaml"
    return None
