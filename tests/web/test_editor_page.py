"""The node editor on the page, as a person uses it: open stable_diffusion, change a literal and a connection,
save, and the file is the original with two lines changed (comments kept); an incompatible connection refused
at the drop; a validation error on its node; undo/redo; the keyboard; a repeat body opened. One server (its
first graphs folder a scratch copy the page may write) for the module; screenshots go to docs/images/editor*.png.
"""

import difflib
import pathlib
import re
import shutil

import pytest
from editor_helpers import COPIED, editor_server
from playwright.sync_api import expect
from serve_helpers import ROOT
from web_helpers import DOCS_IMAGES, TOKEN

ORIGINAL = (ROOT / "graphs" / "stable_diffusion.yaml").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = editor_server(tmp_path_factory.mktemp("editor-page"))
    yield running
    running.stop()


@pytest.fixture
def graphs(server):
    folder = server.data.parent / "graphs"
    for name in COPIED:  # every test starts from the shipped text, laid out by the editor
        shutil.copy(ROOT / "graphs" / name, folder / name)
    shutil.rmtree(server.data / "layouts", ignore_errors=True)
    return folder


@pytest.fixture
def editor(browser, server, graphs):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    requested, failures = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("console", lambda message: failures.append(message.text)  # the CSP refusing anything is a failure
            if message.type == "error" and "Content Security Policy" in message.text else None)
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/#token={TOKEN}")
    expect(page.locator("#ed-graph option[value=stable_diffusion]")).to_have_count(1)
    page.select_option("#ed-graph", "stable_diffusion")
    page.click("#ed-open")
    expect(page.locator("#ed-message")).to_have_text("Opened stable_diffusion.")
    expect(page.locator("#editor")).to_have_attribute("data-checked", "1")  # the first validation answered
    yield page
    context.close()
    assert not failures, failures
    foreign = [url for url in requested if not url.startswith((server.url + "/", f"blob:{server.url}/"))]
    assert not foreign, f"the page requested other hosts: {foreign}"


def box(page, key):
    return page.locator(".drawflow-node", has=page.locator(f'.head[data-box="{key}"]'))


def port(page, key, side, index):
    return box(page, key).locator(f".{side}s .{side}_{index}")


def drag(page, source, target):
    source.hover()
    page.mouse.down()
    target.hover()
    page.mouse.up()


def test_a_literal_and_a_connection_changed_and_saved_give_a_two_line_diff(editor, graphs):
    pipeline = box(editor, "scheduler").locator('input.lit[data-port="sd_pipeline"]')
    expect(pipeline).to_be_checked()
    pipeline.uncheck()
    # its validation's answer can restack the boxes: a drag during it is lost
    expect(editor.locator("#editor")).not_to_have_attribute("data-checked", "1")
    drag(editor, port(editor, "noise", "output", 1), port(editor, "decode", "input", 2))  # latents -> latents
    expect(editor.locator("#ed-message")).to_have_text("Connected $noise.latents to decode.latents.")
    expect(box(editor, "decode").locator('.row.in[data-port="latents"] .from')).to_have_text("$noise.latents")
    editor.click("#ed-fit")
    editor.locator("#editor").screenshot(path=DOCS_IMAGES / "editor.png")
    with editor.expect_download() as download:
        editor.click("#ed-download")  # the YAML as it would be saved, before saving
    assert download.value.suggested_filename == "stable_diffusion.yaml"
    downloaded = pathlib.Path(download.value.path()).read_text()
    editor.click("#ed-save")
    expect(editor.locator("#ed-message")).to_have_text("Saved stable_diffusion.yaml.")
    saved = (graphs / "stable_diffusion.yaml").read_text()
    expected = ORIGINAL.replace("    sd_pipeline: true\n", "    sd_pipeline: false\n").replace(
        "    vae: $vae.vae\n    latents: $denoise.latents\n", "    vae: $vae.vae\n    latents: $noise.latents\n")
    assert saved == expected  # byte for byte: comments, flow mappings, the folded description kept
    assert downloaded == expected
    changed = [line for line in difflib.unified_diff(ORIGINAL.splitlines(), saved.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-    sd_pipeline: true", "+    sd_pipeline: false", "-    latents: $denoise.latents",
                       "+    latents: $noise.latents"]


def test_moved_nodes_keep_their_place_after_saving_in_the_sidecar_not_the_yaml(editor, graphs, server):
    seed = box(editor, "seed")
    where = "e => [Math.round(parseFloat(e.style.left)), Math.round(parseFloat(e.style.top))]"
    before = seed.evaluate(where)
    drag(editor, seed.locator(".head .kind"), box(editor, "no_features").locator(".head .kind"))
    moved = seed.evaluate(where)
    assert moved != before
    editor.click("#ed-save")
    expect(editor.locator("#ed-message")).to_have_text("Saved stable_diffusion.yaml.")
    assert (graphs / "stable_diffusion.yaml").read_text() == ORIGINAL  # positions are not in the YAML
    editor.click("#ed-open")
    expect(editor.locator("#ed-message")).to_have_text("Opened stable_diffusion.")
    assert box(editor, "seed").evaluate(where) == moved
    assert (server.data / "layouts" / "stable_diffusion.json").is_file()


def test_an_incompatible_connection_is_refused_at_the_drop_with_the_reason(editor):
    drag(editor, port(editor, "clip", "output", 2), port(editor, "decode", "input", 2))  # tokenizer -> latents
    message = editor.locator("#ed-message")
    expect(message).to_have_text("Not connected: $clip.tokenizer is Tokenizer, but input `latents` of `decode` "
                                 "takes Latent.")
    expect(message).to_have_attribute("role", "alert")
    expect(box(editor, "decode").locator('.row.in[data-port="latents"] .from')).to_have_text("$denoise.latents")
    expect(box(editor, "decode").locator('.row.in.refused[data-port="latents"] .perr')).to_contain_text(
        "refused: $clip.tokenizer is Tokenizer")  # at the input it was dropped on
    expect(editor.locator("#ed-undo")).to_be_disabled()  # nothing was changed
    editor.locator("#editor").screenshot(path=DOCS_IMAGES / "editor-refused.png")


def test_a_validation_error_is_shown_on_its_node_and_port_and_undo_redo_restore(editor):
    field = box(editor, "uncond").locator('input.lit[data-port="clip_skip"]')
    field.fill("ten")
    field.press("Tab")
    row = box(editor, "uncond").locator('.row.in[data-port="clip_skip"]')
    expect(row.locator(".perr")).to_contain_text("valid integer")
    expect(box(editor, "uncond")).to_have_class(re.compile("has-error"))
    expect(editor.locator("#ed-errors")).to_contain_text("nodes.uncond.clip_skip")
    editor.locator("#ed-errors button.where", has_text="nodes.uncond.clip_skip").click()  # shows the node
    expect(box(editor, "uncond").locator(".head .name")).to_be_focused()
    editor.locator("#editor").screenshot(path=DOCS_IMAGES / "editor-error.png")
    editor.click("#ed-undo")
    expect(box(editor, "uncond").locator('input.lit[data-port="clip_skip"]')).to_have_value("")
    expect(editor.locator("#ed-count")).to_have_text("(none)")
    editor.click("#ed-redo")
    expect(box(editor, "uncond").locator('input.lit[data-port="clip_skip"]')).to_have_value("ten")
    expect(editor.locator("#ed-count")).not_to_have_text("(none)")
    steps = box(editor, "@inputs").locator('input.def[data-input="steps"]')  # a graph input's default
    expect(steps).to_have_value("25")
    steps.fill("2000")
    steps.press("Tab")
    expect(editor.locator("#ed-errors")).to_contain_text("inputs.steps")
    expect(box(editor, "@inputs").locator(".nerr")).to_contain_text("1000")


def test_the_keyboard_adds_deletes_undoes_and_redoes(editor):
    editor.fill("#ed-add", "Seed")
    editor.press("#ed-add", "Enter")
    expect(editor.locator("#ed-message")).to_have_text("Added seed_2 (Seed).")
    name = box(editor, "seed_2").locator(".head .name")
    expect(name).to_be_focused()
    editor.keyboard.press("Delete")
    expect(box(editor, "seed_2")).to_have_count(0)
    name = box(editor, "decode").locator(".head .name")
    name.focus()
    editor.keyboard.press("Delete")  # deleting a node also drops what read it (the `image` output)
    expect(box(editor, "decode")).to_have_count(0)
    expect(box(editor, "@outputs").locator('.row.in[data-port="image"] .from')).to_have_count(0)
    editor.locator("#ed-canvas").focus()
    editor.keyboard.press("Control+z")
    expect(box(editor, "decode")).to_have_count(1)
    expect(box(editor, "@outputs").locator('.row.in[data-port="image"] .from')).to_have_text("$decode.image")
    editor.keyboard.press("Control+y")
    expect(box(editor, "decode")).to_have_count(0)
    unlink = box(editor, "noise").get_by_role("button", name="Disconnect noise: unet")
    unlink.focus()
    editor.keyboard.press("Enter")  # a connection removed from the keyboard
    expect(box(editor, "noise").locator('.row.in[data-port="unet"] .from')).to_have_count(0)
    expect(editor.locator("#ed-errors")).to_contain_text("nodes.noise")
    zoom = editor.evaluate("() => document.querySelector('#ed-canvas .drawflow').style.transform")
    editor.locator("#ed-canvas").focus()
    editor.keyboard.press("+")
    assert editor.evaluate("() => document.querySelector('#ed-canvas .drawflow').style.transform") != zoom


def test_a_repeat_body_opens_with_its_loop_values_and_included_step(editor):
    box(editor, "denoise").locator("button.open").click()
    expect(editor.locator("#ed-path button[aria-current=true]")).to_have_text("repeat denoise")
    expect(box(editor, "@loop").locator(".row.out .pname")).to_have_text(["item", "index", "state.latents",
                                                                         "state.features"])
    step = box(editor, "step")
    expect(step.locator(".head .kind")).to_have_text("./sd_denoise_step.yaml")
    expect(step.locator('.row.in[data-port="latents"] .from')).to_have_text("$state.latents")
    expect(step.locator('.row.out[data-port="latents"] .ptype')).to_have_text("Latent")
    expect(box(editor, "@next").locator('.row.in[data-port="next.latents"] .from')).to_have_text("$step.latents")
    editor.locator("#editor").screenshot(path=DOCS_IMAGES / "editor-repeat.png")
    editor.locator("#ed-path button").first.click()
    expect(box(editor, "denoise")).to_have_count(1)
    box(editor, "denoise").locator("button.open").click()
    step.locator("button.open").click()  # an included graph opens as the graph it is
    expect(editor.locator("#ed-message")).to_have_text("Opened sd_denoise_step.")
    expect(box(editor, "@inputs").locator(".row.out .pname").first).to_have_text("unet")


def test_a_file_changed_on_disk_is_not_overwritten_without_asking(editor, graphs):
    path = graphs / "stable_diffusion.yaml"
    path.write_text(ORIGINAL + "# edited elsewhere\n")
    box(editor, "scheduler").locator('input.lit[data-port="sd_pipeline"]').uncheck()
    editor.click("#ed-save")
    expect(editor.locator("#ed-conflict")).to_be_visible()
    expect(editor.locator("#ed-conflict-text")).to_contain_text("changed on disk since the editor opened it")
    assert path.read_text().endswith("# edited elsewhere\n")
    editor.click("#ed-overwrite")
    expect(editor.locator("#ed-message")).to_have_text("Saved stable_diffusion.yaml.")
    assert "sd_pipeline: false" in path.read_text() and path.read_text().endswith("# edited elsewhere\n")


def test_an_invalid_graph_is_saved_only_as_a_draft(editor, graphs):
    field = box(editor, "uncond").locator('input.lit[data-port="clip_skip"]')
    field.fill("ten")
    field.press("Tab")
    editor.click("#ed-save")
    expect(editor.locator("#ed-message")).to_contain_text("Not saved: the graph has 1 problems")
    assert (graphs / "stable_diffusion.yaml").read_text() == ORIGINAL
    editor.click("#ed-draft")
    expect(editor.locator("#ed-message")).to_contain_text("Saved stable_diffusion as a draft")
    assert (graphs / "stable_diffusion.yaml").read_text() == ORIGINAL
    editor.click("#ed-open")  # opening again would drop the edits: asked first
    expect(editor.locator("#ed-message")).to_contain_text("The graph has unsaved changes")
    editor.click("#ed-open")
    expect(editor.locator("#ed-message")).to_have_text("Opened stable_diffusion.")
    expect(box(editor, "uncond").locator('input.lit[data-port="clip_skip"]')).to_have_value("")


def test_the_page_decides_connections_as_the_validator_does(editor):
    from nodegraph.core.types import can_connect, parse_type_name

    names = ["Any", "int", "float", "str", "bool", "list", "list[int]", "list[float]", "list[Any]", "Tensor",
             "Latent", "Image", "Embeddings", "Timesteps", "UNet", "VAE", "Scheduler", "Generator", "Control"]
    pairs = [[a, b] for a in names for b in names]
    decided = editor.evaluate("""async (pairs) => {
        const types = await import('/static/js/editor/types.js');
        return pairs.map(([a, b]) => types.canConnect(a, b));
    }""", pairs)
    expected = [can_connect(parse_type_name(a), parse_type_name(b)) for a, b in pairs]
    assert decided == expected
