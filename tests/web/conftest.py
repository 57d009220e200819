"""Fixtures of the page tests: one server and one browser per session, a fresh page (own context) per test.

Every page records the URLs it requests; after each test they must all be on the server's own origin.
"""

import pytest
from web_helpers import TOKEN, Server, chromium_path


@pytest.fixture(scope="session")
def web_server(tmp_path_factory):
    # An empty Hugging Face cache, whatever this machine has downloaded: the page's first run must work
    # offline (tests/web/test_web_start.py). Set only while the server process starts (it copies the env).
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hub-cache")))
        running = Server(tmp_path_factory.mktemp("web")).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, web_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    requested: list[str] = []
    opened.on("request", lambda request: requested.append(request.url))
    opened.set_default_timeout(20_000)
    opened.goto(f"{web_server.url}/#token={TOKEN}")
    yield opened
    context.close()
    # data: URLs and the page's own blob: URLs never leave the browser
    local = (web_server.url + "/", f"blob:{web_server.url}/", "data:")
    foreign = [url for url in requested if not url.startswith(local)]
    assert not foreign, f"the page requested other hosts: {foreign}"
    assert requested, "no request was recorded"
