"""The page with a token, by keyboard, at a phone's width."""

import httpx
from playwright.sync_api import expect
from web_helpers import DOCS_IMAGES, TOKEN


def test_only_the_pages_own_files_are_served_without_the_token(web_server):
    page = httpx.get(web_server.url + "/")
    assert page.status_code == 200 and "connect-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(web_server.url + "/static/js/main.js").status_code == 200
    for path in ("/graphs", "/runs", "/static/../app.py", "/docs"):
        assert httpx.get(web_server.url + path).status_code == 401, path


def test_a_server_with_a_token_asks_for_it_and_then_lists_its_graphs(browser, web_server):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(web_server.url + "/")
        expect(page.locator("#notice")).to_have_text("This server needs a token.")
        expect(page.locator("#token")).to_be_focused()
        expect(page.locator("#graphs li")).to_have_count(0)
        page.keyboard.type(TOKEN)
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name="stable_diffusion", exact=True)).to_be_visible()
        expect(page.locator("#notice")).to_be_hidden()
    finally:
        context.close()


def test_keyboard_alone_opens_a_graph_and_reaches_its_run_button(page):
    first = page.locator("#graphs button").first
    expect(first).to_be_visible()
    page.get_by_role("button", name="stable_diffusion", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    page.locator("#in-batch_size").focus()  # the last essential: Tab goes on to the collapsed "Advanced" group
    page.keyboard.press("Tab")
    expect(page.locator("details.group summary")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("#in-model")).to_be_focused()  # the group's first input
    page.locator("#fields [name]").last.focus()  # the last input: Tab goes on to the run options, then Run
    page.keyboard.press("Tab")
    expect(page.locator("#fast")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.locator("#fast")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.locator("#seed-each")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#batch-count")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#run")).to_be_focused()


def test_at_a_phone_width_nothing_overflows_sideways(page):
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("button", name="stable_diffusion", exact=True).click()
    expect(page.locator("#in-prompt")).to_be_visible()
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"
    prompt = page.locator("#in-prompt").bounding_box()
    assert prompt["x"] >= 0 and prompt["x"] + prompt["width"] <= 390
    page.screenshot(path=DOCS_IMAGES / "web-narrow.png")
