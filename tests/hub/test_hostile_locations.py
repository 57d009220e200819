"""Hub addresses written by an attacker cannot open a local file, echo its content or print a secret.

Each address is tried on load_graph, as a node type inside a local graph, and on `nodegraph validate`; a
honeypot file outside the hub cache records any attempt to open it (tests/hostile_audit.py).
"""

import os

import pytest
from hostile_audit import Honeypot
from hub_cache import COMMIT_V1, REPO

from nodegraph import load_graph
from nodegraph.cli import main
from nodegraph.spec.errors import ValidationFailed


@pytest.fixture
def pot(tmp_path, monkeypatch, hub_cache):
    with Honeypot(tmp_path / "secret", monkeypatch) as pot:
        yield pot


def attacks(pot, hub_cache):
    """Revisions and paths that, decoded, leave the cache's refs/ or snapshot folder for the honeypot."""
    refs = hub_cache / f"models--{REPO.replace('/', '--')}" / "refs"
    up = os.path.relpath(pot.file, refs)  # ../../../secret/honey
    up_enc, abs_enc = up.replace("/", "%2F"), str(pot.file).replace("/", "%2F")
    return [
        f"hf://{REPO}@{abs_enc}/graph.yaml",  # %2F<absolute path>: refs/ + an absolute path = that path
        f"hf://{REPO}@{up_enc}/graph.yaml",  # ..%2F..
        f"hf://{REPO}@{up_enc.replace('.', '%2e')}/graph.yaml",  # %2e%2e%2F
        f"hf://{REPO}@{up.replace('/', '%252F')}/graph.yaml",  # encoded twice
        f"hf://{REPO}@{up.replace('/', '%5C')}/graph.yaml",  # backslashes
        f"hf://{REPO}@main%00{abs_enc}/graph.yaml",  # a NUL byte
        f"hf://{REPO}@.hidden/graph.yaml",
        f"hf://{REPO}@v1.lock/graph.yaml",
        f"hf://{REPO}/{str(pot.folder / 'honey.yaml').replace('/', '%2F')}",  # path: %2F<absolute path>
        f"hf://{REPO}//{pot.folder / 'honey.yaml'}",  # path: absolute after the repo
        f"hf://{REPO}/parts%2F..%2F..%2F..%2F{os.path.relpath(pot.folder / 'honey.yaml', hub_cache)}",
        f"hf://{REPO}/parts/%2e%2e/%2e%2e/x.yaml",
    ]


def test_hostile_addresses_are_refused_before_anything_is_opened(pot, hub_cache, capsys):
    for address in attacks(pot, hub_cache):
        with pytest.raises(ValidationFailed) as caught:
            load_graph(address)
        (error,) = caught.value.errors
        assert error.code == "invalid_hub_address", (address, str(error))
        assert "hf://OWNER/REPO/PATH.yaml" in error.hint
        pot.check(caught.value.report())
        assert main(["validate", address]) == 2
        err = capsys.readouterr().err
        assert "invalid_hub_address" in err and "internal error" not in err
        pot.check(err)


def test_hostile_addresses_as_node_types_in_a_local_graph_are_refused_at_the_type(pot, hub_cache, tmp_path):
    for n, address in enumerate(attacks(pot, hub_cache)):
        path = tmp_path / f"local{n}.yaml"
        path.write_text(f"nodes:\n  s: {{type: '{address}', x: 1.0}}\noutputs: {{y: $s.y}}\n")
        with pytest.raises(ValidationFailed) as caught:
            load_graph(path)
        (error,) = caught.value.errors
        assert (error.code, error.path, error.line) == ("invalid_hub_address", "nodes.s.type", 2), str(error)
        pot.check(caught.value.report())


@pytest.mark.parametrize("revision", ["v1", COMMIT_V1, "refs%2Fpr%2F1", "release%2F2024-01", "v1.0"])
def test_branch_tag_and_commit_revisions_still_parse(revision):
    from nodegraph.hub.resolve import parse_address

    assert parse_address(f"hf://{REPO}@{revision}/graph.yaml").revision == revision.replace("%2F", "/")


def test_library_errors_are_summarised_not_echoed(pot, hub_cache, monkeypatch):
    import huggingface_hub

    def leaky(*args, **kwargs):  # a library error quoting a file's content and a path outside the roots
        raise ValueError(f"cannot parse {pot.file}: {pot.file.read_text()} token={os.environ['HF_TOKEN']}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", leaky)
    with pytest.raises(ValidationFailed) as caught:
        load_graph(f"hf://{REPO}/graph.yaml")
    (error,) = caught.value.errors
    assert error.code == "hub_error" and "ValueError" in error.message
    pot.opened.clear()  # the fake library itself read the honeypot; what matters is what the message says
    pot.check(caught.value.report())
    assert str(pot.folder) not in caught.value.report()


def test_the_offline_message_does_not_show_the_cache_folder(hub_cache):
    with pytest.raises(ValidationFailed) as caught:
        load_graph(f"hf://{REPO}@v3/graph.yaml")
    assert caught.value.errors[0].code == "hub_offline" and str(hub_cache) not in caught.value.report()


def recipe_png(path, recipe):
    import json

    import PIL.Image
    import PIL.PngImagePlugin

    info = PIL.PngImagePlugin.PngInfo()
    info.add_text("nodegraph", json.dumps(recipe))
    PIL.Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def hub_node_recipe(address, pins=None):
    text = (f"nodes:\n  s: {{type: '{address}', x: 0.004}}\n"
            "  image: {type: SolidImage, value: $s.y, width: 8, height: 8}\noutputs: {image: $image.image}\n")
    return {"graph": {"format": 1, "main": "g.yaml", "files": {"g.yaml": text}}, "inputs": {},
            **({"hub_pins": pins} if pins is not None else {})}


def test_a_recipe_pin_that_is_not_a_commit_is_refused_before_the_hub_is_asked(pot, hub_cache, tmp_path, capsys):
    refs = hub_cache / f"models--{REPO.replace('/', '--')}" / "refs"
    address = f"hf://{REPO}/parts/scale.yaml"
    for pin in (os.path.relpath(pot.file, refs), str(pot.file), "main", "v1"):
        png = recipe_png(tmp_path / "evil.png", hub_node_recipe(address, {address: pin}))
        assert main(["run", str(png), "--out", str(tmp_path / "out"), "-q"]) == 2
        out, err = capsys.readouterr()
        assert "not a commit hash" in err and "internal error" not in err
        pot.check(out, err)


def test_a_recipe_reads_hub_graphs_only_at_the_commits_it_recorded(hub_cache, tmp_path, capsys):
    address = f"hf://{REPO}/parts/scale.yaml"
    png = recipe_png(tmp_path / "unpinned.png", hub_node_recipe(address))
    assert main(["run", str(png), "--out", str(tmp_path / "a"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "hub_refused" in err and "at the commit it recorded" in err
    # the user may allow it, as for includes outside the recipe's folder
    assert main(["run", str(png), "--out", str(tmp_path / "b"), "-q", "--allow-includes-outside"]) == 0
    capsys.readouterr()
    pinned = recipe_png(tmp_path / "pinned.png", hub_node_recipe(address, {address: COMMIT_V1}))
    assert main(["run", str(pinned), "--out", str(tmp_path / "c"), "-q"]) == 0
    at_commit = recipe_png(tmp_path / "at.png", hub_node_recipe(f"hf://{REPO}@{COMMIT_V1}/parts/scale.yaml"))
    assert main(["run", str(at_commit), "--out", str(tmp_path / "d"), "-q"]) == 0


def test_a_loader_that_allows_no_hub_graphs_refuses_them_at_the_type(hub_cache, tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(f"nodes:\n  s: {{type: 'hf://{REPO}@{COMMIT_V1}/parts/scale.yaml', x: 1.0}}\n"
                    "outputs: {y: $s.y}\n")
    assert load_graph(path).run() == {"y": 10.0}  # a graph the user runs directly: allowed
    with pytest.raises(ValidationFailed) as caught:
        load_graph(path, hub_references="none")
    (error,) = caught.value.errors
    assert (error.code, error.path, error.line) == ("hub_refused", "nodes.s.type", 2)
    with pytest.raises(ValidationFailed) as caught:
        load_graph(f"hf://{REPO}/graph.yaml", hub_references="none")
    assert caught.value.errors[0].code == "hub_refused"
