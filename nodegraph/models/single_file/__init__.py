"""Single-file checkpoints: the `.safetensors` (or, allowed explicitly, `.ckpt`) files in the original CompVis
LDM / Stability SGM layout, read straight into nodegraph's models without a converted copy.

`detect` names the family from keys and shapes; `ldm_unet`, `ldm_vae` and `clip` remap keys into a load plan;
`configs/` holds the standard configs of each family; `loader` puts it together for `load_component`.
"""

__all__ = ["is_single_file", "load_single_file", "load_vae_file", "read_single_file_config"]


def __getattr__(name: str):
    # Lazy: `nodegraph inspect` is registered with the CLI parser, and building the parser must not import
    # torch (validation and `nodegraph show` stay torch-free); the loader imports torch.
    if name in __all__:
        from nodegraph.models.single_file import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
