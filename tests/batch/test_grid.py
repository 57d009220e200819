"""Grid expansion (product, zip, ranges, @files, repeat) and checking every item before anything runs."""

from __future__ import annotations

import pytest
from batch_helpers import DIGITS, SD_GRAPH

from nodegraph.batch import GridError, parse_grid_option, plan_items, run_batch
from nodegraph.batch.grid import Axis
from nodegraph.spec.errors import ValidationFailed


def text_value(name, raw):
    """Stands in for the typed conversion: seeds are ints, everything else text."""
    return int(raw) if name == "seed" else raw


def test_product_varies_the_first_axis_slowest(sd_graph):
    axes = [Axis("prompt", ("a 7", "a 4")), Axis("seed", (0, 1, 2))]
    items = plan_items(sd_graph, axes, DIGITS)
    assert [(i.inputs["prompt"], i.inputs["seed"]) for i in items] == [
        ("a 7", 0), ("a 7", 1), ("a 7", 2), ("a 4", 0), ("a 4", 1), ("a 4", 2)]
    assert [i.index for i in items] == list(range(6))
    # Every item carries every input: fixed values, defaults, and its grid values.
    assert all(i.inputs["model"] == "builtin:digits" and i.inputs["guidance_scale"] == 7.5 for i in items)


def test_zip_pairs_values_in_order_and_needs_equal_lengths(sd_graph):
    items = plan_items(sd_graph, [Axis("prompt", ("a 7", "a 4")), Axis("seed", (5, 9))], DIGITS, zip_axes=True)
    assert [(i.inputs["prompt"], i.inputs["seed"]) for i in items] == [("a 7", 5), ("a 4", 9)]
    with pytest.raises(ValidationFailed) as failed:
        plan_items(sd_graph, [Axis("prompt", ("a 7", "a 4")), Axis("seed", (5, 9, 11))], DIGITS, zip_axes=True)
    assert failed.value.codes == ["zip_length_mismatch"]
    assert "`prompt` 2, `seed` 3" in str(failed.value)


def test_ranges_include_both_ends_and_commas_can_be_escaped():
    assert parse_grid_option("seed=3..6", text_value).values == (3, 4, 5, 6)
    assert parse_grid_option("seed=-1..-1", text_value).values == (-1,)
    assert parse_grid_option(r"prompt=a 7,cats\, dogs,x", text_value).values == ("a 7", "cats, dogs", "x")
    with pytest.raises(GridError, match="empty"):
        parse_grid_option("seed=9..3", text_value)
    with pytest.raises(GridError, match="1,000,000"):  # refused before a single value is made
        parse_grid_option("seed=0..99999999999", text_value)
    with pytest.raises(GridError, match="not NAME=VALUES"):
        parse_grid_option("seed", text_value)


def test_a_product_too_big_to_list_is_refused_before_it_is_made(sd_graph):
    with pytest.raises(ValidationFailed) as failed:
        plan_items(sd_graph, [Axis("seed", tuple(range(1001))), Axis("prompt", tuple(map(str, range(1001))))], DIGITS)
    assert failed.value.codes == ["too_many_items"] and "1,002,001 items" in str(failed.value)


def test_file_axis_has_one_value_a_line_and_locates_bad_lines(sd_graph, tmp_path):
    (tmp_path / "seeds.txt").write_text("4\n\n-3\nseven\r\n12\n")
    axis = parse_grid_option("seed=@seeds.txt", lambda n, raw: int(raw), cwd=str(tmp_path))
    assert len(axis.values) == 4  # the blank line is not a value
    with pytest.raises(ValidationFailed) as failed:
        plan_items(sd_graph, [axis], DIGITS)
    report = str(failed.value)
    assert "seeds.txt:3:1: seed: -3: -3 is below the minimum 0  [out_of_range]" in report
    assert "seeds.txt:4:1: seed: 'seven': invalid literal" in report
    assert failed.value.codes == ["out_of_range", "invalid_value"]
    with pytest.raises(GridError, match="no such file"):
        parse_grid_option("seed=@missing.txt", text_value, cwd=str(tmp_path))


def test_repeat_advances_the_seed_and_cannot_be_mixed_with_a_seed_axis(sd_graph):
    items = plan_items(sd_graph, [Axis("prompt", ("a 7", "a 4"))], {**DIGITS, "seed": 10}, repeat=3)
    assert [(i.inputs["prompt"], i.inputs["seed"]) for i in items] == [
        ("a 7", 10), ("a 7", 11), ("a 7", 12), ("a 4", 10), ("a 4", 11), ("a 4", 12)]
    with pytest.raises(ValidationFailed) as failed:
        plan_items(sd_graph, [Axis("seed", (1, 2))], DIGITS, repeat=2)
    assert failed.value.codes == ["duplicate_axis"]


def test_every_bad_value_of_every_item_is_reported_before_anything_runs(sd_graph, tmp_path):
    grid = {"seed": list(range(50)) + [-1], "scheduler": ["ddim", "eulr"], "stepz": [1]}
    with pytest.raises(ValidationFailed) as failed:
        run_batch(sd_graph, grid, sets={**DIGITS, "guidance_scale": 1000.0}, out=tmp_path / "out")
    report = str(failed.value)
    assert sorted(failed.value.codes) == ["not_in_choices", "out_of_range", "out_of_range", "unknown_graph_input"]
    assert "grid `seed` value -1" in report and "'eulr' is not one of the allowed values" in report
    assert "did you mean `steps`?" in report and "1000.0 is above the maximum 100" in report
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_required_inputs_must_come_from_set_or_grid(graph_without_default):
    with pytest.raises(ValidationFailed) as failed:
        plan_items(graph_without_default, [Axis("x", (1, 2))])
    assert failed.value.codes == ["missing_graph_input"] and "`--set name=...`" in str(failed.value)


@pytest.fixture
def graph_without_default():
    from nodegraph import loads_graph

    return loads_graph("nodegraph: 1\ninputs:\n  name: {type: str}\n  x: {type: int, default: 0}\n"
                       "nodes: {}\noutputs: {}\n")


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_command_line_grid_errors_exit_2_without_traceback_or_output(tmp_path, monkeypatch, capsys):
    from nodegraph.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.txt").write_text("a 7\n")

    def batch(*args):
        code = main(["batch", str(SD_GRAPH), "--set", "model=builtin:digits", *args, "--out", "out", "-q"])
        return code, capsys.readouterr().err

    code, err = batch("--grid", "prompt=@prompts.txt", "--grid", "seed=0..2,x", "--grid", "steps=1,two")
    assert code == 2, err
    assert "`--grid seed=0..2`: expected int" in err and "`--grid seed=x`: expected int" in err
    assert "`--grid steps=two`: expected int" in err and "3 errors in" in err
    for args, message in [(["--grid", "seed=@nope.txt"], "no such file"), (["--grid", "seed"], "NAME=VALUES"),
                          (["--workers", "2"], "add `--ray`"), (["--ray", "--retries", "-1"], "0 or more"),
                          (["--ray", f"127.0.0.1:{closed_port()}"], "cannot reach the Ray cluster at 127.0.0.1:")]:
        code, err = batch(*args)
        assert code == 2 and message in err, err
        assert "Traceback" not in err and not (tmp_path / "out").exists()
