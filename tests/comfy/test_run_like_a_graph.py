"""`nodegraph run WORKFLOW.json` runs like `nodegraph run graph.yaml`: the import adds no model work to the run
(one header parse by the loaders, each model loaded once, no torch before the run), tunes the allocator before
anything is loaded, reads the weights ahead as a graph file's run does, and logs with `-v`."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

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
