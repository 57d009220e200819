"""The gallery of past runs: thumbnails, inputs, re-using them, full size and download; dropping a PNG."""

import io
import json
import time

import pytest
from PIL import Image
from playwright.sync_api import expect
from web_helpers import DIGITS_MODEL, TOKEN, drop_file

SEVEN = {"model": DIGITS_MODEL, "prompt": "a handwritten digit 7", "seed": 4242, "steps": 2, "guidance_scale": 3.5}


@pytest.fixture(scope="module")
def finished_run(web_server):
    """A run made through the API (not the page), so the gallery shows what the server holds."""
    with web_server.client() as client:
        handle = client.submit("stable_diffusion", inputs=SEVEN)
        handle.result()
        run = client.get(handle.id)
        png = client.download(run["outputs"]["image"][0]["url"])
    return run, png


def test_gallery_shows_the_run_and_use_these_inputs_refills_the_form(page, finished_run):
    run, _ = finished_run
    entry = page.locator(f'#gallery li[data-run="{run["id"]}"]')
    expect(entry).to_contain_text("stable_diffusion · finished")
    expect(entry).to_contain_text("prompt: a handwritten digit 7")
    expect(entry).to_contain_text("seed: 4242")
    entry.get_by_text("all inputs").click()
    expect(entry.locator("pre.all-inputs")).to_contain_text('clip_skip: 0')
    expect(entry.locator("pre.all-inputs")).to_contain_text('height: null')
    thumb = entry.locator("img.thumb")
    expect(thumb).to_have_count(1)
    deadline = time.monotonic() + 20
    while thumb.evaluate("img => img.naturalWidth") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thumb.evaluate("img => img.naturalWidth") > 0

    entry.get_by_role("button", name="Use these inputs").click()
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    expect(page.locator("#in-prompt")).to_have_value("a handwritten digit 7")
    expect(page.locator("#in-seed")).to_have_value("4242")
    expect(page.locator("#in-steps")).to_have_value("2")
    expect(page.locator("#in-guidance_scale")).to_have_value("3.5")
    expect(page.locator("#in-model")).to_have_value(DIGITS_MODEL)


def test_a_result_downloads_as_the_png_with_its_metadata(page, finished_run):
    run, png = finished_run
    entry = page.locator(f'#gallery li[data-run="{run["id"]}"]')
    with page.expect_download() as download_info:
        entry.get_by_role("link", name="Download PNG").click()
    downloaded = download_info.value
    assert downloaded.suggested_filename == f"{run['id']}-image.png"
    data = open(downloaded.path(), "rb").read()
    assert data == png
    recipe = json.loads(Image.open(io.BytesIO(data)).text["nodegraph"])
    assert recipe["inputs"]["seed"] == 4242
    # the thumbnail opens the in-page viewer (tested in tests/web/test_page_history.py, test_the_viewer_…); no
    # address a new tab opens holds the token
    expect(entry.locator("button.open-image img.thumb")).to_have_count(1)
    for link in page.locator("a[target=_blank]").all():
        assert TOKEN not in (link.get_attribute("href") or "")


def test_dropping_a_nodegraph_png_loads_its_graph_and_inputs_and_runs_it(page, finished_run):
    _, png = finished_run
    drop_file(page, "seven.png", png)
    expect(page.locator("#notice")).to_contain_text("Loaded the graph and inputs of seven.png")
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion.yaml from seven.png")
    expect(page.locator("#in-prompt")).to_have_value("a handwritten digit 7")
    expect(page.locator("#in-seed")).to_have_value("4242")
    page.fill("#in-seed", "7")
    page.click("#run")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=60_000)
    expect(page.locator("img.result")).to_have_count(1)
    newest = page.locator("#gallery li").first
    expect(newest).to_contain_text("seed: 7")


def test_dropping_a_png_without_metadata_says_so(page):
    plain = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(plain, format="PNG")
    page.get_by_role("button", name="img2img", exact=True).click()  # the page opens on a graph: pick another
    expect(page.locator("#graph-title")).to_have_text("img2img")
    drop_file(page, "plain.png", plain.getvalue())
    expect(page.locator("#notice")).to_contain_text("plain.png has no nodegraph metadata")
    expect(page.locator("#graph-title")).to_have_text("img2img")  # nothing was loaded in its place
    expect(page.get_by_role("button", name="img2img", exact=True)).to_have_attribute("aria-current", "true")


def test_a_run_started_elsewhere_is_watched_from_the_gallery_and_cancelled(page, web_server):
    with web_server.client() as client:
        handle = client.submit("stable_diffusion", inputs={**SEVEN, "steps": 1000}, fast=True)
        page.click("#refresh")
        entry = page.locator(f'#gallery li[data-run="{handle.id}"]')
        expect(page.locator("#fast")).not_to_be_checked()
        entry.get_by_role("button", name="Watch").click()
        expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
        expect(page.locator("#in-steps")).to_have_value("1000")
        expect(page.locator("#fast")).to_be_checked()  # the watched run's settings, as "Use these inputs" gives
        expect(page.locator("#run-status")).to_contain_text("fast mode")
        bar = page.locator("#progress progress")
        expect(bar).to_have_count(1, timeout=30_000)
        first = bar.evaluate("p => p.value")
        deadline = time.monotonic() + 30
        while bar.evaluate("p => p.value") <= first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bar.evaluate("p => p.value") > first, "the bar did not move"
        page.click("#cancel")
        expect(page.locator("#run-status")).to_contain_text("cancelled", timeout=30_000)
        assert client.get(handle.id)["status"] == "cancelled"
