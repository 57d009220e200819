"""The node-output cache: what runs again after an input changes, and that results never change.

Expected results come from the same graph run without a cache; `euler_a` draws from the generator at every
step, so a wrong generator state after a cached noise draw would show in the image.
"""

import pathlib

import pytest

import nodegraph.exec.cache as cache_module
from nodegraph import RunOptions, load_graph, loads_graph
from nodegraph.exec import events as ev

SD = pathlib.Path(__file__).parents[2] / "graphs" / "stable_diffusion.yaml"
BASE = dict(model="builtin:digits", prompt="a handwritten digit 7", steps=3, scheduler="euler_a", seed=1)


class DictCache(dict):
    def put(self, signature, outputs):
        self[signature] = outputs


class TopLevel(list):
    """Ids of the top-level steps that ran, and of those served from the cache."""

    def __init__(self):
        super().__init__()
        self.cached: list[str] = []
        self._depth = 0

    def __call__(self, event):
        if isinstance(event, ev.RepeatStarted):
            self._depth += 1
        elif isinstance(event, ev.RepeatFinished):
            self._depth -= 1
        elif isinstance(event, ev.NodeStarted) and self._depth == 0 and "/" not in event.node_id:
            self.append(event.node_id)
        elif isinstance(event, ev.NodeCached):
            self.cached.append(event.node_id)


@pytest.fixture(scope="module")
def sd():
    return load_graph(SD)


def run(graph, cache, **changes):
    ran = TopLevel()
    image = graph.run(RunOptions(hooks=[ran], cache=cache), **{**BASE, **changes})["image"]
    return image, ran


def test_identical_rerun_executes_nothing_and_gives_the_uncached_image(sd):
    cache = DictCache()
    first, ran = run(sd, cache)
    assert ran == sd.plan().order and ran.cached == []
    again, ran = run(sd, cache)
    assert ran == [] and "decode" in ran.cached
    assert (again - sd.run(**BASE)["image"]).abs().max().item() == 0


def test_prompt_change_reruns_the_text_branch_and_below_with_the_uncached_image(sd):
    cache = DictCache()
    run(sd, cache)
    image, ran = run(sd, cache, prompt="a handwritten digit 3")
    # scheduler, seed, timesteps and noise make the in-place state (scheduler steps, generator draws) the loop
    # continues from, so they run again with it; models, the negative prompt and its encoding do not
    assert ran == ["scheduler", "seed", "cond", "embeddings", "timesteps", "noise", "denoise", "decode"]
    assert "uncond" in ran.cached
    expected = sd.run(**{**BASE, "prompt": "a handwritten digit 3"})["image"]
    assert (image - expected).abs().max().item() == 0
    assert (image - sd.run(**BASE)["image"]).abs().max().item() > 0.05


def test_seed_change_reruns_from_the_noise_on_and_keeps_the_text_branch(sd):
    cache = DictCache()
    run(sd, cache)
    image, ran = run(sd, cache, seed=2)
    assert ran == ["scheduler", "seed", "timesteps", "noise", "denoise", "decode"]
    assert "embeddings" in ran.cached  # cond and uncond are not even looked up
    assert (image - sd.run(**{**BASE, "seed": 2})["image"]).abs().max().item() == 0


def test_without_rerunning_the_noise_draw_the_stochastic_loop_would_differ(sd, monkeypatch):
    """The forced re-run of earlier readers of the generator is what keeps the prompt-change image exact."""
    original = cache_module.CachePlan.__init__

    def no_forcing(self, plan):
        original(self, plan)
        self.earlier = {key: [] for key in self.earlier}

    monkeypatch.setattr(cache_module.CachePlan, "__init__", no_forcing)
    monkeypatch.setattr(cache_module, "_PLANS", cache_module.weakref.WeakKeyDictionary())
    cache = DictCache()
    run(sd, cache)
    image, ran = run(sd, cache, prompt="a handwritten digit 3")
    assert "noise" not in ran
    expected = sd.run(**{**BASE, "prompt": "a handwritten digit 3"})["image"]
    assert (image - expected).abs().max().item() > 1e-3


def test_an_impure_node_runs_every_time_and_so_does_everything_below_it(tmp_path):
    from PIL import Image

    picture = tmp_path / "in.png"
    graph = loads_graph(f"""
nodes:
  load: {{type: LoadImage, path: "{picture}"}}
  mean: {{type: FormatString, template: "{{x}}", x: $load.image}}
outputs: {{image: $load.image, text: $mean.text}}
""", base_dir=tmp_path)
    cache = DictCache()
    Image.new("RGB", (8, 8), (0, 0, 0)).save(picture)
    ran = TopLevel()
    dark = graph.run(RunOptions(hooks=[ran], cache=cache))["image"]
    Image.new("RGB", (8, 8), (255, 255, 255)).save(picture)
    ran = TopLevel()
    light = graph.run(RunOptions(hooks=[ran], cache=cache))["image"]
    assert ran == ["load", "mean"] and ran.cached == []
    assert light.mean() > dark.mean()


def test_changed_literal_in_a_graph_misses_and_equal_literal_hits(graph):
    cache = DictCache()
    text = "nodes:\n  a: {type: Add, a: 1, b: %s}\n  m: {type: Multiply, a: $a.value, b: 2}\noutputs: {x: $m.value}\n"
    ran = TopLevel()
    assert graph(text % "2").run(RunOptions(hooks=[ran], cache=cache)) == {"x": 6}
    ran = TopLevel()
    assert graph(text % "2").run(RunOptions(hooks=[ran], cache=cache)) == {"x": 6}
    assert ran == [] and ran.cached == ["m"]
    ran = TopLevel()
    assert graph(text % "2.5").run(RunOptions(hooks=[ran], cache=cache)) == {"x": 7.0}
    assert ran == ["a", "m"]


def test_a_file_named_by_a_literal_or_an_input_is_read_again_when_it_changes(tmp_path):
    from nodegraph.core import Node, Ports, node
    from nodegraph.core.registry import Registry
    from nodegraph.core.types import FilePath

    @node("ReadText", version=1, register=False)
    class ReadText(Node):
        """Reads two text files (a pure node: same files, same output); its ports say they are file paths."""

        class Inputs(Ports):
            first: FilePath
            second: FilePath

        class Outputs(Ports):
            text: str

        def run(self, i, ctx):
            return {"text": open(i.first).read() + open(i.second).read()}

    registry = Registry(plugins=False)
    registry.add(ReadText)
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("a")
    second.write_text("b")
    graph = loads_graph(f"""
inputs: {{first: {{type: str}}}}
nodes:
  read: {{type: ReadText, first: $inputs.first, second: "{second}"}}
outputs: {{text: $read.text}}
""", base_dir=tmp_path, registry=registry)

    def run():
        ran = TopLevel()
        return graph.run(RunOptions(hooks=[ran], cache=cache), first=str(first))["text"], ran

    cache = DictCache()
    assert run()[0] == "ab"
    assert run() == ("ab", [])
    first.write_text("A!")  # a new size: the test does not depend on the clock's resolution
    assert run() == ("A!b", ["read"])
    second.write_text("B!")
    assert run() == ("A!B!", ["read"])
    assert run() == ("A!B!", [])


def test_dtype_and_fast_mode_are_part_of_the_signature_so_one_cache_never_mixes_runs(sd):
    cache = DictCache()
    plain, _ = run(sd, cache)
    ran = TopLevel()
    bf16 = sd.run(RunOptions(hooks=[ran], cache=cache, dtype="bf16"), **BASE)["image"]
    assert ran == sd.plan().order and ran.cached == []  # an fp32 run's outputs never serve a bf16 run
    assert (bf16 - plain).abs().max().item() > 0  # the fixture tells the dtypes apart
    ran = TopLevel()
    sd.run(RunOptions(hooks=[ran], cache=cache, dtype="bf16", fast=True), **BASE)
    assert ran == sd.plan().order and ran.cached == []  # nor a default run's a fast one
    again, ran = run(sd, cache)
    assert ran == [] and "decode" in ran.cached and (again - plain).abs().max().item() == 0
