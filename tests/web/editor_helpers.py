"""Helpers of the editor tests: a server whose first `--graphs` folder is a scratch copy of two shipped graphs,
so saving writes there (the shipped graphs folder, also served, is never written)."""

from __future__ import annotations

import pathlib
import shutil

import serve_helpers
from serve_helpers import ROOT, Server

COPIED = ("stable_diffusion.yaml", "sd_denoise_step.yaml")


def editor_server(tmp: pathlib.Path) -> Server:
    graphs = tmp / "graphs"
    graphs.mkdir()
    for name in COPIED:
        shutil.copy(ROOT / "graphs" / name, graphs / name)
    saved = serve_helpers.TEST_GRAPHS
    serve_helpers.TEST_GRAPHS = graphs  # the first --graphs folder: where the page may write
    try:
        return Server(tmp / "data").start()
    finally:
        serve_helpers.TEST_GRAPHS = saved
