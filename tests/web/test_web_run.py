"""The page runs a graph: a form from the graph's typed inputs, progress to 100 %, the image, the preview."""

import re
import time

from PIL import Image
from playwright.sync_api import expect
from web_helpers import DIGITS_MODEL, DOCS_IMAGES, RUN_TIMEOUT, fill_input, open_graph


def wait_until(page, script: str, timeout: float = RUN_TIMEOUT / 1000):
    """Poll `script` (a JS function) until it returns something truthy. Playwright's wait_for_function
    evaluates strings in the page, which the page's Content-Security-Policy forbids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true after {timeout} s: {script}")


def test_form_shows_typed_inputs_with_defaults_limits_choices_and_help(page):
    open_graph(page)
    steps = page.locator("#in-steps")
    expect(steps).to_have_attribute("type", "number")
    expect(steps).to_have_value("25")
    expect(steps).to_have_attribute("min", "1")
    expect(steps).to_have_attribute("max", "1000")
    expect(page.locator("#help-steps")).to_contain_text("Number of denoising steps")
    expect(page.locator("textarea#in-prompt")).to_have_value("a photograph of an astronaut riding a horse")
    expect(page.locator("select#in-scheduler option")).to_have_text(
        ["(default)", "pndm", "ddim", "unipc", "euler", "euler_a", "dpmpp_2m", "lms", "lcm", "tcd"])
    page.locator("#picture-box summary").click()
    assert wait_until(page, "() => document.querySelector('#picture img.diagram')?.naturalWidth") > 600
    page.fill("#in-seed", "0")
    page.click("#random-seed")
    page.click("#random-seed")  # two draws both 0 is a 1 in 2^64 chance
    assert page.input_value("#in-seed") != "0"
    width, height = page.evaluate("() => { const i = document.querySelector('#picture img.diagram');"
                                  " return [i.naturalWidth, i.naturalHeight]; }")
    page.set_viewport_size({"width": width, "height": height})
    page.goto(page.locator("#picture a").get_attribute("href"))  # the picture on its own, whole
    page.screenshot(path=DOCS_IMAGES / "web-graph-picture.png")


def test_a_prompt_runs_to_100_percent_and_its_image_appears(page):
    open_graph(page)
    fill_input(page, "model", DIGITS_MODEL)
    page.fill("#in-prompt", "a handwritten digit 7")
    page.fill("#in-steps", "3")
    page.click("#run")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT)
    expect(page.locator(".bar .percent")).to_have_text(["100%"])
    expect(page.locator(".bar label")).to_have_text(["denoise: step 3 of 3"])
    image = page.locator("img.result")
    expect(image).to_have_count(1)
    assert wait_until(page, "() => document.querySelector('img.result').naturalWidth") > 0
    expect(page.locator("#gallery li").first).to_contain_text("a handwritten digit 7")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=DOCS_IMAGES / "web-run-finished.png")


def test_out_of_range_value_is_shown_at_its_field_and_nothing_runs(page):
    open_graph(page)
    fill_input(page, "model", DIGITS_MODEL)
    page.fill("#in-steps", "0")
    page.click("#run")
    error = page.locator("#err-steps")
    expect(error).to_be_visible()
    expect(error).to_contain_text("below the minimum 1")
    expect(page.locator("#in-steps")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#in-steps")).to_be_focused()
    expect(page.locator("#err-seed")).to_be_hidden()
    expect(page.locator("#run-status")).to_have_text("")
    page.locator("#err-steps").scroll_into_view_if_needed()
    page.screenshot(path=DOCS_IMAGES / "web-field-error.png")
    page.fill("#in-steps", "2")  # corrected: the error goes away on the next submit
    page.click("#run")
    expect(page.locator("#err-steps")).to_be_hidden()
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT)


def test_a_long_run_is_cancelled_from_the_page(page):
    open_graph(page)
    fill_input(page, "model", DIGITS_MODEL)
    page.fill("#in-steps", "1000")
    page.click("#run")
    wait_until(page, "() => document.querySelector('#progress progress')?.value >= 2")
    page.click("#cancel")
    expect(page.locator("#run-status")).to_contain_text("cancelled", timeout=RUN_TIMEOUT)
    stopped_at = page.eval_on_selector("#progress progress", "p => p.value")
    assert 2 <= stopped_at < 1000
    expect(page.locator("img.result")).to_have_count(0)
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#gallery li").first).to_contain_text("cancelled")


def test_the_latent_preview_changes_between_steps(page):
    open_graph(page)
    fill_input(page, "model", DIGITS_MODEL)
    page.fill("#in-steps", "12")
    # Each drawn preview's pixels, captured in the page the moment a step's preview is drawn.
    page.evaluate("""() => {
        window.frames_seen = [];
        const canvas = document.querySelector('#preview');
        new MutationObserver(() => {
            const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
            window.frames_seen.push({step: canvas.dataset.step, width: canvas.width, pixels: Array.from(data)});
        }).observe(canvas, {attributes: true, attributeFilter: ['data-step']});
    }""")
    page.click("#run")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT)
    frames = page.evaluate("window.frames_seen.filter(f => f.step !== '0')")
    assert len(frames) >= 3, [f["step"] for f in frames]
    assert all(f["width"] >= 64 for f in frames)
    first, last = frames[0]["pixels"], frames[-1]["pixels"]
    assert len(set(first)) > 4, "the preview is a flat colour"
    changed = sum(a != b for a, b in zip(first, last))
    assert changed > len(first) // 10, f"only {changed} of {len(first)} channel values changed"
    expect(page.locator("#preview-figure")).to_be_visible()


def test_an_image_input_is_uploaded_from_the_page_and_used_by_the_run(page, web_server, tmp_path):
    photo = tmp_path / "white.png"
    Image.new("RGB", (32, 32), "white").save(photo)
    open_graph(page, "img2img")
    fill_input(page, "model", DIGITS_MODEL)
    page.fill("#in-steps", "2")
    page.set_input_files("#file-image", str(photo))
    inputs_dir = str((web_server.data / "inputs").resolve())
    expect(page.locator("#in-image")).to_have_value(re.compile("^" + re.escape(inputs_dir) + r"/\w+\.png$"))
    expect(page.locator("#file-image + img.thumb")).to_be_visible()
    page.click("#run")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT)
    expect(page.locator("img.result")).to_have_count(1)
