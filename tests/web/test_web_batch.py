"""Run comforts: a random seed on every run, a batch count that queues N runs."""

import re

from playwright.sync_api import expect
from web_helpers import RUN_TIMEOUT


def run_once(page) -> str:
    """Click Run; the new run's id, once the page says that run finished."""
    with page.expect_response(lambda r: r.url.endswith("/runs") and r.request.method == "POST") as answer:
        page.click("#run")
    run_id = answer.value.json()["id"]
    expect(page.locator("#run-status")).to_contain_text(f"Run {run_id} finished", timeout=RUN_TIMEOUT)
    return run_id


def test_random_seed_on_every_run_gives_two_runs_different_seeds(page, web_server):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    page.fill("#in-steps", "2")
    page.fill("#in-seed", "5")
    page.check("#seed-each")
    seeds = []
    for _ in range(2):
        expect(page.locator("#run")).to_be_enabled(timeout=RUN_TIMEOUT)
        run_id = run_once(page)
        with web_server.client() as client:
            seeds.append(client.get(run_id)["inputs"]["seed"])
        expect(page.locator("#in-seed")).to_have_value(str(seeds[-1]))  # the field shows the seed used
    assert seeds[0] != seeds[1] and 5 not in seeds, seeds  # the same draw twice: a 1 in 2^32 chance


def test_batch_count_3_queues_3_runs_with_the_next_seeds(page, web_server):
    from nodegraph.client import RunHandle

    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    page.fill("#in-steps", "2")
    page.fill("#in-seed", "40")
    page.fill("#batch-count", "3")
    page.click("#run")
    expect(page.locator("#notice")).to_contain_text("Queued 3 runs: ")
    runs = re.findall(r"\w+", page.locator("#notice").inner_text().split(":", 1)[1])
    assert len(set(runs)) == 3, runs
    with web_server.client() as client:
        for run_id in runs:
            RunHandle(client, run_id).result()  # waits on the run's events; raises unless finished
        assert [client.get(run_id)["inputs"]["seed"] for run_id in runs] == [40, 41, 42]
    page.click("#refresh")
    for seed in (40, 41, 42):  # each run in the gallery
        expect(page.locator("#gallery li", has_text=f"seed: {seed} ·")).to_contain_text("finished")


def test_a_batch_count_out_of_range_is_refused_at_the_field(page):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")
    page.fill("#batch-count", "0")
    page.click("#run")
    expect(page.locator("#form-error")).to_have_text("Batch count: a whole number from 1 to 100.")
    expect(page.locator("#batch-count")).to_be_focused()
    expect(page.locator("#run-status")).to_have_text("")
