"""The queue view's and the history's API: positions, priority changes, cancel; paging, search by prompt, delete.

A server of this module's own (in-process, fresh data folder): a `Sleep` run holds the worker while others
wait, so the queue's order is the store's, not a race.
"""

import httpx
import pytest
from inprocess import serving
from serve_helpers import wait_for

PROMPTED = """nodegraph: 1
inputs:
  prompt: {type: str, default: ""}
nodes:
  text: {type: String, value: $inputs.prompt}
  gray: {type: SolidImage, value: 0.5}
outputs:
  text: $text.value
  image: $gray.image
"""
PROMPTS = ["a red fox", "A RED barn", "a blue whale", "100% cotton", "snake_case names"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("queue")) as (url, headers, service):
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            yield client


def submit(api, **body) -> dict:
    response = api.post("/runs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture(scope="module")
def ended(api):
    """Five finished runs with prompts, oldest first."""
    from nodegraph.client import Client

    runs = [submit(api, document=PROMPTED, inputs={"prompt": p}) for p in PROMPTS]
    with Client(str(api.base_url), token=api.headers["authorization"][7:]) as client:
        for run in runs:
            wait_for(client, run["id"], "finished")
    return runs


def test_the_queue_lists_the_running_run_then_the_queued_ones_by_priority_and_a_change_reorders_them(api, ended):
    from nodegraph.client import Client

    blocker = submit(api, graph="sleep", inputs={"seconds": 60})
    with Client(str(api.base_url), token=api.headers["authorization"][7:]) as client:
        wait_for(client, blocker["id"], "running")
    low, high, later = (submit(api, graph="sleep", inputs={"value": v}, priority=p) for v, p in ((1, 0), (2, 5), (3, 0)))
    try:
        shown = api.get("/queue").json()["runs"]
        assert [(r["id"], r["position"]) for r in shown] == [(blocker["id"], 0), (high["id"], 1), (low["id"], 2),
                                                              (later["id"], 3)]
        moved = api.patch(f"/runs/{later['id']}", json={"priority": 10})
        assert moved.status_code == 200
        assert (moved.json()["priority"], moved.json()["position"]) == (10, 1)
        assert [r["id"] for r in api.get("/queue").json()["runs"]] == [blocker["id"], later["id"], high["id"], low["id"]]

        cancelled = api.delete(f"/runs/{high['id']}")
        assert cancelled.json()["status"] == "cancelled"
        assert [(r["id"], r["position"]) for r in api.get("/queue").json()["runs"]][1:] == [(later["id"], 1),
                                                                                           (low["id"], 2)]
        not_queued = api.patch(f"/runs/{blocker['id']}", json={"priority": 3})
        assert not_queued.status_code == 409
        assert api.patch(f"/runs/{low['id']}", json={"priority": 1001}).status_code == 400
        assert api.patch(f"/runs/{low['id']}", json={"priority": 1, "x": 2}).status_code == 400
        assert api.patch("/runs/nosuchrun", json={"priority": 1}).status_code == 404
        assert api.delete(f"/history/{low['id']}").status_code == 409  # queued: cancel it first
    finally:
        for run in (low, later, blocker):
            api.delete(f"/runs/{run['id']}")


def test_history_pages_newest_first_and_searches_the_prompt_in_any_case(api, ended):
    first = api.get("/history", params={"limit": 2, "q": ""}).json()
    assert first["total"] >= len(PROMPTS)
    assert len(first["runs"]) == 2 and first["next"] is not None
    seen = []
    page = api.get("/history", params={"limit": 2, "q": "RED"}).json()
    assert page["total"] == 2
    seen += page["runs"]
    assert page["next"] is None
    assert [r["inputs"]["prompt"] for r in seen] == ["A RED barn", "a red fox"]  # newest first
    walked, cursor = [], None
    while True:
        page = api.get("/history", params={"limit": 2, **({"cursor": cursor} if cursor is not None else {})}).json()
        walked += [r["id"] for r in page["runs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(walked) == len(set(walked)) == page["total"]
    assert [r["id"] for r in ended][::-1] == [i for i in walked if i in {r["id"] for r in ended}]
    # LIKE's wildcards are the user's text, not patterns
    assert [r["inputs"]["prompt"] for r in api.get("/history", params={"q": "100%"}).json()["runs"]] == ["100% cotton"]
    assert [r["inputs"]["prompt"] for r in api.get("/history", params={"q": "e_c"}).json()["runs"]] == \
        ["snake_case names"]
    assert api.get("/history", params={"q": "%"}).json()["total"] == 1
    assert api.get("/history", params={"limit": 0}).status_code == 400
    assert api.get("/history", params={"cursor": -1}).status_code == 400


def test_deleting_a_run_from_the_history_removes_it_and_its_files(api, ended):
    run = submit(api, document=PROMPTED, inputs={"prompt": "to be deleted"})
    from nodegraph.client import Client

    with Client(str(api.base_url), token=api.headers["authorization"][7:]) as client:
        wait_for(client, run["id"], "finished")
    assert api.get("/history", params={"q": "to be deleted"}).json()["total"] == 1
    image = api.get(f"/runs/{run['id']}").json()["outputs"]["image"][0]["url"]
    assert api.get(image).status_code == 200
    deleted = api.delete(f"/history/{run['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": run["id"], "files": 1}
    assert api.get(image).status_code == 404
    assert api.get(f"/runs/{run['id']}").status_code == 404
    assert api.get("/history", params={"q": "to be deleted"}).json()["total"] == 0
    assert api.delete(f"/history/{run['id']}").status_code == 404


def test_the_new_routes_need_the_token(api):
    url = str(api.base_url)
    for method, path in (("GET", "/queue"), ("PATCH", "/runs/x"), ("GET", "/history"), ("DELETE", "/history/x")):
        assert httpx.request(method, url + path, json={"priority": 1}, timeout=10).status_code == 401, path
