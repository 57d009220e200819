"""The editor's routes through a real server: the connection table is the validator's rule, saving is a
round trip keeping the file's comments, a file changed on disk is not overwritten, invalid graphs become drafts,
the shipped graphs are never written, and every editor route needs the token."""

import json
import shutil
import threading

import httpx
import pytest
from editor_helpers import editor_server
from serve_helpers import ROOT

from nodegraph.core.types import can_connect, parse_type_name
from nodegraph.serve.documents import Documents, Rejected
from nodegraph.serve.editor_files import EditorFiles


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = editor_server(tmp_path_factory.mktemp("editor-api"))
    yield running
    running.stop()


def call(server, method, path, body=None):
    return httpx.request(method, server.url + path, headers=server.headers, json=body, timeout=30)


def test_every_editor_route_needs_the_token(server):
    paths = call(server, "GET", "/openapi.json").json()["paths"]
    routes = [(method.upper(), path.replace("{name}", "stable_diffusion")) for path, item in paths.items()
              if path.startswith("/editor") for method in item]
    assert len(routes) == 6, routes
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = httpx.request(method, server.url + path, headers=headers, json={"document": {}})
            assert response.status_code == 401, (method, path)


def test_the_connection_table_is_the_validators_rule(server):
    table = call(server, "GET", "/editor/types").json()
    assert {"Latent", "Tensor", "int", "float", "UNet", "list[str]"} <= set(table["types"])
    for src in table["types"]:
        for dst in table["types"]:
            expected = can_connect(parse_type_name(src), parse_type_name(dst))
            assert (dst in table["connects"][src]) == expected, (src, dst)
    assert "Tensor" in table["connects"]["Latent"] and "Latent" not in table["connects"]["Tensor"]


def test_opening_a_graph_gives_its_structure_stamp_and_included_ports(server):
    opened = call(server, "GET", "/editor/graphs/stable_diffusion").json()
    assert opened["editable"] is True
    assert opened["document"]["nodes"]["scheduler"]["sd_pipeline"] is True
    assert opened["yaml"] == (ROOT / "graphs" / "stable_diffusion.yaml").read_text()
    step = opened["includes"]["./sd_denoise_step.yaml"]
    assert {"name": "latents", "type": "Latent"} in step["outputs"]
    assert [p["type"] for p in step["inputs"] if p["name"] == "unet"] == ["UNet"]


def test_validate_locates_each_problem_at_its_node_and_port(server):
    document = call(server, "GET", "/editor/graphs/stable_diffusion").json()["document"]
    document["nodes"]["decode"]["latents"] = "$clip.tokenizer"
    errors = call(server, "POST", "/editor/validate", {"document": document, "name": "stable_diffusion"}).json()
    [mismatch] = [e for e in errors["errors"] if e["code"] == "type_mismatch"]
    assert mismatch["path"] == "nodes.decode.latents" and "takes Latent" in mismatch["message"]


def test_saving_keeps_the_file_and_refuses_a_file_changed_on_disk(server, tmp_path):
    opened = call(server, "GET", "/editor/graphs/stable_diffusion").json()
    document = opened["document"]
    document["nodes"]["scheduler"]["sd_pipeline"] = False
    body = {"document": document, "stamp": opened["stamp"], "layout": {"decode": [10, 20]}}
    saved = call(server, "PUT", "/editor/graphs/stable_diffusion", body)
    assert saved.status_code == 200, saved.text
    expected = opened["yaml"].replace("    sd_pipeline: true\n", "    sd_pipeline: false\n")
    assert saved.json()["yaml"] == expected and saved.json()["saved"] == "graph"
    again = call(server, "PUT", "/editor/graphs/stable_diffusion", body)  # the old stamp: changed since
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "changed_on_disk"
    forced = call(server, "PUT", "/editor/graphs/stable_diffusion", {**body, "overwrite": True})
    assert forced.status_code == 200
    assert call(server, "GET", "/editor/graphs/stable_diffusion").json()["layout"] == {"decode": [10, 20]}


def test_an_invalid_graph_is_saved_only_as_a_draft_with_its_errors(server):
    document = {"nodegraph": 1, "nodes": {"seed": {"type": "Seed", "seed": "ten"}}, "outputs": {"g": "$seed.generator"}}
    refused = call(server, "PUT", "/editor/graphs/fresh", {"document": document})
    assert refused.status_code == 422 and refused.json()["errors"][0]["path"] == "nodes.seed.seed"
    draft = call(server, "PUT", "/editor/graphs/fresh", {"document": document, "draft": True}).json()
    assert draft["saved"] == "draft" and draft["errors"][0]["path"] == "nodes.seed.seed"
    names = [g["name"] for g in call(server, "GET", "/graphs").json()["graphs"]]
    assert "fresh" not in names  # a draft is never one of the graphs runs may name
    text = call(server, "POST", "/editor/yaml", {"document": document}).json()["yaml"]
    assert "seed: ten" in text  # Download YAML works for an invalid graph too


def test_the_shipped_graphs_and_odd_names_are_never_written(server):
    opened = call(server, "GET", "/editor/graphs/sdxl").json()  # only in the shipped graphs folder
    assert opened["editable"] is False
    refused = call(server, "PUT", "/editor/graphs/sdxl", {"document": opened["document"], "stamp": opened["stamp"]})
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "read_only_graph"
    odd = call(server, "PUT", "/editor/graphs/..%2Fescape", {"document": {"nodegraph": 1}})
    assert odd.status_code in (400, 404)
    assert json.dumps(odd.json()).count("errors")


def test_a_graph_saved_under_a_new_name_keeps_its_sources_comments(server):
    opened = call(server, "GET", "/editor/graphs/stable_diffusion").json()
    document = opened["document"]
    document["nodes"]["decode"]["latents"] = "$noise.latents"
    saved = call(server, "PUT", "/editor/graphs/sd_copy", {"document": document, "source": "stable_diffusion"})
    assert saved.status_code == 200, saved.text
    expected = opened["yaml"].replace("    latents: $denoise.latents\n", "    latents: $noise.latents\n")
    assert expected != opened["yaml"] and saved.json()["yaml"] == expected
    again = call(server, "PUT", "/editor/graphs/sd_copy", {"document": document})  # exists now: no stamp given
    assert again.status_code == 409 and "exists already" in again.json()["errors"][0]["message"]


def test_hostile_documents_are_refused_or_reported_and_nothing_outside_is_read(server):
    deep = '{"a":' * 3000 + "1" + "}" * 3000
    response = httpx.post(server.url + "/editor/validate", headers={**server.headers, "Content-Type": "application/json"},
                          content='{"document": {"nodegraph": 1, "nodes": %s}}' % deep, timeout=30)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "bad_request"
    document = {"nodegraph": 1, "nodes": {"a": {"type": "../../etc/passwd.yaml"}}, "outputs": {"x": "$a.y"}}
    checked = call(server, "POST", "/editor/validate", {"document": document, "name": "../x"}).json()
    assert "include_outside" in [e["code"] for e in checked["errors"]] and checked["includes"] == {}
    assert all(e["file"] == "graph.yaml" for e in checked["errors"])


def nested(levels: int) -> dict:
    """A document whose `nodes` holds `levels` mappings one inside the other: the scalar at the bottom sits at
    level `levels + 2`, counting as the YAML loader does (the top mapping is level 1)."""
    inner: object = 1
    for _ in range(levels):
        inner = {"a": inner}
    return {"nodegraph": 1, "nodes": inner}


@pytest.mark.parametrize("levels", [100, 600])
def test_a_document_nested_too_deep_is_refused_by_every_route_that_takes_one(server, levels):
    deep, fine = nested(levels), nested(0)
    requests = [("POST", "/editor/validate", {"document": deep, "name": "stable_diffusion"}),
                ("POST", "/editor/yaml", {"document": deep}),
                ("PUT", "/editor/graphs/deep_new", {"document": deep}),
                ("PUT", "/editor/graphs/stable_diffusion", {"document": deep, "overwrite": True}),
                ("PUT", "/editor/graphs/deep_layout", {"document": fine, "layout": deep, "draft": True})]
    for method, path, body in requests:
        response = call(server, method, path, body)
        assert response.status_code == 422, (method, path, response.status_code, response.text[:300])
        [error] = response.json()["errors"]
        what = "layout" if body.get("layout") is deep else "document"
        assert error["code"] == "too_deep" and error["path"] == what, (method, path, error)
        assert f"`{what}` nests more than 64 levels deep" in error["message"]
        assert str(server.data) not in response.text and str(ROOT) not in response.text
    names = [g["name"] for g in call(server, "GET", "/editor/graphs").json()["graphs"]]
    assert "deep_new" not in names and "deep_layout" not in names  # nothing written
    assert call(server, "GET", "/editor/graphs/stable_diffusion").status_code == 200  # the server still answers


def test_the_depth_limit_is_the_loaders_so_a_document_it_lets_through_is_not_refused_as_too_deep(server):
    # 62 mappings under `nodes`: its scalar at level 64, the limit (spec/limits.py max_depth); 63: one over.
    at_limit = call(server, "POST", "/editor/validate", {"document": nested(62)})
    assert at_limit.status_code == 200 and "too_deep" not in [e["code"] for e in at_limit.json()["errors"]]
    over = call(server, "POST", "/editor/validate", {"document": nested(63)})
    assert over.status_code == 422 and over.json()["errors"][0]["code"] == "too_deep"


def editor_files(tmp_path, graph_dirs) -> EditorFiles:
    """The editor's files in this process (the routes call the same object from a thread pool)."""
    return EditorFiles(Documents(tmp_path / "data", graph_dirs, [], store=None), tmp_path / "data")


def test_two_saves_from_one_stamp_at_the_same_time_give_one_save_and_one_conflict(tmp_path, monkeypatch):
    (tmp_path / "graphs").mkdir()
    shutil.copy(ROOT / "graphs" / "stable_diffusion.yaml", tmp_path / "graphs")
    shutil.copy(ROOT / "graphs" / "sd_denoise_step.yaml", tmp_path / "graphs")
    files = editor_files(tmp_path, [tmp_path / "graphs"])
    opened = files.open("stable_diffusion")
    first_checking, second_arrived = threading.Event(), threading.Event()
    real_check, real_hold = files.check, files._hold

    def check(*args):  # the first save, past its stamp check, waits here until the second one has arrived
        if threading.current_thread().name == "first":
            first_checking.set()
            assert second_arrived.wait(30)
        return real_check(*args)

    def hold(name):  # the second save arrives: about to wait for the graph's lock
        if threading.current_thread().name == "second":
            second_arrived.set()
        return real_hold(name)

    monkeypatch.setattr(files, "check", check)
    monkeypatch.setattr(files, "_hold", hold)
    outcome: dict[str, object] = {}

    def save(value: bool):
        try:
            document = json.loads(json.dumps(opened["document"]))
            document["nodes"]["scheduler"]["sd_pipeline"] = value
            outcome[threading.current_thread().name] = files.save(
                "stable_diffusion", document, opened["stamp"], {}, draft=False, overwrite=False)
        except Rejected as exc:
            outcome[threading.current_thread().name] = exc
        finally:
            second_arrived.set()  # a save that finished without waiting (no lock) lets the first one go on

    first = threading.Thread(target=save, args=(False,), name="first")
    first.start()
    assert first_checking.wait(30)
    second = threading.Thread(target=save, args=(True,), name="second")
    second.start()
    first.join(60)
    second.join(60)
    assert isinstance(outcome["first"], dict) and outcome["first"]["saved"] == "graph"
    conflict = outcome["second"]
    assert isinstance(conflict, Rejected), conflict  # before: both saved, the first save's edit lost
    assert conflict.status == 409 and conflict.errors[0].code == "changed_on_disk"
    assert (tmp_path / "graphs" / "stable_diffusion.yaml").read_text() == outcome["first"]["yaml"]


def test_a_new_graph_is_validated_in_the_folder_it_will_be_written_to(tmp_path):
    from nodegraph.shipped_graphs import SHIPPED_GRAPHS

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "part.yaml").write_text(
        "nodegraph: 1\ninputs:\n  seed: {type: int, default: 1}\nnodes:\n  s: {type: Seed, seed: $inputs.seed}\n"
        "outputs:\n  generator: $s.generator\n")
    files = editor_files(tmp_path, [SHIPPED_GRAPHS, tmp_path / "mine"])  # the first folder is never written
    uses_part = {"nodegraph": 1, "nodes": {"p": {"type": "./part.yaml", "seed": 3}}, "outputs": {"g": "$p.generator"}}
    assert files.check(uses_part, "uses_part")[1] == []
    ports = files.includes(uses_part, "uses_part")["./part.yaml"]
    assert ports["outputs"] == [{"name": "generator", "type": "Generator"}]
    saved = files.save("uses_part", uses_part, None, {}, draft=False, overwrite=False)
    assert saved["saved"] == "graph" and (tmp_path / "mine" / "uses_part.yaml").read_text() == saved["yaml"]
    # a file only in the shipped folder is not beside the new graph: including it is an error, as after saving
    uses_shipped = {"nodegraph": 1, "nodes": {"p": {"type": "./sd_denoise_step.yaml"}}, "outputs": {"g": "$p.latents"}}
    assert (SHIPPED_GRAPHS / "sd_denoise_step.yaml").is_file()
    assert "file_not_found" in [e.code for e in files.check(uses_shipped, "uses_shipped")[1]]


def test_a_graph_file_the_editor_cannot_show_is_a_clear_refusal_not_a_traceback(server):
    folder = server.data.parent / "graphs"  # the server's writable --graphs folder (editor_helpers.py)
    files = {"deep_file_100": "nodegraph: 1\nnodes: " + "{a: " * 100 + "1" + "}" * 100 + "\n",
             "deep_file_600": "nodegraph: 1\nnodes: " + "{a: " * 600 + "1" + "}" * 600 + "\n",
             "broken_file": "nodegraph: 1\nnodes: {a: [1, 2\n"}
    try:
        for name, text in files.items():
            (folder / f"{name}.yaml").write_text(text)
        for name in files:
            response = call(server, "GET", f"/editor/graphs/{name}")
            assert response.status_code == 422, (name, response.status_code, response.text[:300])
            [error] = response.json()["errors"]
            expected = ("yaml_syntax", "is not valid YAML at line 3") if name == "broken_file" else (
                "too_deep", "nests more than 64 levels deep")
            assert error["code"] == expected[0] and expected[1] in error["message"], error
            assert f"the graph `{name}`" in error["message"] and str(folder) not in response.text
    finally:
        for name in files:
            (folder / f"{name}.yaml").unlink(missing_ok=True)
