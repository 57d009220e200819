"""`nodegraph run WORKFLOW.json` runs like `nodegraph run graph.yaml`: the import adds no model work to the run
(one header parse by the loaders, each model loaded once, no torch before the run), tunes the allocator before
anything is loaded, reads the weights ahead as a graph file's run does, logs with `-v`, and stops cleanly at the
next step on Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import workflows
from workflows import DEFAULT_API, run_cli


@pytest.fixture(scope="module")
def spied_run(models_dir, sd1_folder, tmp_path_factory):
    """One `nodegraph run workflow.json -v` of ComfyUI's default workflow with spies on the checkpoint's header
    parse, the component loads and the allocator tuning: (calls in order, load counts, stderr)."""
    import nodegraph.exec.heap as heap
    import nodegraph.exec.prefetch as prefetch
    import nodegraph.models.loading as loading
    import nodegraph.models.single_file.loader as single_file

    calls: list[str] = []
    loads: Counter = Counter()
    real_open, real_load, real_heap = single_file.open_checkpoint, loading.load_component, heap.reuse_freed_heap
    real_prefetch = prefetch.start_prefetch

    def open_checkpoint(path, *args, **kwargs):
        calls.append("header")
        return real_open(path, *args, **kwargs)

    def load_component(source, component, **kwargs):
        loads[component] += 1
        calls.append(f"load {component}")
        return real_load(source, component, **kwargs)

    def reuse_freed_heap():
        calls.append("heap")
        return real_heap()

    def start_prefetch(graph, values):
        files = prefetch.files_for_run(graph.plan(), values)
        calls.append("prefetch " + " ".join(sorted({path.name for path in files})))
        return real_prefetch(graph, values)

    patch = pytest.MonkeyPatch()
    patch.setattr(prefetch, "start_prefetch", start_prefetch)
    patch.setattr(single_file, "open_checkpoint", open_checkpoint)
    patch.setattr(loading, "load_component", load_component)
    patch.setattr(heap, "reuse_freed_heap", reuse_freed_heap)
    single_file._opened.cache_clear()  # parsed headers are kept per process: start from none
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            run_cli(tmp_path_factory.mktemp("spied"), DEFAULT_API, models_dir, sd1_folder, "-v")
    finally:
        patch.undo()
    return calls, loads, stderr.getvalue()


def test_workflow_run_loaders_parse_the_checkpoint_header_once(spied_run):
    calls, _, _ = spied_run
    assert calls.count("header") == 1  # the three loaders share one parse; the translation reads names and shapes


def test_workflow_run_loads_each_model_of_the_checkpoint_once(spied_run):
    _, loads, _ = spied_run
    assert {name: loads[name] for name in ("unet", "text_encoder", "vae")} == {"unet": 1, "text_encoder": 1, "vae": 1}


def test_workflow_run_tunes_the_allocator_before_reading_the_checkpoint(spied_run):
    calls, _, _ = spied_run
    assert calls[0] == "heap", calls[:3]  # as `nodegraph run graph.yaml`: before the translation reads the file


def test_workflow_run_reads_the_checkpoint_ahead_before_any_load(spied_run):
    calls, _, _ = spied_run
    reads_ahead = [c for c in calls if c.startswith("prefetch")]
    assert reads_ahead == ["prefetch tiny-sd1.safetensors"]
    assert calls.index(reads_ahead[0]) < min(i for i, c in enumerate(calls) if c.startswith(("load", "header")))


def test_translating_a_workflow_does_not_import_torch(models_dir, tmp_path):
    """torch is imported by the run's first loader, while the prefetch reads the weights, as for a graph file."""
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(DEFAULT_API))
    script = (f"import argparse, pathlib, sys\n"
              f"from nodegraph.comfy.command import load_translated\n"
              f"args = argparse.Namespace(models=[{str(models_dir)!r}], extra_model_paths=None, set=[], input=[])\n"
              f"graph = load_translated({str(workflow)!r}, args, pathlib.Path({str(tmp_path)!r}))[0]\n"
              f"assert graph.spec.nodes, 'nothing translated'\n"
              f"print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_verbose_workflow_run_logs_every_node_with_its_time(spied_run):
    _, _, stderr = spied_run
    for node_id in ("ckpt4_unet", "text6", "ksampler3", "decode8"):
        assert f"started {node_id} (" in stderr
        assert f"finished {node_id} in " in stderr


def test_imported_workflow_dispatches_the_same_torch_ops_as_the_graph_written_by_hand(models_dir, sd1_folder,
                                                                                        tmp_path):
    """Op for op (name, input shapes, dtypes, memory layout), each run loading its models afresh: the included
    step graph, the `history` state and the import's other wiring add no tensor work — no second load, no extra
    copy, cast or `.contiguous()` per step."""
    import argparse
    from collections import Counter

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from nodegraph.comfy.command import load_translated
    from nodegraph.comfy.schedules import sigma_table
    from nodegraph.exec.executor import run_graph
    from nodegraph.exec.run_scoped import RunScopedComponents
    from nodegraph.spec.loader import load_graph

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = tuple((tuple(a.shape), a.dtype, a.is_contiguous()) for a in args if isinstance(a, torch.Tensor))
            self.ops[(str(func), tensors)] += 1
            return func(*args, **(kwargs or {}))

    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(DEFAULT_API))
    options = argparse.Namespace(models=[str(models_dir)], extra_model_paths=None, set=[], input=[])
    imported = load_translated(str(workflow), options, tmp_path)[0]
    (tmp_path / "hand.yaml").write_text(workflows.HAND_WRITTEN)
    hand = load_graph(tmp_path / "hand.yaml")
    runs = {"imported": (imported, {"config": str(sd1_folder)}),
            "hand": (hand, {"model": str(models_dir / "checkpoints" / "tiny-sd1.safetensors"),
                            "config": str(sd1_folder)})}
    sigma_table()  # SD's σ table is made once per process: not by whichever run comes first
    counted, images = {}, {}
    for name, (graph, values) in runs.items():
        with CountOps() as ops:  # a cache of the run's own, as `nodegraph run` has: each run loads its models
            out = run_graph(graph, values, device="cpu", components=RunScopedComponents())
        counted[name], images[name] = ops.ops, out.get("image", out.get("save9"))
    assert sum(counted["hand"].values()) > 100  # the counter saw the run
    assert counted["imported"] == counted["hand"]
    assert torch.equal(images["imported"], images["hand"])


def test_ctrl_c_during_a_workflow_run_stops_at_the_next_step_with_exit_130_and_no_image(models_dir, sd1_folder,
                                                                                        tmp_path):
    workflow, out, log = tmp_path / "long.json", tmp_path / "out", tmp_path / "stderr.txt"
    workflow.write_text(json.dumps(workflows.api(n3_steps=5000)))
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "nodegraph.cli", "run", str(workflow), "--models",
                                    str(models_dir), "--set", f"config={sd1_folder}", "--out", str(out), "-v"],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + 60
        while "started ksampler3" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    text = log.read_text()
    assert process.returncode == 130, text[-2000:]
    assert "cancelling at the next step" in text and "Traceback" not in text
    assert not out.exists() or list(out.rglob("*.png")) == []
