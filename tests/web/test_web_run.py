"""The page runs a graph: a form from the graph's typed inputs, progress to 100 %, the image, the preview."""

from playwright.sync_api import expect
from web_helpers import DIGITS_MODEL

RUN_TIMEOUT = 60_000


def open_graph(page, name="stable_diffusion"):
    page.get_by_role("button", name=name, exact=True).click()
    expect(page.locator("#graph-title")).to_have_text(name)


def natural_width(page, selector: str) -> int:
    return page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0")


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
        ["(default)", "pndm", "ddim", "unipc", "euler", "euler_a", "dpmpp_2m", "lms"])
    page.fill("#in-seed", "0")
    page.click("#random-seed")
    page.click("#random-seed")  # two draws both 0 is a 1 in 2^64 chance
    assert page.input_value("#in-seed") != "0"


def test_a_prompt_runs_to_100_percent_and_its_image_appears(page):
    open_graph(page)
    page.fill("#in-model", DIGITS_MODEL)
    page.fill("#in-prompt", "a handwritten digit 7")
    page.fill("#in-steps", "3")
    page.click("#run")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT)
    expect(page.locator(".bar .percent")).to_have_text(["100%"])
    expect(page.locator(".bar label")).to_have_text(["denoise: step 3 of 3"])
    image = page.locator("img.result")
    expect(image).to_have_count(1)
    page.wait_for_function("document.querySelector('img.result').naturalWidth > 0")
    assert natural_width(page, "img.result") > 0
    expect(page.locator("#gallery li").first).to_contain_text("a handwritten digit 7")
