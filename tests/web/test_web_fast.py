"""The page's "Fast mode" box: it asks the server for fast mode, the run and its PNG record it, and a fast PNG
or past run ticks it again (a default one unticks it), so running again reproduces the image.

Whether a run was fast is asked of the server (GET /runs/{id}) and of the PNG it wrote (nodegraph's own
reader), never of the page alone."""

import pytest
from playwright.sync_api import expect
from web_helpers import DIGITS_MODEL, RUN_TIMEOUT, drop_file, fill_input, open_graph

from nodegraph.exec.png_metadata import recorded_fast

THREE = {"model": DIGITS_MODEL, "prompt": "a handwritten digit 3", "seed": 33, "steps": 2}


@pytest.fixture(scope="module")
def fast_and_default(web_server, tmp_path_factory):
    """A fast run and a default one with the same inputs, made through the API: (run, PNG bytes) each."""
    folder = tmp_path_factory.mktemp("fast_pngs")
    made = []
    with web_server.client() as client:
        for fast in (True, False):
            handle = client.submit("stable_diffusion", inputs=THREE, fast=fast)
            handle.result()
            run = client.get(handle.id)
            png = client.download(run["outputs"]["image"][0]["url"])
            (folder / "made.png").write_bytes(png)
            assert run["fast"] is fast and recorded_fast(str(folder / "made.png")) is fast  # what the page is given
            made.append((run, png))
    return made


def run_from_page(page) -> tuple[dict, str]:
    """Click Run; the body the page POSTed and the run's id, once the page says that run finished."""
    with page.expect_response(lambda r: r.url.endswith("/runs") and r.request.method == "POST") as answer:
        page.click("#run")
    run_id = answer.value.json()["id"]
    expect(page.locator("#run-status")).to_contain_text(f"Run {run_id} finished", timeout=RUN_TIMEOUT)
    return answer.value.request.post_data_json, run_id


def server_record(web_server, run_id: str, folder) -> tuple[bool, bool]:
    """(GET /runs/{id} says fast, the PNG it wrote records fast)."""
    with web_server.client() as client:
        run = client.get(run_id)
        png = folder / f"{run_id}.png"
        png.write_bytes(client.download(run["outputs"]["image"][0]["url"]))
    return run["fast"], recorded_fast(str(png))


def test_a_ticked_box_runs_in_fast_mode_and_an_unticked_one_does_not(page, web_server, tmp_path):
    open_graph(page)
    expect(page.locator("#fast")).not_to_be_checked()  # off by default
    expect(page.locator("#help-fast")).to_contain_text("not bit-equal")
    for name, value in THREE.items():
        fill_input(page, name, str(value))
    page.check("#fast")

    body, fast_id = run_from_page(page)
    assert body["fast"] is True
    assert server_record(web_server, fast_id, tmp_path) == (True, True)
    expect(page.locator("#run-status")).to_contain_text("fast mode")
    expect(page.locator(f'#gallery li[data-run="{fast_id}"] strong')).to_contain_text("· fast mode")

    page.uncheck("#fast")
    body, default_id = run_from_page(page)
    assert "fast" not in body  # left out, as the Python client leaves it out
    assert server_record(web_server, default_id, tmp_path) == (False, False)
    expect(page.locator("#run-status")).not_to_contain_text("fast mode")
    expect(page.locator(f'#gallery li[data-run="{default_id}"] strong')).not_to_contain_text("fast mode")


def test_a_fast_png_ticks_the_box_and_runs_fast_again_and_a_default_png_unticks_it(
        fast_and_default, page, web_server, tmp_path):
    (_, fast_png), (_, default_png) = fast_and_default
    expect(page.locator("#fast")).not_to_be_checked()
    page.set_input_files("#png-file", files=[{"name": "fast.png", "mimeType": "image/png", "buffer": fast_png}])
    expect(page.locator("#notice")).to_contain_text("Loaded the graph and inputs of fast.png, made in fast mode")
    expect(page.locator("#fast")).to_be_checked()
    body, run_id = run_from_page(page)
    assert body["fast"] is True and "document" in body  # the PNG's own graph, run fast as it was made
    assert server_record(web_server, run_id, tmp_path) == (True, True)

    drop_file(page, "default.png", default_png)
    expect(page.locator("#notice")).to_have_text("Loaded the graph and inputs of default.png.")
    expect(page.locator("#fast")).not_to_be_checked()


def test_use_these_inputs_restores_fast_mode_and_picking_a_graph_keeps_the_box(fast_and_default, page):
    (fast_run, _), (default_run, _) = fast_and_default
    page.click("#refresh")
    fast_entry = page.locator(f'#gallery li[data-run="{fast_run["id"]}"]')
    default_entry = page.locator(f'#gallery li[data-run="{default_run["id"]}"]')
    expect(fast_entry.locator("strong")).to_contain_text("stable_diffusion · finished · fast mode")
    expect(default_entry.locator("strong")).not_to_contain_text("fast mode")

    fast_entry.get_by_role("button", name="Use these inputs").click()
    expect(page.locator("#notice")).to_have_text(f"Inputs of run {fast_run['id']} loaded, with fast mode.")
    expect(page.locator("#fast")).to_be_checked()
    open_graph(page, "img2img")  # another graph from the list: the box stays as the user left it
    expect(page.locator("#fast")).to_be_checked()
    default_entry.get_by_role("button", name="Use these inputs").click()
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    expect(page.locator("#fast")).not_to_be_checked()
