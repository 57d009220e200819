"""Building Stable Diffusion's text-to-image graph on an empty canvas, as a person would: add the nodes, type
the literals, drag the connections (a repeat body with the included denoising step), save it, run it from the
page on builtin:digits and get the image."""

import pytest
from editor_helpers import editor_server
from playwright.sync_api import expect
from web_helpers import DIGITS_MODEL, DOCS_IMAGES, RUN_TIMEOUT, TOKEN


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = editor_server(tmp_path_factory.mktemp("editor-build"))
    yield running
    running.stop()


def box(page, key):
    return page.locator(".drawflow-node", has=page.locator(f'.head[data-box="{key}"]'))


def dot(page, key, side, name):
    """The connection dot of port `name` of box `key` (side "input" or "output")."""
    rows = box(page, key).locator(f".row.{side[:-3] if side == 'output' else 'in'}")
    names = rows.evaluate_all("rows => rows.map(r => r.dataset.port)")
    return box(page, key).locator(f".{side}s .{side}_{names.index(name) + 1}")


def reference(src, out):
    if src == "@loop":
        return f"$state.{out[6:]}" if out.startswith("state.") else f"$loop.{out}"
    return f"${src}.{out}"


def validated(page):
    """The number of the page's last answered validation: each edit asks for one 250 ms later, and its answer can
    move the boxes (an error shown makes a box taller), so the next drag waits for it."""
    return page.locator("#editor").get_attribute("data-checked") or ""


def wait_validated(page, before):
    page.wait_for_function("(before) => (document.querySelector('#editor').dataset.checked || '') !== before", arg=before)


def drag(page, src, out, dst, port):
    before = validated(page)
    dot(page, src, "output", out).hover()
    page.mouse.down()
    dot(page, dst, "input", port).hover()
    page.mouse.up()
    expect(page.locator("#ed-message")).to_have_text(f"Connected {reference(src, out)} to {dst}.{port}.")
    wait_validated(page, before)


def type_in(page, key, port, text):
    before = validated(page)
    field = box(page, key).locator(f'input.lit[data-port="{port}"]')
    field.fill(text)
    field.press("Tab")
    wait_validated(page, before)


def add(page, node_type, expected_id):
    before = validated(page)
    page.fill("#ed-add", node_type)
    page.press("#ed-add", "Enter")
    expect(page.locator("#ed-message")).to_have_text(f"Added {expected_id} ({node_type}).")
    wait_validated(page, before)


def test_the_sd_text_to_image_graph_built_on_an_empty_canvas_runs(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/#token={TOKEN}")
    page.click("#ed-new")
    expect(page.locator("#ed-message")).to_contain_text("A new empty graph")
    page.fill("#ed-name", "built")
    for node_type, node_id in [("LoadUNet", "loadunet"), ("LoadVAE", "loadvae"), ("LoadCLIP", "loadclip"),
                               ("LoadScheduler", "loadscheduler"), ("Seed", "seed"), ("TextEncode", "textencode"),
                               ("TextEncode", "textencode_2"), ("CFGEmbeddings", "cfgembeddings"),
                               ("SchedulerSetTimesteps", "schedulersettimesteps"), ("RandomLatent", "randomlatent"),
                               ("repeat", "repeat"), ("VAEDecode", "vaedecode")]:
        add(page, node_type, node_id)
    for loader in ("loadunet", "loadvae", "loadclip", "loadscheduler"):
        type_in(page, loader, "model", DIGITS_MODEL)
    type_in(page, "textencode", "prompt", "a handwritten digit 3")
    type_in(page, "schedulersettimesteps", "steps", "2")
    for src, out, dst, port in [("loadclip", "text_encoder", "textencode", "text_encoder"),
                                ("loadclip", "tokenizer", "textencode", "tokenizer"),
                                ("loadclip", "text_encoder", "textencode_2", "text_encoder"),
                                ("loadclip", "tokenizer", "textencode_2", "tokenizer"),
                                ("textencode", "embeddings", "cfgembeddings", "cond"),
                                ("textencode_2", "embeddings", "cfgembeddings", "uncond"),
                                ("loadscheduler", "scheduler", "schedulersettimesteps", "scheduler"),
                                ("seed", "generator", "randomlatent", "generator"),
                                ("loadunet", "unet", "randomlatent", "unet"),
                                ("loadvae", "vae", "randomlatent", "vae"),
                                ("schedulersettimesteps", "scheduler", "randomlatent", "scheduler"),
                                ("schedulersettimesteps", "timesteps", "repeat", "over"),
                                ("loadvae", "vae", "vaedecode", "vae")]:
        drag(page, src, out, dst, port)
    box(page, "repeat").locator("button.open").click()  # the body: one denoising step a loop item
    before = validated(page)
    page.fill("#ed-new-input", "latents")
    page.press("#ed-new-input", "Enter")
    wait_validated(page, before)
    add(page, "./sd_denoise_step.yaml", "sd_denoise_step")
    expect(box(page, "sd_denoise_step").locator('.row.in[data-port="unet"]')).to_have_count(1)
    for port, ref in [("unet", "$loadunet.unet"), ("scheduler", "$schedulersettimesteps.scheduler"),
                      ("embeddings", "$cfgembeddings.embeddings"), ("generator", "$seed.generator")]:
        type_in(page, "sd_denoise_step", port, ref)  # values from outside the body, typed
    drag(page, "@loop", "state.latents", "sd_denoise_step", "latents")
    drag(page, "@loop", "item", "sd_denoise_step", "t")
    drag(page, "sd_denoise_step", "latents", "@next", "next.latents")
    page.locator("#ed-path button").first.click()
    drag(page, "randomlatent", "latents", "repeat", "state.latents")
    drag(page, "repeat", "latents", "vaedecode", "latents")
    before = validated(page)
    page.fill("#ed-new-output", "image")
    page.press("#ed-new-output", "Enter")
    wait_validated(page, before)
    drag(page, "vaedecode", "image", "@outputs", "image")
    expect(page.locator("#ed-count")).to_have_text("(none)")
    page.click("#ed-fit")
    page.locator("#editor").screenshot(path=DOCS_IMAGES / "editor-built.png")
    page.click("#ed-save")
    expect(page.locator("#ed-message")).to_have_text("Saved built.yaml.")

    page.reload()  # the page's graph list now has it: run it with the form's defaults
    page.get_by_role("button", name="built", exact=True).click()
    expect(page.locator("#graph-title")).to_have_text("built")
    page.click("#run")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=RUN_TIMEOUT)
    expect(page.locator("img.result")).to_have_count(1)
    context.close()
