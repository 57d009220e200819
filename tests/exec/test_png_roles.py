"""The PNG's A1111 `parameters` text reads its fields from the roles of the ports the graph's inputs feed
(core/types.py Role, spec/port_roles.py), never from the inputs' names. Nothing runs: the text is made from the
checked graph and the input values, as the image writer makes it."""

import json

from nodegraph import loads_graph
from nodegraph.core.types import PortType
from nodegraph.exec.png_metadata import PARAMETERS_KEY, RECIPE_KEY, metadata_hook
from nodegraph.exec.writers import OutputInfo

# Inputs with names A1111 does not use; `prompt` is a decoy that only feeds a text template; the negative
# prompt's encoder comes first, so only the data flow (into CFGEmbeddings' `uncond`) tells it apart.
GRAPH = """
inputs:
  ckpt: {type: str, default: builtin:digits}
  words: {type: str, default: a red fox}
  avoid: {type: str, default: blurry}
  s: {type: int, default: 5}
  n: {type: int, default: 12}
  cfg: {type: float, default: 6.5}
  sampler: {type: str, default: euler}
  prompt: {type: str, default: not the prompt}
nodes:
  clip: {type: LoadCLIP, model: $inputs.ckpt}
  scheduler: {type: LoadScheduler, model: $inputs.ckpt, scheduler: $inputs.sampler}
  seed: {type: Seed, seed: $inputs.s}
  avoided: {type: TextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer, prompt: $inputs.avoid}
  wanted: {type: TextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer, prompt: $inputs.words}
  cfg: {type: CFGEmbeddings, cond: $wanted.embeddings, uncond: $avoided.embeddings, guidance_scale: $inputs.cfg}
  timesteps: {type: SchedulerSetTimesteps, scheduler: $scheduler.scheduler, steps: $inputs.n}
  note: {type: FormatString, template: $inputs.prompt}
outputs: {embeddings: $cfg.embeddings, timesteps: $timesteps.timesteps, note: $note.text, g: $seed.generator}
"""


def parameters(graph, values: dict) -> list[str]:
    info = OutputInfo("image", PortType("Image"), graph=graph, inputs=values, size=(8, 8))
    return metadata_hook(info, 0)[PARAMETERS_KEY].splitlines()


def test_fields_come_from_the_roles_of_the_ports_the_inputs_feed_not_from_their_names():
    graph = loads_graph(GRAPH)
    values = {name: spec.default for name, spec in graph.checked.spec.inputs.items()}
    lines = parameters(graph, values)
    assert lines[0] == "a red fox"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2] == "Steps: 12, Sampler: Euler, CFG scale: 6.5, Seed: 5, Size: 8x8, Model: builtin:digits"
    assert "not the prompt" not in "\n".join(lines)


def test_an_input_named_like_an_a1111_field_that_feeds_no_such_role_is_left_out():
    graph = loads_graph("inputs:\n  prompt: {type: str, default: hello}\n  seed: {type: int, default: 3}\n"
                        "nodes:\n  t: {type: FormatString, template: '{x}', x: $inputs.seed}\n"
                        "  u: {type: FormatString, template: $inputs.prompt}\n"
                        "outputs: {a: $t.text, b: $u.text}\n")
    lines = parameters(graph, {"prompt": "hello", "seed": 3})
    assert lines == ["", "Size: 8x8"]  # neither is a prompt or a seed to any node
    info = OutputInfo("image", PortType("Image"), graph=graph, inputs={"prompt": "hello", "seed": 3}, size=(8, 8))
    assert json.loads(metadata_hook(info, 0)[RECIPE_KEY])["inputs"] == {"prompt": "hello", "seed": 3}  # all kept


def test_a_refiner_checkpoint_is_the_refiner_by_its_nodes_literal_role(tmp_path):
    graph = loads_graph("inputs:\n  base: {type: str}\n  second: {type: str}\n  frac: {type: float, default: 0.7}\n"
                        "nodes:\n  a: {type: SDXLCheckpoint, model: $inputs.base}\n"
                        "  b: {type: SDXLCheckpoint, model: $inputs.second, role: refiner}\n"
                        "outputs: {a: $a.model, b: $b.model}\n")
    base, refiner = str(tmp_path / "base"), str(tmp_path / "refiner")  # not there: no scheduler config is read
    lines = parameters(graph, {"base": base, "second": refiner, "frac": 0.7})
    assert lines[1] == f"Size: 8x8, Model: {base}, Refiner: {refiner}"
