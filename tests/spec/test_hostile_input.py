"""Graphs that cannot hurt you: hostile documents are refused quickly, with located errors, for every loader."""

import time
import tracemalloc

import pytest

from nodegraph import load_graph, loads_graph
from nodegraph.cli import main
from nodegraph.spec.errors import ValidationFailed
from nodegraph.spec.limits import Limits

VALID = "nodes:\n  one: {type: Int, value: 1}\noutputs: {x: $one.value}\n"


def refused(path_or_text, **kwargs):
    """The errors loading a graph raises (a file path, or YAML text through loads_graph)."""
    with pytest.raises(ValidationFailed) as caught:
        if isinstance(path_or_text, str):
            loads_graph(path_or_text, **kwargs)
        else:
            load_graph(path_or_text, **kwargs)
    return caught.value.errors


def billion_laughs(levels=9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    return text


def test_an_alias_bomb_is_refused_without_expanding_it(write):
    path = write("bomb.yaml", billion_laughs())  # 9**9 = 387 million strings once expanded
    tracemalloc.start()
    try:
        (error,) = refused(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.code == "too_many_values" and error.file.endswith("bomb.yaml") and error.line is not None
    assert "alias" in error.message
    assert peak < 200 * 2**20, f"refusing the bomb took {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("shape", ["flow", "block"])
def test_ten_thousand_levels_of_nesting_are_refused_at_the_limit(shape):
    text = ("x: " + "[" * 10_000 + "]" * 10_000 if shape == "flow"
            else "x:\n  " + "- " * 10_000 + "1\n")  # `- - - 1`: block sequences nested on one line
    (error,) = refused(text)
    assert error.code == "too_deep" and "64 levels" in error.message
    assert error.line is not None and error.line <= 66


def test_aliases_cannot_build_nesting_deeper_than_the_limit():
    text = "a: &a " + "[" * 40 + "]" * 40 + "\nb: &b " + "[" * 30 + "*a" + "]" * 30 + "\n"
    assert [e.code for e in refused(text)] == ["too_deep"]


def test_a_huge_graph_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(20 * 2**30)  # a sparse 20 GiB file: reading it would take minutes and all the memory
    started = time.perf_counter()
    (error,) = refused(path)
    assert error.code == "document_too_large" and "over the limit of 262,144" in error.message
    assert time.perf_counter() - started < 5  # a guard against reading it, not a speed goal


def test_a_huge_document_given_as_text_is_refused():
    (error,) = refused(VALID + "description: " + "x" * 300_000 + "\n")
    assert error.code == "document_too_large" and error.file == "<string>"


def test_node_count_is_limited_and_reported_once(write):
    text = "nodes:\n" + "".join(f"  n{i}: {{type: Int, value: {i}}}\n" for i in range(12)) + "outputs: {x: $n0.value}\n"
    errors = refused(write("many.yaml", text), limits=Limits(max_nodes=10))
    assert [(e.code, e.path, e.line) for e in errors] == [("too_many_nodes", "nodes.n10", 12)]


def test_the_default_node_limit_is_two_thousand():
    text = "nodes:\n" + "".join(f"  n{i}: {{type: Int, value: 1}}\n" for i in range(2_001))
    assert [e.code for e in refused(text + "outputs: {x: $n0.value}\n")] == ["too_many_nodes"]


def test_repeats_nest_at_most_eight_deep():
    def nested(depth, indent):
        pad = " " * indent
        if depth == 0:
            return f"{pad}leaf: {{type: Int, value: 1}}\n"
        return (f"{pad}r{depth}:\n{pad}  type: repeat\n{pad}  over: [1]\n{pad}  nodes:\n"
                + nested(depth - 1, indent + 4))

    assert loads_graph("nodes:\n" + nested(8, 2) + "outputs: {}\n") is not None
    (error,) = refused("nodes:\n" + nested(9, 2) + "outputs: {}\n")
    assert error.code == "repeat_too_deep" and error.path.endswith(".r1") and error.line is not None


def test_include_depth_is_limited(write):
    for i in range(20):
        write(f"g{i}.yaml", f"nodes:\n  inner: {{type: ./g{i + 1}.yaml}}\noutputs: {{x: $inner.x}}\n")
    write("g20.yaml", VALID)
    codes = [e.code for e in refused(write("main.yaml", "nodes:\n  g: {type: ./g0.yaml}\noutputs: {x: $g.x}\n"))]
    assert codes == ["include_too_deep"]
    assert load_graph(write("short.yaml", "nodes:\n  g: {type: ./g10.yaml}\noutputs: {x: $g.x}\n")).run() == {"x": 1}


def test_includes_used_many_times_at_each_level_cannot_multiply_into_a_huge_run(write):
    write("c.yaml", "nodes:\n" + "".join(f"  n{i}: {{type: Int, value: 1}}\n" for i in range(50))
          + "outputs: {x: $n0.value}\n")
    files = {}
    for name, inner in (("b.yaml", "c.yaml"), ("a.yaml", "b.yaml")):  # each uses the next one 50 times
        files[name] = write(name, "nodes:\n" + "".join(f"  u{i}: {{type: ./{inner}}}\n" for i in range(50))
                            + "outputs: {x: $u0.x}\n")
    (error,) = refused(files["a.yaml"])
    assert error.code == "graph_too_large" and "127,550 nodes" in error.message  # 50 + 50 * (50 + 50 * 50)
    assert (error.path, error.line) == ("nodes.u0", 2)
    assert load_graph(files["b.yaml"]).run() == {"x": 1}  # 2,550 nodes: fine


@pytest.mark.parametrize("include", ["../outside.yaml", "sub/../../outside.yaml", "/etc/passwd",
                                     "../does_not_exist.yaml", "link/outside.yaml"])
def test_includes_cannot_leave_the_graph_folder(tmp_path, include):
    (tmp_path / "outside.yaml").write_text(VALID)
    home = tmp_path / "home"
    home.mkdir()
    (home / "link").symlink_to(tmp_path, target_is_directory=True)  # a symlink is followed, then checked
    path = home / "main.yaml"
    path.write_text(f"nodes:\n  inner: {{type: '{include}'}}\noutputs: {{x: $inner.x}}\n")
    (error,) = refused(path)
    assert (error.code, error.path, error.line) == ("include_outside", "nodes.inner.type", 2)
    assert "--allow-includes-outside" in error.hint
    # the message never says whether the outside file exists: nothing outside is looked at
    assert "not found" not in error.message


def test_allowing_includes_outside_is_explicit(tmp_path, capsys):
    (tmp_path / "outside.yaml").write_text(VALID)
    (tmp_path / "home").mkdir()
    path = tmp_path / "home" / "main.yaml"
    path.write_text("nodes:\n  inner: {type: ../outside.yaml}\noutputs: {x: $inner.x}\n")
    assert load_graph(path, allow_includes_outside=True).run() == {"x": 1}
    assert main(["validate", str(path)]) == 2
    assert "include_outside" in capsys.readouterr().err
    assert main(["validate", "--allow-includes-outside", str(path)]) == 0


def test_nested_includes_may_use_the_whole_tree_of_the_graph_being_loaded(write):
    write("common.yaml", VALID)
    write("parts/step.yaml", "nodes:\n  c: {type: ../common.yaml}\noutputs: {x: $c.x}\n")
    assert load_graph(write("main.yaml", "nodes:\n  s: {type: ./parts/step.yaml}\noutputs: {x: $s.x}\n")).run() \
        == {"x": 1}
    # loaded on its own, parts/step.yaml's tree is parts/: the same include now leaves it
    assert [e.code for e in refused(write("parts/step.yaml", "nodes:\n  c: {type: ../common.yaml}\n"
                                          "outputs: {x: $c.x}\n"))] == ["include_outside"]


def test_text_loading_keeps_includes_inside_its_base_folder(tmp_path):
    (tmp_path / "outside.yaml").write_text(VALID)
    (tmp_path / "base").mkdir()
    text = "nodes:\n  inner: {type: ../outside.yaml}\noutputs: {x: $inner.x}\n"
    assert [e.code for e in refused(text, base_dir=tmp_path / "base")] == ["include_outside"]


def test_a_syntax_error_names_where_the_unclosed_construct_began(write):
    path = write("bad.yaml", "nodes:\n  a: {type: Int, value: 1\n  b: {type: Int, value: 2}\noutputs: {}\n")
    (error,) = refused(path)
    assert error.code == "yaml_syntax" and (error.line, error.col) == (3, 4)  # where the parser gave up
    assert "flow mapping that began at line 2, column 6" in error.message
    (error,) = refused(write("quote.yaml", "description: 'never closed\nnodes: {}\n"))
    assert "quoted scalar that began at line 1, column 14" in error.message


def test_the_cli_refuses_hostile_files_with_exit_2_and_no_traceback(write, capsys):
    for name, text in [("bomb.yaml", billion_laughs()), ("deep.yaml", "x: " + "[" * 10_000)]:
        assert main(["validate", str(write(name, text))]) == 2
        err = capsys.readouterr().err
        assert f"{name}:1:" in err and "Traceback" not in err and "internal error" not in err
