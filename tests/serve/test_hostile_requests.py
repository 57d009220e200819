"""Malformed request parameters are 4xx with a clear message (never a 500), and the server keeps serving."""

import httpx
import pytest
from serve_helpers import wait_for

HUGE = "9" * 5000  # past Python's 4,300-digit int conversion limit


def refused(server, method: str, path: str, status: int = 400, **kwargs) -> dict:
    response = httpx.request(method, server.url + path, headers={**server.headers, **kwargs.pop("headers", {})},
                             timeout=30, **kwargs)
    assert response.status_code == status, (path, response.status_code, response.text[:300])
    body = response.json()
    assert body["errors"] and body["message"] and "Traceback" not in response.text
    assert httpx.get(f"{server.url}/health", headers=server.headers).status_code == 200  # still serving
    return body


@pytest.mark.parametrize("cursor", [str(2**70), str(2**63), "-1", "-99999999999999999999", HUGE, "abc", "1e3", "",
                                    "0x10", "1.5"])
def test_a_page_cursor_outside_sqlites_integers_or_not_a_number_is_400(server, cursor):
    body = refused(server, "GET", f"/runs?cursor={cursor}")
    assert body["errors"][0]["path"] == "query.cursor"


def test_the_largest_cursor_sqlite_holds_is_a_page(server):
    response = httpx.get(f"{server.url}/runs?cursor={2**63 - 1}&limit=1", headers=server.headers)
    assert response.status_code == 200 and "runs" in response.json()


@pytest.mark.parametrize("limit", ["0", "-1", "501", str(10**30), HUGE, "ten", "2.5"])
def test_a_page_limit_out_of_range_or_not_a_number_is_400(server, limit):
    assert refused(server, "GET", f"/runs?limit={limit}")["errors"][0]["path"] == "query.limit"


@pytest.fixture(scope="module")
def finished_run(server):
    with server.client() as client:
        handle = client.submit("sleep", value=4.25)
        run = wait_for(client, handle.id, "finished")
        events = list(handle.events())
    return run["id"], events


@pytest.mark.parametrize("last", ["9" * 4400, "-1", "abc", "1.5", "9" * 19, "0x3", "١٢".encode()])
def test_a_malformed_last_event_id_is_400(server, finished_run, last):
    body = refused(server, "GET", f"/runs/{finished_run[0]}/events", headers={"Last-Event-ID": last})
    assert body["errors"][0]["path"] == "Last-Event-ID" and "event id" in body["message"]
    assert len(body["message"]) < 400  # the header is not echoed whole


def read_stream(server, run_id: str, last: str) -> str:
    """The whole body of a resumed stream; a stream that does not end fails at the read timeout."""
    with httpx.stream("GET", f"{server.url}/runs/{run_id}/events", headers={**server.headers, "Last-Event-ID": last},
                      timeout=httpx.Timeout(20, read=20)) as response:
        assert response.status_code == 200
        return response.read().decode()


def test_a_stream_resumed_at_or_past_the_end_of_a_finished_run_ends_at_once(server, finished_run):
    run_id, events = finished_run
    last = events[-1]["seq"]
    assert events[-1]["type"] == "finished"
    for resume in (last, last + 1, last + 1000, 10**17):
        assert read_stream(server, run_id, str(resume)) == ""  # no keep-alive, no event: the stream closed
    before_end = read_stream(server, run_id, str(last - 1))
    assert before_end.startswith(f"id: {last}\nevent: finished\n") and before_end.count("event:") == 1


def test_an_sse_client_reconnecting_after_the_terminal_event_does_not_hang(server, finished_run):
    run_id, _ = finished_run
    with httpx.stream("GET", f"{server.url}/runs/{run_id}/events", headers=server.headers, timeout=20) as response:
        ids = [line[4:] for line in response.iter_lines() if line.startswith("id: ")]
    assert read_stream(server, run_id, ids[-1]) == ""  # what EventSource sends when it reconnects


@pytest.mark.parametrize("body", ['{"graph": "sleep", "priority": ' + HUGE + '}',
                                  '{"graph": "sleep", "inputs": {"value": ' + HUGE + '}}',
                                  '{"graph": "sleep", "priority": 1001}', '{"graph": "sleep", "priority": -5.5}',
                                  '{"graph": "sleep"', '\xff\xfe', '[1, 2]', '"sleep"', 'null',
                                  '{"graph": "sleep", "inputs": [1]}', '{"graph": "sleep", "outputs": "value"}',
                                  '{"graph": "sleep", "unknown": 1}'])
def test_a_malformed_run_request_body_is_400_and_nothing_is_queued(server, body):
    before = httpx.get(f"{server.url}/health", headers=server.headers).json()["runs"]
    answer = refused(server, "POST", "/runs", content=body.encode("utf-8", "surrogateescape"),
                     headers={"content-type": "application/json"})
    assert answer["errors"][0]["code"] == "bad_request"
    assert httpx.get(f"{server.url}/health", headers=server.headers).json()["runs"] == before
