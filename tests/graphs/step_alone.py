"""A shipped step graph (`graphs/*_denoise_step.yaml`) used on its own: copied beside a wrapper graph of the
test's, which includes it as `./<name>`, and run; so the step graph is checked apart from the shipped graph that
normally includes it."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_step_graph_alone(step: str, wrapper: str, folder: Path, model: Path) -> dict:
    """Outputs of `wrapper` (YAML text including `./<step>`) run on the CPU with `model` as its `model` input."""
    from nodegraph import run_graph

    shutil.copy(ROOT / "graphs" / step, folder)
    (folder / "wrapper.yaml").write_text(wrapper)
    return run_graph(str(folder / "wrapper.yaml"), inputs={"model": str(model)}, device="cpu")
