"""A plain text-to-image run imports none of the slow modules it does not need: transformers, not even its top level
(about 3 s for the modeling code: the CLIP text encoder is nodegraph's own; 0.6 s more for the tokenizer: so is the
tokenizer, on the `tokenizers` package), torch._dynamo (about 1 s: nothing initialises meta tensors) and
sympy (0.5 s: nothing calls `arange` on the meta device)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
# runs the CLI in-process (its normal exit), then reports which modules were loaded
PROBE = """
import json, sys
from nodegraph.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
SLOW = ("transformers", "transformers.modeling_utils", "transformers.models.clip.modeling_clip", "torch._dynamo",
        "sympy", "torch.fx.experimental.symbolic_shapes")


@pytest.mark.parametrize("with_embedding", [False, True])
def test_a_stable_diffusion_run_does_not_import_transformers_dynamo_or_sympy(tmp_path, with_embedding):
    argv = ["run", str(REPO / "graphs" / "stable_diffusion.yaml"), "--set", "model=builtin:digits", "--set",
            "steps=2", "--set", "height=32", "--set", "width=32", "--out", str(tmp_path), "-q"]
    if with_embedding:  # textual inversion: tokens added to a tokenizer copy, the text encoder patched
        save_file({"emb_params": torch.randn(2, 64, generator=torch.Generator().manual_seed(0))},
                  tmp_path / "zqx-emb.safetensors")
        argv += ["--set", f"embedding={tmp_path / 'zqx-emb.safetensors'}", "--set", "prompt=a photo of zqx-emb"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and (tmp_path / "image.png").is_file()
    assert "tokenizers" in report["modules"]  # the tokenizer ran: the check sees a run's imports
    assert [m for m in SLOW if m in report["modules"]] == []
