"""Is a source a Stable Diffusion 3 / 3.5 checkpoint? Read from its config files (or a single file's key index)
alone, so a checkpoint of another family, or a VAE whose latent width does not fit the transformer, is refused
before any weight loads."""

from __future__ import annotations

import os

from nodegraph.models.errors import CheckpointError

SD3_NEEDS = ("a Stable Diffusion 3 / 3.5 pipeline (StableDiffusion3Pipeline: CLIP-L, OpenCLIP bigG, T5-XXL, an "
             "SD3Transformer2DModel and the 16-channel VAE), e.g. stabilityai/stable-diffusion-3.5-large or "
             "stabilityai/stable-diffusion-3.5-medium")
OTHERS = {  # model_index _class_name prefix → (what it is, the graph that runs it)
    "StableDiffusionXL": ("an SDXL checkpoint", "graphs/sdxl.yaml"),
    "StableDiffusion": ("a Stable Diffusion 1.x/2.x checkpoint", "graphs/stable_diffusion.yaml"),
    "Flux": ("a Flux checkpoint", "graphs/flux.yaml"),
    "ZImage": ("a Z-Image checkpoint", "graphs/z_image.yaml"),
    "DDPM": ("a DDPM (pixel-space UNet) checkpoint", "graphs/ddpm.yaml"),
}


def sd3_problem(source: str | os.PathLike, revision: str | None = None, input_name: str = "model",
                graph: str = "graphs/sd3.yaml") -> str | None:
    """None when `source` is an SD3 pipeline folder or hub repo, or an SD3 single file; else what it is and what
    to pass instead."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    given = f"`{input_name}` {str(source)!r}"
    if is_single_file(source):
        return _single_file_problem(source, given, graph)
    try:
        kind = read_config(source, "model_index", revision).get("_class_name")
        if kind and not kind.startswith("StableDiffusion3"):
            what, other = next((v for k, v in OTHERS.items() if kind.startswith(k)), (f"a {kind}", None))
            run = f"; run it with {other}" if other else ""
            return f"{given} is {what} ({kind}), but {graph} needs {SD3_NEEDS}{run}."
        transformer = read_config(source, "transformer", revision)
        vae = read_config(source, "vae", revision)
    except CheckpointError as exc:
        return f"{given} is not an SD3 pipeline ({exc}); pass {SD3_NEEDS}."
    if transformer.get("_class_name") != "SD3Transformer2DModel":
        return (f"{given}: its transformer is a {transformer.get('_class_name')}, not an SD3Transformer2DModel; "
                f"pass {SD3_NEEDS}.")
    channels, features = vae.get("latent_channels", 4), transformer.get("in_channels", 16)
    if channels != features:
        return (f"{given}: its VAE has {channels} latent channels but the transformer takes {features}; "
                f"pass {SD3_NEEDS}.")
    return None


def _single_file_problem(source, given: str, graph: str) -> str | None:
    """A single file: SD3's layout passes (all-in-one or the transformer alone); another family is named with
    the graph that runs it."""
    from nodegraph.models.single_file.detect import detect
    from nodegraph.models.single_file.loader import opened
    from nodegraph.models.single_file.sd3 import detect_sd3_file

    shapes = opened(source, False).shapes
    if detect_sd3_file(shapes) is not None:
        return None
    try:
        family = detect(shapes, str(source)).name
    except CheckpointError:
        return f"{given} is a single file nodegraph does not read as SD3; pass {SD3_NEEDS}."
    other = "graphs/sdxl.yaml" if family.startswith("sdxl") else "graphs/stable_diffusion.yaml"
    return (f"{given} is a {family} single-file checkpoint (a UNet, not an SD3 transformer); run it with {other}, "
            f"or pass {SD3_NEEDS}.")
