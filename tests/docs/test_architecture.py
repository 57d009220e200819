"""docs/architecture.md's room list names every package and top-level module of nodegraph/, so the page cannot
fall behind the code unnoticed (it listed 6 of 15 packages before)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nodegraph"


def _rooms_block() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    body = text.split("## The rooms", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```\n(.*?)\n```", body, flags=re.S)
    return block


def test_every_package_and_top_level_module_has_a_room():
    block = _rooms_block()
    packages = {p.name + "/" for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    modules = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    missing = sorted(name for name in packages | modules if not re.search(rf"(?<![\w/]){re.escape(name)}", block))
    assert not missing, f"docs/architecture.md's room list does not name: {missing}"
