"""hf://OWNER/REPO[@REV]/PATH.yaml wherever a graph path goes, through a hand-built hub cache, offline."""

import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from hub_cache import COMMIT_V1, COMMIT_V2, REPO, add_commit, move_ref

from nodegraph import load_graph
from nodegraph.cli import main
from nodegraph.spec.errors import ValidationFailed


def codes(address, **kwargs):
    with pytest.raises(ValidationFailed) as caught:
        load_graph(address, **kwargs)
    return caught.value.errors


def test_an_address_without_revision_reads_main_and_its_includes_at_the_same_commit(hub_cache):
    graph = load_graph(f"hf://{REPO}/graph.yaml")
    assert graph.run(x=2.0) == {"y": 200.0}
    assert graph.checked.source.hub.commit == COMMIT_V2
    assert graph.file == f"hf://{REPO}/graph.yaml"


@pytest.mark.parametrize("revision", ["v1", COMMIT_V1])
def test_a_pinned_revision_reads_that_commit_for_the_graph_and_its_includes(hub_cache, revision):
    graph = load_graph(f"hf://{REPO}@{revision}/graph.yaml")
    assert graph.run(x=2.0) == {"y": 20.0}  # parts/scale.yaml of commit 1, not main's
    assert graph.checked.source.hub.commit == COMMIT_V1


def test_a_hub_graph_can_be_a_node_type_in_a_local_graph(hub_cache, tmp_path):
    path = tmp_path / "main.yaml"
    path.write_text(f"nodes:\n  s: {{type: 'hf://{REPO}@v1/parts/scale.yaml', x: 3.0}}\noutputs: {{y: $s.y}}\n")
    assert load_graph(path).run() == {"y": 30.0}


def test_validate_and_show_take_an_address(hub_cache, capsys):
    assert main(["validate", f"hf://{REPO}@v1/graph.yaml"]) == 0
    assert capsys.readouterr().out.startswith(f"hf://{REPO}@v1/graph.yaml: valid (1 nodes")
    assert main(["show", f"hf://{REPO}/graph.yaml"]) == 0
    assert "flowchart" in capsys.readouterr().out


def test_offline_without_a_cached_copy_is_a_clear_error(hub_cache, capsys):
    (error,) = codes(f"hf://{REPO}@v3/graph.yaml")
    assert error.code == "hub_offline" and "HF_HUB_OFFLINE is set" in error.message and "v3" in error.message
    (error,) = codes("hf://bob/nothing/graph.yaml")
    assert error.code == "hub_offline" and error.file == "hf://bob/nothing/graph.yaml"
    assert main(["validate", "hf://bob/nothing/graph.yaml"]) == 2
    err = capsys.readouterr().err
    assert "hf://bob/nothing/graph.yaml" in err and "Traceback" not in err


def test_addresses_round_trip_including_encoded_revisions():
    from nodegraph.hub.resolve import parse_address

    address = parse_address("hf://datasets/alice/graphs@refs%2Fpr%2F1/sub/g.yaml")
    assert (address.repo_type, address.repo_id, address.revision, address.path) == \
        ("dataset", "alice/graphs", "refs/pr/1", "sub/g.yaml")
    assert str(address) == "hf://datasets/alice/graphs@refs%2Fpr%2F1/sub/g.yaml"


@pytest.mark.parametrize("address", ["hf://alice/graph.yaml", "hf://alice/graphs/", "hf://alice/graphs/x.txt",
                                     "hf://alice/graphs/../x.yaml", "hf://alice/graphs@/g.yaml"])
def test_malformed_addresses_say_how_to_write_one(address):
    (error,) = codes(address)
    assert error.code == "invalid_hub_address" and "hf://OWNER/REPO/PATH.yaml" in error.hint


@pytest.mark.parametrize("include", ["../../escape.yaml", "/etc/passwd", "parts/../../x.yaml"])
def test_includes_inside_a_hub_graph_stay_in_its_repo(hub_cache, include):
    add_commit(hub_cache, "eve/graphs", COMMIT_V1,
               {"g.yaml": f"nodes:\n  s: {{type: '{include}', x: 1.0}}\noutputs: {{y: $s.y}}\n"})
    (error,) = codes("hf://eve/graphs/g.yaml")
    assert (error.code, error.path, error.line) == ("include_outside", "nodes.s.type", 2)
    assert error.file == "hf://eve/graphs/g.yaml"


def test_errors_in_an_included_hub_file_name_its_pinned_address(hub_cache):
    add_commit(hub_cache, "eve/graphs", COMMIT_V1, {
        "g.yaml": "nodes:\n  s: {type: ./bad.yaml}\noutputs: {y: $s.y}\n",
        "bad.yaml": "nodes:\n  k: {type: Flaot, value: 1.0}\noutputs: {y: $k.value}\n"})
    (error,) = codes("hf://eve/graphs/g.yaml")
    # the include was read at the commit its includer resolved to, and says so
    assert error.code == "unknown_node_type" and error.file == f"hf://eve/graphs@{COMMIT_V1}/bad.yaml"
    assert error.line == 2


def cli(*args, cache):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nodegraph.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def pixels(path):
    with PIL.Image.open(path) as image:
        return np.asarray(image).copy()


def test_the_png_records_the_commit_and_rerunning_it_reads_that_commit_after_main_moved(hub_cache, tmp_path):
    first = cli("run", f"hf://{REPO}/image.yaml", "--out", tmp_path / "a", "-q", cache=hub_cache)
    assert first.returncode == 0, first.stderr
    with PIL.Image.open(tmp_path / "a" / "image.png") as image:
        recipe = json.loads(image.text["nodegraph"])
    assert recipe["source"] == f"hf://{REPO}@{COMMIT_V2}/image.yaml"
    assert set(recipe["graph"]["files"]) == {"image.yaml", "parts/scale.yaml"}
    made_at_v2 = pixels(tmp_path / "a" / "image.png")

    move_ref(hub_cache, REPO, "main", COMMIT_V1)  # the author publishes: main now names another commit
    moved = cli("run", f"hf://{REPO}/image.yaml", "--out", tmp_path / "b", "-q", cache=hub_cache)
    assert moved.returncode == 0, moved.stderr
    assert not np.array_equal(pixels(tmp_path / "b" / "image.png"), made_at_v2)  # the test can tell them apart

    again = cli("run", tmp_path / "a" / "image.png", "--out", tmp_path / "c", "-q", cache=hub_cache)
    assert again.returncode == 0, again.stderr
    assert np.array_equal(pixels(tmp_path / "c" / "image.png"), made_at_v2)


def test_a_hub_graph_used_as_a_node_is_pinned_in_the_png_of_a_local_graph(hub_cache, tmp_path):
    local = tmp_path / "local.yaml"
    local.write_text(f"nodes:\n  s: {{type: 'hf://{REPO}/parts/scale.yaml', x: 0.004}}\n"
                     "  image: {type: SolidImage, value: $s.y, width: 8, height: 8}\noutputs: {image: $image.image}\n")
    first = cli("run", local, "--out", tmp_path / "a", "-q", cache=hub_cache)
    assert first.returncode == 0, first.stderr
    with PIL.Image.open(tmp_path / "a" / "image.png") as image:
        recipe = json.loads(image.text["nodegraph"])
    assert recipe["hub_pins"] == {f"hf://{REPO}/parts/scale.yaml": COMMIT_V2}
    assert list(recipe["graph"]["files"]) == ["local.yaml"]  # the Hub file is recorded by address, not copied

    move_ref(hub_cache, REPO, "main", COMMIT_V1)
    moved = cli("run", local, "--out", tmp_path / "b", "-q", cache=hub_cache)
    assert not np.array_equal(pixels(tmp_path / "b" / "image.png"), pixels(tmp_path / "a" / "image.png"))
    again = cli("run", tmp_path / "a" / "image.png", "--out", tmp_path / "c", "-q", cache=hub_cache)
    assert again.returncode == 0 and moved.returncode == 0, again.stderr + moved.stderr
    assert np.array_equal(pixels(tmp_path / "c" / "image.png"), pixels(tmp_path / "a" / "image.png"))
