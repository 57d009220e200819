"""Single-file checkpoints: the `.safetensors` (or, allowed explicitly, `.ckpt`) files in the original CompVis
LDM / Stability SGM layout, read straight into nodegraph's models without a converted copy.

`detect` names the family from keys and shapes; `ldm_unet`, `ldm_vae` and `clip` remap keys into a load plan;
`configs/` holds the standard configs of each family; `loader` puts it together for `load_component`.
"""

from nodegraph.models.single_file.loader import (is_single_file, load_single_file, load_vae_file,
                                                 read_single_file_config)

__all__ = ["is_single_file", "load_single_file", "load_vae_file", "read_single_file_config"]
