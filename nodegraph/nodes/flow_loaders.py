"""Loader nodes of the flow-matching transformer families (Z-Image today): the family check that runs before
anything loads, the denoising transformer, and a text encoder with its tokenizer. The VAE and the scheduler load
through LoadVAE and LoadScheduler, whose meaning is the same for every family."""

from __future__ import annotations

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import ModelSource, TextEncoder, Tokenizer, Transformer
from nodegraph.nodes.loaders import CheckpointInputs, load_cached


@node("ZImageCheckpoint", version=1)
class ZImageCheckpoint(Node):
    """Check that `model` is a Z-Image pipeline before anything loads: its model_index.json, transformer class and
    VAE latent width (16 channels), from config files only (an SD/SDXL single file from its key index).

    Passes `model` on: wire the loaders to it, so they run after the check. `input_name` names the graph input
    in messages.
    """

    class Inputs(CheckpointInputs):
        input_name: str = Field("model", description="the graph input that feeds `model`, for messages")

    class Outputs(Ports):
        model: ModelSource  # `model` passed on: a location, checked where it enters

    def run(self, i, ctx):
        from nodegraph.models.flow_family import z_image_problem

        problem = ctx.components.get_or_load(("z-image-check", i.model, i.revision, i.input_name),
                                             lambda: z_image_problem(i.model, i.revision, i.input_name) or "")
        if problem:
            raise ValueError(problem)
        return {"model": i.model}


@node("LoadTransformer", version=1)
class LoadTransformer(Node):
    """Load the denoising transformer of a checkpoint (ZImageTransformer2DModel), in the run's dtype."""

    Inputs = CheckpointInputs

    class Outputs(Ports):
        transformer: Transformer

    def run(self, i, ctx):
        return {"transformer": load_cached(i, "transformer", ctx)}


@node("LoadTextEncoder", version=1)
class LoadTextEncoder(Node):
    """Load a checkpoint's text encoder and its tokenizer, whatever the family (Z-Image: Qwen3 and its Qwen2
    tokenizer with the chat template). TextEncode encodes with them the way that family's pipeline does."""

    Inputs = CheckpointInputs

    class Outputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer

    def run(self, i, ctx):
        return {"text_encoder": load_cached(i, "text_encoder", ctx),
                "tokenizer": load_cached(i, "tokenizer", ctx, placed=False)}
