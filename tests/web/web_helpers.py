"""Helpers of the page tests: the server of the server tests, a headless Debian chromium driven by Playwright.

Playwright's own browser download cannot work offline: the Debian `chromium` package is launched instead
(`.ci/run` installs it). In a module of its own (not conftest), like tests/serve/serve_helpers.py.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "serve"))

from serve_helpers import TOKEN, Server  # noqa: E402  (the server tests' helper, reused as is)

DOCS_IMAGES = pathlib.Path(__file__).parents[2] / "docs" / "images"
DIGITS_MODEL = "builtin:digits"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("the page tests need the Debian `chromium` package: apt-get install -y chromium")


__all__ = ["DIGITS_MODEL", "DOCS_IMAGES", "TOKEN", "Server", "chromium_path"]
