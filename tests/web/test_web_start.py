"""Where a new user starts: the main graphs first, building blocks apart, the essentials of a form first."""

from playwright.sync_api import expect
from web_helpers import DIGITS_MODEL, DOCS_IMAGES, RUN_TIMEOUT


def test_the_page_opens_on_text_to_image_with_the_main_graphs_first(page):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")  # the list is filled by then
    expect(page.get_by_role("button", name="stable_diffusion", exact=True)).to_have_attribute("aria-current", "true")
    main = page.locator("#graphs button").all_inner_texts()
    assert main[:5] == ["stable_diffusion", "img2img", "inpaint", "sdxl", "controlnet"], main
    assert not [name for name in main if name.endswith("_denoise_step")], main


def test_building_blocks_are_listed_apart_and_collapsed(page):
    blocks = page.locator("#blocks-box")
    expect(blocks).not_to_have_attribute("open", "")
    step = page.get_by_role("button", name="sd_denoise_step", exact=True)
    expect(step).to_be_hidden()
    page.get_by_text("Building blocks", exact=True).click()
    expect(step).to_be_visible()
    assert "sdxl_denoise_step" in page.locator("#blocks button").all_inner_texts()
    step.click()
    expect(page.locator("#graph-title")).to_have_text("sd_denoise_step")


def test_an_address_naming_a_graph_opens_it_instead(page, web_server):
    page.goto(f"{web_server.url}/#graph=sdxl_denoise_step")  # the tab keeps the token the fixture passed
    page.reload()
    expect(page.locator("#graph-title")).to_have_text("sdxl_denoise_step")
    expect(page.locator("#blocks-box")).to_have_attribute("open", "")


def test_the_form_shows_the_essentials_first_and_the_advanced_inputs_collapsed(page):
    expect(page.locator("#in-prompt")).to_be_visible()
    essentials = page.locator("#fields > .field label").all_inner_texts()
    assert essentials[:4] == ["prompt", "negative_prompt", "seed", "steps"], essentials
    assert {"height", "width"} <= set(essentials) and "model" not in essentials, essentials
    advanced = page.locator("details.group[data-group=advanced]")
    expect(advanced.locator("summary")).to_have_text("Advanced")
    expect(advanced).not_to_have_attribute("open", "")
    expect(page.locator("#in-model")).to_be_hidden()
    expect(page.locator("#in-prompt")).to_be_visible()
    advanced.locator("summary").click()
    expect(page.locator("#in-model")).to_be_visible()
    expect(page.locator("#in-clip_skip")).to_be_visible()
    page.locator("#in-batch_size").scroll_into_view_if_needed()
    page.evaluate("() => window.scrollBy(0, 120)")  # the last essentials above the opened group
    page.screenshot(path=DOCS_IMAGES / "web-advanced.png")


def test_an_error_in_a_collapsed_group_opens_it_and_shows_the_error(page):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    advanced = page.locator("details.group[data-group=advanced]")
    advanced.locator("summary").click()
    page.fill("#in-clip_skip", "99")
    advanced.locator("summary").click()  # closed again before running
    expect(page.locator("#in-clip_skip")).to_be_hidden()
    page.click("#run")
    expect(page.locator("#err-clip_skip")).to_be_visible()
    expect(page.locator("#err-clip_skip")).to_contain_text("24")
    expect(page.locator("#in-clip_skip")).to_be_focused()


def test_the_first_run_with_every_default_works_offline(page):
    """stable_diffusion's default model is a hub id the test machine has not downloaded: the form starts
    on builtin:digits instead, says why, and Run with nothing changed makes an image."""
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    expect(page.locator("#in-model")).to_have_value(DIGITS_MODEL)
    expect(page.locator("#help-model")).to_contain_text("CompVis/stable-diffusion-v1-4 is not downloaded on this server")
    page.click("#run")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT)
    expect(page.locator("img.result")).to_have_count(1)
