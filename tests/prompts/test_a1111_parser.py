"""A1111 prompt syntax → weighted fragments. Expected values are A1111's own published examples
(`parse_prompt_attention`'s docstring) and weights worked out by hand from its rules (×1.1 per `(`, ÷1.1 per `[`,
`(x:w)` multiplies by w, nesting multiplies)."""

from __future__ import annotations

import pytest

from nodegraph.prompts import PromptError, parse

R = 1.1

TABLE = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", R), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", R)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", R)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * R * R), (" ", R), ("on", 1.0), (" a ", R), ("hill", 0.5 * R), (", sun, ", R),
      ("sky", R ** 4), (".", R)]),
    ("[faded]", [("faded", 1 / R)]),
    ("[[very faded]]", [("very faded", 1 / R / R)]),
    ("((nested (deep)))", [("nested ", R * R), ("deep", R ** 3)]),
    ("(red hat:1.3)", [("red hat", 1.3)]),
    ("(red hat : 0.7 )", [("red hat ", 0.7)]),
    ("((red:1.5))", [("red", 1.5 * R)]),
    ("(a:1.2) (b:1.2)", [("a", 1.2), (" ", 1.0), ("b", 1.2)]),
    ("time: noon", [("time: noon", 1.0)]),
    ("smile :)", [("smile :)", 1.0)]),
    ("a \\\\ b", [("a \\ b", 1.0)]),
    ("(\\(x\\))", [("(x)", R)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize("prompt, expected", TABLE)
def test_parser_table(prompt, expected):
    got = [(f.text, f.weight) for f in parse(prompt).fragments]
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-12)


def test_break_splits_into_markers_and_needs_upper_case_word():
    fragments = [f for f in parse("a cat BREAK (a dog) BREAK").fragments if f.text]  # empty texts add no tokens
    assert [(f.text, f.is_break) for f in fragments] == [
        ("a cat", False), ("BREAK", True), ("a dog", False), ("BREAK", True)]
    assert [f.weight for f in fragments if f.text == "a dog"] == [R]
    assert [(f.text, f.is_break) for f in parse("breakfast, Break").fragments] == [("breakfast, Break", False)]


def test_unbalanced_brackets_warn_with_their_column_and_still_weight_the_rest():
    parsed = parse("a photo (of a [cat")
    assert [(f.text, round(f.weight, 6)) for f in parsed.fragments] == [
        ("a photo ", 1.0), ("of a ", R), ("cat", round(R * (1 / R), 6))]
    assert len(parsed.warnings) == 2
    assert parsed.warnings[0].startswith("column 9: `(` is never closed")
    assert parsed.warnings[1].startswith("column 15: `[` is never closed")


def test_a_stray_closing_bracket_is_text_with_a_warning():
    parsed = parse("a cat) sits")
    assert [(f.text, f.weight) for f in parsed.fragments] == [("a cat) sits", 1.0)]
    assert parsed.warnings == ["column 6: `)` closes no bracket; it is kept as text (write `\\)` for a literal "
                               "bracket)"]


def test_balanced_prompt_has_no_warnings():
    assert parse("(a:1.2) [b] ((c)) \\(d\\)").warnings == []


def test_lora_tags_are_removed_with_a_warning_and_columns_still_point_into_the_prompt():
    parsed = parse("a cat <lora:pixel_art:0.7>, sharp")
    assert " ".join("".join(f.text for f in parsed.fragments).split()) == "a cat , sharp"
    assert "<lora:pixel_art:0.7>" in parsed.warnings[0] and "`lora` input" in parsed.warnings[0]
    assert parse("<lora:x:1> (cat").warnings[1].startswith("column 12: `(` is never closed")


@pytest.mark.parametrize("prompt, says", [
    ("(cat:1000)", "column 5: weight 1000 is outside the sane range [-10, 10]"),
    ("(cat:1.2.3)", "column 5: `:1.2.3)` is not a weight"),
    ("(" * 30 + "cat" + ")" * 30, "ends up weighted 17.4 (nested brackets multiply)"),
])
def test_insane_weights_are_refused_with_where_and_what_to_do(prompt, says):
    with pytest.raises(PromptError, match=None) as info:
        parse(prompt)
    assert says in str(info.value)
