"""A repeat body is validated once, statically, with the same error quality as the outer graph."""

GOOD_BODY = """
nodes:
  ts: {type: Range, stop: 3}
  rep:
    type: repeat
    over: $ts.values
    state: {x: 1.0}
    nodes:
      m: {type: Multiply, a: $state.x, b: 0.5}
    next: {x: $m.value}
outputs: {x: $rep.x}
"""


def test_a_well_formed_repeat_validates_cleanly(issues):
    assert issues(GOOD_BODY) == []


def test_errors_inside_a_body_point_at_the_body_line(issues, one):
    error = one(issues(GOOD_BODY.replace("type: Multiply", "type: Multiplyy")), "unknown_node_type")
    assert (error.path, error.line) == ("nodes.rep.nodes.m.type", 8)
    error = one(issues(GOOD_BODY.replace("b: 0.5", "b: $nope.value")), "unknown_node")
    assert (error.path, error.line) == ("nodes.rep.nodes.m.b", 8)


def test_over_must_be_a_sequence(issues, one):
    error = one(issues(GOOD_BODY.replace("over: $ts.values", "over: 3")), "invalid_sequence")
    assert (error.path, error.line) == ("nodes.rep.over", 5)
    error = one(issues(GOOD_BODY.replace("ts: {type: Range, stop: 3}", "ts: {type: Int, value: 3}")
                       .replace("$ts.values", "$ts.value")), "invalid_sequence")
    assert "int" in error.message


def test_next_must_name_declared_state_and_every_state_needs_next(issues, one):
    found = issues(GOOD_BODY.replace("next: {x: $m.value}", "next: {y: $m.value}"))
    assert one(found, "unknown_state").path == "nodes.rep.next.y"
    missing = one(found, "missing_input")
    assert missing.path == "nodes.rep.state.x" and missing.line == 6


def test_next_value_must_fit_the_state_type(issues, one):
    error = one(issues(GOOD_BODY.replace("state: {x: 1.0}", "state: {x: 1}")), "type_mismatch")
    assert error.path == "nodes.rep.next.x" and "write e.g. 1.0 instead of 1" in error.hint


def test_state_and_loop_references_only_inside_a_body(issues, one):
    error = one(issues("nodes:\n  a: {type: Add, a: $loop.index, b: 1}\noutputs: {x: $a.value}\n"), "bad_reference")
    assert error.line == 2 and "inside a repeat body" in error.message


def test_unknown_state_reference(issues, one):
    error = one(issues(GOOD_BODY.replace("a: $state.x", "a: $state.z")), "unknown_state")
    assert error.path == "nodes.rep.nodes.m.a"


def test_body_nodes_are_not_visible_outside(issues, one):
    error = one(issues(GOOD_BODY.replace("outputs: {x: $rep.x}", "outputs: {x: $m.value}")), "dangling_output")
    assert "repeat body" in error.hint and "collect" in error.hint


def test_body_ids_share_one_namespace_with_the_outer_graph(issues, one):
    error = one(issues(GOOD_BODY.replace("      m: {type", "      ts: {type").replace("$m.value", "$ts.value")),
                "duplicate_node_id")
    assert error.path == "nodes.rep.nodes.ts" and "nodes.ts" in error.message


def test_collect_and_state_names_must_differ(issues, one):
    error = one(issues(GOOD_BODY.replace("next: {x: $m.value}", "next: {x: $m.value}\n    collect: {x: $m.value}")),
                "duplicate_output")
    assert error.path == "nodes.rep.collect.x"


def test_a_body_node_feeding_neither_next_nor_collect_is_a_warning(issues, one):
    found = issues(GOOD_BODY.replace("    next:", "      idle: {type: Int, value: 1}\n    next:"))
    warning = one(found, "unused_node")
    assert warning.path == "nodes.rep.nodes.idle" and "body of repeat `rep`" in warning.message


def test_cycle_through_a_body_reading_an_outer_node(issues, one):
    error = one(issues("""
        nodes:
          ts: {type: Range, stop: 3}
          after: {type: Add, a: $rep.x, b: 1}
          rep:
            type: repeat
            over: $ts.values
            state: {x: 1.0}
            nodes:
              m: {type: Multiply, a: $state.x, b: $after.value}
            next: {x: $m.value}
        outputs: {x: $after.value}
        """), "cycle")
    assert "`after`" in error.message and "`rep`" in error.message


def test_nested_repeat_validates_and_sees_every_enclosing_scope(issues):
    assert issues("""
        inputs:
          k: {type: float, default: 2.0}
        nodes:
          outer_ts: {type: Range, stop: 2}
          outer:
            type: repeat
            over: $outer_ts.values
            state: {total: 0.0}
            nodes:
              inner_ts: {type: Range, stop: 3}
              inner:
                type: repeat
                over: $inner_ts.values
                state: {acc: $state.total}
                nodes:
                  add: {type: Add, a: $state.acc, b: $inputs.k}
                next: {acc: $add.value}
            next: {total: $inner.acc}
        outputs: {total: $outer.total}
        """) == []
