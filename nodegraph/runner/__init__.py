"""The one public way from a front-end (CLI, ComfyUI command, server, batch, a Python caller) to the core.

    from nodegraph.runner import Runner, RunMode, open_target
    target = open_target("graphs/stable_diffusion.yaml", scratch)   # or hf://…, a PNG, a bundle, a workflow
    values = target.bind(["seed=5"])                               # --set strings over recorded values
    runner = Runner(RunMode(device="cpu", fast=target.recorded_fast))
    outputs = runner.run(target.graph, values, hooks=[...], cancel=token)
    written = runner.write(target, values, outputs, pathlib.Path("out"))

`prepare_process()` once per process (PNG metadata, allocator tuning); `interactive()` for Ctrl-C.
"""

from nodegraph.core.mode import RunMode
from nodegraph.runner.process import interactive, prepare_process
from nodegraph.runner.run import Runner, Written, describe_failure, inputs_feeding, write_outputs
from nodegraph.runner.target import Target, is_comfy_target, open_target

__all__ = ["RunMode", "Runner", "Target", "Written", "describe_failure", "inputs_feeding", "interactive",
           "is_comfy_target", "open_target", "prepare_process", "write_outputs"]
