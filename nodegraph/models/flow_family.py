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
    "StableDiffusion3": ("a Stable Diffusion 3 checkpoint", "graphs/sd3.yaml"),
    "StableDiffusion": ("a Stable Diffusion 1.x/2.x checkpoint", "graphs/stable_diffusion.yaml"),
    "Flux": ("a Flux checkpoint", None),
    "DDPM": ("a DDPM (pixel-space UNet) checkpoint", "graphs/ddpm.yaml"),
}


def z_image_problem(source: str | os.PathLike, revision: str | None = None, input_name: str = "model",
                    own_vae: bool = True) -> str | None:
    """None when `source` is a Z-Image pipeline folder or hub repo; else what it is and what to pass instead.
    `own_vae` False: another VAE replaces the pipeline's, so its latent width is not checked here."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    given = f"`{input_name}` {str(source)!r}"
    if is_single_file(source):
        return _single_file_problem(source, given, input_name)
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
    if own_vae and channels != transformer.get("in_channels", 16):
        return (f"{given}: its VAE has {channels} latent channels but the transformer takes "
                f"{transformer.get('in_channels', 16)}; Z-Image needs the 16-channel Flux VAE (ae.safetensors), "
                f"not an SD/SDXL VAE.")
    return None


def _single_file_problem(source, given: str, input_name: str) -> str | None:
    from nodegraph.models.single_file.detect import detect
    from nodegraph.models.single_file.loader import opened
    from nodegraph.models.single_file.z_image import detect_flow_file

    shapes = opened(source, False).shapes
    if flow := detect_flow_file(shapes):
        component = {"z_image_transformer": "transformer", "qwen3_text_encoder": "text_encoder"}[flow[0]]
        return (f"{given} holds a Z-Image {component.replace('_', ' ')} alone; pass it as `{component}`, with a "
                f"Z-Image pipeline folder or repo as `{input_name}` (the tokenizer, scheduler and "
                f"configs come from there).")
    try:
        family = detect(shapes, str(source)).name
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
    if kind and kind.startswith("StableDiffusion3"):
        return (f"a Stable Diffusion 3 checkpoint ({kind}: a flow-matching transformer, no UNet); run it with "
                f"graphs/sd3.yaml")
    return None


def component_problem(source: str | os.PathLike, name: str) -> str | None:
    """None when the file or folder `source`, given as component `name` ("transformer", "text_encoder", "vae") of
    a Z-Image graph, holds that component of this family; else what it holds. Keys, shapes and configs only."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    given = f"`{name}` {str(source)!r}"
    try:
        if name == "vae":
            channels = _vae_file_channels(source) if is_single_file(source) else \
                read_config(source, "vae").get("latent_channels", 4)
            if channels != 16:
                return (f"{given} is a VAE with {channels} latent channels; Z-Image needs the 16-channel Flux VAE "
                        f"(ae.safetensors), not an SD/SDXL VAE.")
            return None
        if is_single_file(source):
            return _file_problem(source, name, given)
        config = read_config(source, name)
    except CheckpointError as exc:
        return f"{given}: {exc}"
    if name == "transformer" and config.get("_class_name") != "ZImageTransformer2DModel":
        return f"{given} holds a {config.get('_class_name')}, not a Z-Image transformer (ZImageTransformer2DModel)."
    if name == "text_encoder" and config.get("model_type") != "qwen3":
        kind = config.get("model_type") or (config.get("architectures") or ["another model"])[0]
        return f"{given} holds a {kind} text encoder; Z-Image needs its Qwen3 encoder (e.g. qwen_3_4b.safetensors)."
    return None


def _vae_file_channels(source) -> int:
    """Latent channels of a VAE file, from the shape of its decoder's first convolution (any key prefix)."""
    from nodegraph.models.single_file.loader import opened

    shapes = opened(source, False).shapes
    for key in ("decoder.conv_in.weight",):
        found = [shape for k, shape in shapes.items() if k.endswith(key)]
        if found:
            return found[0][1]  # (out, latent channels, 3, 3)
    raise CheckpointError(f"{source} has no VAE decoder (no `decoder.conv_in.weight`): is it a VAE file?")


def _file_problem(source, name: str, given: str) -> str | None:
    """A transformer or text-encoder file: its family from its keys (what it is otherwise, as the file reader
    says it)."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file.loader import opened
    from nodegraph.models.single_file.z_image import detect_flow_file

    found = detect_flow_file(opened(source, False).shapes)
    if found and found[0] == {"transformer": "z_image_transformer", "text_encoder": "qwen3_text_encoder"}[name]:
        return None
    read_config(source, name)  # raises CheckpointError saying what the file holds
    return f"{given} is not a Z-Image {name} file."

