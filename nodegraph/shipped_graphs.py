"""Where the graphs nodegraph ships (`graphs/` in a checkout) are, in a source checkout and in an installed wheel.

A wheel carries them as the data package `nodegraph/graphs` (setup.py maps the checkout's `graphs/` there), so
the code that reads them at run time (the ComfyUI translation's step graph, the server's graph list, the CLI's
`graphs/<name>.yaml` fallback) asks this module instead of walking up from its own file.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "graphs"  # an installed wheel
_CHECKOUT = Path(__file__).resolve().parents[1] / "graphs"  # a source checkout (editable install)

SHIPPED_GRAPHS = _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def shipped_graph(target: str) -> Path | None:
    """The shipped copy of a relative `graphs/<name>.yaml` (as the README writes it) when no such file exists
    where the user is: so the README's commands work from any folder once nodegraph is installed."""
    parts = Path(target).parts
    if len(parts) < 2 or parts[0] != "graphs" or Path(target).exists() or ".." in parts:
        return None
    candidate = SHIPPED_GRAPHS.joinpath(*parts[1:])
    return candidate if candidate.is_file() else None
