"""The gallery as history: paging, search by prompt, delete; the in-page viewer: keyboard navigation, compare,
the PNG's recipe beside the image, no token in an address opened in a new tab."""

import re

import pytest
from playwright.sync_api import expect
from serve_helpers import TOKEN
from web_helpers import DOCS_IMAGES

WORD = "zebracorn"  # no other test's prompt holds it
PROMPTED = """nodegraph: 1
inputs:
  prompt: {type: str, default: ""}
  value: {type: float, default: 0.5}
nodes:
  gray: {type: SolidImage, value: $inputs.value}
outputs:
  image: $gray.image
"""
COUNT = 12  # more than a page (10)


@pytest.fixture(scope="module")
def runs(web_server):
    """COUNT finished runs of a tiny document with an 8×8 gray image, `zebracorn 0` … `zebracorn 11` (oldest first)."""
    with web_server.client() as client:
        handles = [client.submit(document={"format": 1, "main": "gray.yaml", "files": {"gray.yaml": PROMPTED}},
                                 inputs={"prompt": f"{WORD} {n}", "value": n / COUNT}) for n in range(COUNT)]
        for handle in handles:
            handle.result()
        return [handle.id for handle in handles]


def search(page, text):
    page.fill("#history-search", text)
    page.locator("#history-form").get_by_role("button", name="Search").click()


def test_history_pages_through_the_runs_a_search_finds_and_deletes_one(page, web_server, runs):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")  # the page has started
    search(page, WORD.upper())
    expect(page.locator("#history-page")).to_have_text(f"Runs 1–10 of {COUNT}")
    entries = page.locator("#gallery li")
    expect(entries).to_have_count(10)
    expect(entries.first).to_contain_text(f"prompt: {WORD} 11")
    expect(page.locator("#newer")).to_be_disabled()
    page.click("#older")
    expect(page.locator("#history-page")).to_have_text(f"Runs 11–12 of {COUNT}")
    expect(entries).to_have_count(2)
    expect(entries.nth(1)).to_contain_text(f"prompt: {WORD} 0 ")
    expect(page.locator("#older")).to_be_disabled()
    page.click("#newer")
    expect(page.locator("#history-page")).to_have_text(f"Runs 1–10 of {COUNT}")

    newest = page.locator(f'#gallery li[data-run="{runs[-1]}"]')
    newest.get_by_role("button", name="Delete").click()
    expect(newest.locator("button.delete")).to_have_text("Delete this run and its images?")  # asked twice
    newest.locator("button.delete").click()
    expect(page.locator("#history-page")).to_have_text(f"Runs 1–10 of {COUNT - 1}")
    expect(newest).to_have_count(0)
    expect(entries.first).to_contain_text(f"prompt: {WORD} 10")
    with web_server.client() as client:
        assert not any(r["id"] == runs[-1] for r in client.runs(limit=100)["runs"])
    search(page, "no prompt holds this")
    expect(page.locator("#history-page")).to_have_text("No run's prompt contains that.")


def test_the_viewer_goes_through_the_images_by_keyboard_compares_and_shows_the_recipe(page, runs):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")  # the page has started
    search(page, WORD)
    expect(page.locator("#history-page")).to_contain_text("Runs 1–10 of")
    first = page.locator("#gallery li").first
    expect(first).to_contain_text(f"prompt: {WORD} 10")
    first.locator("button.open-image").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-count")).to_have_text("1 of 10")
    recipe = page.locator("#viewer-recipe")
    expect(recipe).to_contain_text(f'"{WORD} 10"')  # read from the PNG's own nodegraph chunk
    expect(recipe).to_contain_text("gray.yaml")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-count")).to_have_text("2 of 10")
    expect(recipe).to_contain_text(f'"{WORD} 9"')
    expect(page.locator("#viewer-current figcaption")).to_contain_text(f"{WORD} 9")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # at the first: stays
    expect(page.locator("#viewer-count")).to_have_text("1 of 10")
    page.keyboard.press("c")  # pin this one, the next beside it
    expect(page.locator("#viewer-pinned")).to_be_visible()
    expect(page.locator("#viewer-pinned figcaption")).to_contain_text(f"{WORD} 10")
    expect(page.locator("#viewer-count")).to_have_text("2 of 10")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-current figcaption")).to_contain_text(f"{WORD} 8")
    expect(page.locator("#viewer-pinned figcaption")).to_contain_text(f"{WORD} 10")
    for image in (page.locator("#viewer-pinned img"), page.locator("#viewer-current img")):
        expect(image).to_have_attribute("src", re.compile("^blob:"))
    page.screenshot(path=DOCS_IMAGES / "web-viewer.png")
    opened = page.locator("#viewer-open")
    expect(opened).to_have_attribute("href", re.compile("^blob:"))
    assert TOKEN not in opened.get_attribute("href")
    with page.context.expect_page() as tab:
        opened.click()
    assert TOKEN not in tab.value.url and tab.value.url.startswith("blob:")
    tab.value.close()
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
