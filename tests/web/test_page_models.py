"""Model inputs as pickers: the server's fixture models (a --models folder in ComfyUI's layout, a hub cache)
listed by family, filtered by what the graph accepts; a typed path outside the models folders is refused."""

import re

import pytest
from model_fixtures import SDXL_FILE, make_hub_cache, make_models, unet_in, write
from playwright.sync_api import expect
from web_helpers import DOCS_IMAGES, TOKEN, Server, open_graph


@pytest.fixture(scope="module")
def models_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    make_models(root)
    cache = tmp_path_factory.mktemp("hub-cache")
    make_hub_cache(cache)
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "other.safetensors", {**unet_in(4), "conditioner.embedders.1.model.x": (2,)})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_CACHE", str(cache))
        running = Server(tmp_path_factory.mktemp("web-models"), "--models", str(root)).start()
    yield running, root.resolve(), outside
    running.stop()


@pytest.fixture
def page(browser, models_server):
    server = models_server[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    requested = []
    opened.on("request", lambda request: requested.append(request.url))
    opened.goto(f"{server.url}/#token={TOKEN}")
    yield opened
    context.close()
    assert all(url.startswith((server.url + "/", f"blob:{server.url}/", "data:")) for url in requested), requested


def open_picker(page, name="model"):
    group = page.locator(f"details.group:has(#in-{name})")
    if group.count() and group.get_attribute("open") is None:
        group.locator("summary").click()
    page.click(f"#pick-{name}")
    expect(page.locator(f"#picker-{name}")).to_be_visible()
    return page.locator(f"#picker-{name}")


def test_an_sdxl_graph_lists_the_servers_sdxl_base_models_and_search_narrows_them(page, models_server):
    _, root, _ = models_server
    open_graph(page, "sdxl")
    picker = open_picker(page)
    expect(picker.locator("section.family h4")).to_have_text(["Stable Diffusion XL base"])
    expect(picker.locator("button.model")).to_have_count(2)
    expect(picker).to_contain_text("tiny_xl.safetensors")
    expect(picker).to_contain_text("diffusers/my-sdxl")
    expect(picker).not_to_contain_text("sd15_tiny")
    page.locator("#run-form").screenshot(path=DOCS_IMAGES / "web-model-picker.png")
    page.fill("#search-model", "my-sdxl")
    expect(picker.locator("button.model")).to_have_count(1)
    picker.locator("button.model").click()
    expect(picker).to_be_hidden()
    expect(page.locator("#in-model")).to_have_value(str(root / "diffusers/my-sdxl"))


def test_a_stable_diffusion_graph_lists_sd_models_by_family_builtin_first(page, models_server):
    open_graph(page, "stable_diffusion")
    picker = open_picker(page)
    expect(picker.locator("section.family h4")).to_have_text(["Stable Diffusion 1.x",
                                                              "Stable Diffusion 1.x inpainting"])
    sd1 = picker.locator('section.family[data-family="sd1"] button.model')
    expect(sd1).to_have_count(2)
    expect(sd1.first).to_contain_text("builtin:digits")
    expect(sd1.nth(1)).to_contain_text("checkpoints/sd15_tiny.safetensors")
    expect(picker).not_to_contain_text(SDXL_FILE)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#in-model")).to_have_value(str(models_server[1] / "checkpoints/sd15_tiny.safetensors"))
    # the VAE input lists VAE files only
    vae = open_picker(page, "vae")
    expect(vae.locator("section.family h4")).to_have_text(["VAE (4-channel latents: SD, SDXL)"])
    expect(vae.locator("button.model")).to_have_text([re.compile("^vae/sd_vae.safetensors")])


def test_a_typed_path_outside_the_models_folders_is_flagged_and_refused(page, models_server):
    _, _, outside = models_server
    open_graph(page, "sdxl")
    typed = str(outside / "other.safetensors")
    open_picker(page)
    page.click("#pick-model")  # closed again
    page.fill("#in-model", typed)
    page.locator("#in-model").dispatch_event("change")
    expect(page.locator("#err-model")).to_contain_text("Not one of this server's models")
    page.fill("#in-steps", "1")
    page.click("#run")
    expect(page.locator("#err-model")).to_contain_text("loads local models only from its --models folders")
    expect(page.locator("#progress-box")).to_be_hidden()
