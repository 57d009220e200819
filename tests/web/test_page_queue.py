"""The queue view: the running run and the queued ones with their positions, "Run next" reorders by priority,
"Cancel" cancels a queued or the running run. A `sleep` run (tests/serve/graphs) holds the worker meanwhile."""

from playwright.sync_api import expect
from serve_helpers import wait_for
from web_helpers import DOCS_IMAGES


def order(page, ids):
    rows = page.locator("#queue li")
    expect(rows).to_have_count(len(ids))
    for at, run_id in enumerate(ids):
        expect(rows.nth(at)).to_have_attribute("data-run", run_id)


def test_the_queue_shows_positions_reorders_by_priority_and_cancels(page, web_server):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")  # the page has started
    with web_server.client() as client:
        blocker = client.submit("sleep", inputs={"seconds": 120})
        waiting = []
        try:
            wait_for(client, blocker.id, "running")
            waiting = [client.submit("sleep", inputs={"value": v}) for v in (1, 2, 3)]
            a, b, c = (h.id for h in waiting)
            page.click("#refresh")
            order(page, [blocker.id, a, b, c])
            expect(page.locator("#queue .position")).to_have_text(["running", "#1", "#2", "#3"])
            expect(page.locator(f'#queue li[data-run="{a}"]')).to_contain_text("sleep · priority 0")

            page.locator(f'#queue li[data-run="{c}"]').get_by_role("button", name="Run next").click()
            order(page, [blocker.id, c, a, b])
            assert client.get(c)["priority"] == 1
            page.screenshot(path=DOCS_IMAGES / "web-queue.png")
            page.locator(f'#queue li[data-run="{c}"]').get_by_role("button", name="Run later").click()
            order(page, [blocker.id, a, b, c])
            assert client.get(c)["priority"] == -1

            page.locator(f'#queue li[data-run="{a}"]').get_by_role("button", name="Cancel").click()
            order(page, [blocker.id, b, c])
            expect(page.locator("#queue .position")).to_have_text(["running", "#1", "#2"])
            assert client.get(a)["status"] == "cancelled"

            page.locator(f'#queue li[data-run="{blocker.id}"]').get_by_role("button", name="Cancel").click()
            wait_for(client, blocker.id, "cancelled")
            for run_id in (b, c):  # the next ones run (a sleep of 0 s) once the worker is free
                wait_for(client, run_id, "finished")
            expect(page.locator("#queue li")).to_have_count(0)
            expect(page.locator("#queue-empty")).to_be_visible()
        finally:
            for handle in (blocker, *waiting):
                if client.get(handle.id)["status"] in ("queued", "running"):
                    handle.cancel()


def test_run_next_at_the_highest_priority_steps_the_runs_in_the_way_down_keeping_their_order(page, web_server):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")  # the page has started
    with web_server.client() as client:
        blocker = client.submit("sleep", inputs={"seconds": 120})
        waiting = []
        try:
            wait_for(client, blocker.id, "running")
            waiting = [client.submit("sleep", inputs={"value": v}, priority=p)
                       for v, p in ((1, 1000), (2, 1000), (3, 999), (4, 0))]
            a, b, c, d = (h.id for h in waiting)
            page.click("#refresh")
            order(page, [blocker.id, a, b, c, d])
            page.locator(f'#queue li[data-run="{d}"]').get_by_role("button", name="Run next").click()
            order(page, [blocker.id, d, a, b, c])
            assert client.get(d)["priority"] == 1000
            assert [client.get(r)["priority"] for r in (a, b, c)] == [999, 998, 997]
        finally:
            for handle in (*waiting, blocker):  # the queued ones first: none can start and end meanwhile
                if client.get(handle.id)["status"] in ("queued", "running"):
                    handle.cancel()


def test_run_later_at_the_lowest_priority_steps_the_runs_in_the_way_up_keeping_their_order(page, web_server):
    expect(page.locator("#graph-title")).to_have_text("stable_diffusion")  # the page has started
    with web_server.client() as client:
        blocker = client.submit("sleep", inputs={"seconds": 120})
        waiting = []
        try:
            wait_for(client, blocker.id, "running")
            waiting = [client.submit("sleep", inputs={"value": v}, priority=p)
                       for v, p in ((1, 0), (2, -999), (3, -1000), (4, -1000))]
            a, b, c, d = (h.id for h in waiting)
            page.click("#refresh")
            order(page, [blocker.id, a, b, c, d])
            page.locator(f'#queue li[data-run="{a}"]').get_by_role("button", name="Run later").click()
            order(page, [blocker.id, b, c, d, a])
            assert client.get(a)["priority"] == -1000
            assert [client.get(r)["priority"] for r in (b, c, d)] == [-997, -998, -999]
        finally:
            for handle in (*waiting, blocker):  # the queued ones first: none can start and end meanwhile
                if client.get(handle.id)["status"] in ("queued", "running"):
                    handle.cancel()
