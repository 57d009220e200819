import pytest

from nodegraph.spec.yaml_io import YamlProblem, dump_yaml, load_yaml


def test_marks_locate_every_value_and_key_one_based():
    data, marks, errors = load_yaml("nodes:\n  a:\n    type: Int\n    value: [1, 2]\n", "f.yaml")
    assert data == {"nodes": {"a": {"type": "Int", "value": [1, 2]}}}
    assert errors == []
    assert marks.locate(("nodes", "a", "type")) == (3, 11)
    assert marks.locate(("nodes", "a"), at_key=True) == (2, 3)
    assert marks.locate(("nodes", "a", "value", 1)) == (4, 16)


def test_a_missing_path_is_located_at_the_closest_enclosing_key():
    _, marks, _ = load_yaml("nodes:\n  a:\n    type: Int\n", "f.yaml")
    assert marks.locate(("nodes", "a", "value")) == (2, 3)


def test_duplicate_keys_are_reported_instead_of_silently_keeping_the_last():
    text = "nodes:\n  a:\n    type: Int\n    value: 1\n    value: 2\n"
    data, _, errors = load_yaml(text, "f.yaml")
    assert [(e.code, e.path, e.line, e.col) for e in errors] == [("duplicate_key", "nodes.a.value", 5, 5)]
    assert "first on line 4" in errors[0].message
    assert data["nodes"]["a"]["value"] == 1


def test_duplicate_node_ids_get_their_own_code_also_inside_repeat_bodies():
    text = "nodes:\n  a: {type: Int}\n  r:\n    type: repeat\n    nodes:\n      b: {}\n      b: {}\n  a: {type: Int}\n"
    _, _, errors = load_yaml(text, "f.yaml")
    assert [(e.code, e.path, e.line) for e in errors] == [("duplicate_node_id", "nodes.r.nodes.b", 7),
                                                          ("duplicate_node_id", "nodes.a", 8)]


def test_syntax_error_carries_file_line_and_column():
    with pytest.raises(YamlProblem) as caught:
        load_yaml("nodes:\n  a: {type: Int, value: 1\n", "bad.yaml")
    (error,) = caught.value.errors
    assert error.code == "yaml_syntax" and error.file == "bad.yaml" and error.line == 3


def test_merge_keys_and_aliases_are_resolved_like_safe_load():
    data, _, _ = load_yaml("base: &b {x: 1}\nnode:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert data["node"] == {"x": 1, "y": 2}


def test_python_tags_are_refused_so_loading_never_runs_code():
    with pytest.raises(YamlProblem):
        load_yaml("x: !!python/object/apply:os.system ['true']\n", "f.yaml")


def test_an_empty_document_is_none():
    assert load_yaml("", "f.yaml")[0] is None


def test_dump_keeps_key_order():
    assert dump_yaml({"b": 1, "a": 2}) == "b: 1\na: 2\n"
