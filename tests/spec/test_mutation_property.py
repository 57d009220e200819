"""Property: a shipped graph mutated at random is either still valid or refused with located errors.

`nodegraph validate` must never show a traceback or an internal error, whatever the file holds.
"""

import contextlib
import io
import pathlib
import re
import shutil
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodegraph.cli import main

GRAPHS = pathlib.Path(__file__).resolve().parents[2] / "graphs"
SHIPPED = sorted(p.name for p in GRAPHS.glob("*.yaml"))
REFERENCE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")
LOCATED = re.compile(r"^(?P<file>[^:\s]+\.ya?ml):\d+:\d+: ")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A copy of graphs/, so mutated files sit next to the files they include."""
    target = tmp_path_factory.mktemp("graphs")
    for name in SHIPPED:
        shutil.copy(GRAPHS / name, target / name)
    return target


def _garble(draw, text: str) -> str:
    refs = list(REFERENCE.finditer(text))
    if not refs:
        return text
    ref = refs[draw(st.integers(0, len(refs) - 1))]
    new = draw(st.sampled_from(["$", "$$", "$x", "$nodes.x", "$inputs.", "$state.y", "$loop.item", "$loop.nope",
                                ref.group()[:-1], ref.group() + "x", ref.group().replace(".", ".."), "$inputs.model",
                                "$0a.b", "[$a.b]", "{x: $a.b}"]))
    return text[:ref.start()] + new + text[ref.end():]


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(SHIPPED))
    lines = (GRAPHS / name).read_text().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "retype", "garble", "indent", "truncate", "swap"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "retype":
            value = draw(st.sampled_from(["Nope", "repeat", "./nope.yaml", "../graphs/ddpm.yaml", "/etc/passwd",
                                          "hf://", "VAEDecode@9", "[1, 2]", "{}", "''", "1", "null", "!!str x"]))
            lines[i] = re.sub(r"(type:\s*)[^,}\n]+", lambda m: m.group(1) + value, lines[i], count=1) \
                if "type:" in lines[i] else re.sub(r":\s.*$", f": {value}", lines[i])
        elif kind == "garble":
            text = _garble(draw, "\n".join(lines))
            lines = text.splitlines() or [""]
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(0, 9)) + lines[i].lstrip()
        elif kind == "truncate":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        if not lines:
            lines = [""]
    return name, "\n".join(lines) + "\n"


def validate(path: pathlib.Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, err.getvalue()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated())
def test_validate_of_a_mutated_graph_exits_cleanly_with_located_errors(folder, case):
    name, text = case
    path = folder / f"mutated_{name}"
    path.write_text(text)
    started = time.perf_counter()
    code, err = validate(path)
    seconds = time.perf_counter() - started
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 2), err
    if code == 2:
        problems = [line for line in err.splitlines()
                    if line and not line.startswith("  hint:") and not re.match(r"^\d+ errors? ", line)
                    and not line.startswith("warning: ")]
        assert problems, err
        for line in problems:
            assert LOCATED.match(line), f"not located: {line!r}\n{err}"
    assert seconds < 5, f"validate took {seconds:.2f} s"  # a guard against runaway work, not a speed goal
