"""Native torch models of diffusers-format checkpoints, and their loader.

    from nodegraph.models.loading import load_component, CheckpointError
    unet = load_component("path/or/org-name", "unet", dtype=torch.float16, device="cuda")

Submodules: one architecture a file (unet_2d, unet_2d_condition, autoencoder_kl, clip_text, clip_tokenizer; text
loads CLIP and its tokenizer), their layers (embeddings, resnet, attention, unet_blocks), config parsing (config) and
loading (sources: where files are; checkpoint: weight files and strict key fitting; loading: load_component).
"""
