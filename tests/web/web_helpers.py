"""Helpers of the page tests: the server of the server tests, a headless Debian chromium driven by Playwright.

Playwright's own browser download cannot work offline: the Debian `chromium` package is launched instead
(`.ci/run` installs it). In a module of its own (not conftest), like tests/serve/serve_helpers.py.
"""

from __future__ import annotations

import base64
import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "serve"))

from serve_helpers import TOKEN, Server  # noqa: E402  (the server tests' helper, reused as is)

DOCS_IMAGES = pathlib.Path(__file__).parents[2] / "docs" / "images"
DIGITS_MODEL = "builtin:digits"
RUN_TIMEOUT = 60_000  # ms, Playwright's unit


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("the page tests need the Debian `chromium` package: apt-get install -y chromium")


def open_graph(page, name="stable_diffusion"):
    from playwright.sync_api import expect

    page.get_by_role("button", name=name, exact=True).click()
    expect(page.locator("#graph-title")).to_have_text(name)


def fill_input(page, name: str, value: str) -> None:
    """Type `value` into the field of graph input `name`, opening its collapsed group first as a person would."""
    group = page.locator(f"details.group:has(#in-{name})")
    if group.count() and group.get_attribute("open") is None:
        group.locator("summary").click()
    page.fill(f"#in-{name}", value)


def drop_file(page, name: str, data: bytes) -> None:
    """Drag `data` onto the page as a file named `name`, as a user drops a PNG."""
    from playwright.sync_api import expect

    transfer = page.evaluate_handle("""([name, b64]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: 'image/png'}));
        return transfer;
    }""", [name, base64.b64encode(data).decode()])
    page.dispatch_event("main", "dragover", {"dataTransfer": transfer})
    expect(page.locator("#drop-hint")).to_be_visible()
    page.dispatch_event("main", "drop", {"dataTransfer": transfer})


__all__ = ["DIGITS_MODEL", "DOCS_IMAGES", "RUN_TIMEOUT", "TOKEN", "Server", "chromium_path", "drop_file", "fill_input", "open_graph"]
