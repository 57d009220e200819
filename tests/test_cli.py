"""The `nodegraph` command, run as a real subprocess where exit codes and signals matter."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nodegraph.cli import main

EULER = """
inputs:
  steps: {type: int, default: 3, min: 0}
  h: {type: float, default: 0.5}
  sizes: {type: "list[int]", default: []}
nodes:
  ts: {type: Range, stop: $inputs.steps}
  n: {type: ListLength, values: $inputs.sizes}
  euler:
    type: repeat
    over: $ts.values
    state: {x: 1.0}
    nodes:
      hx: {type: Multiply, a: $state.x, b: $inputs.h}
      step: {type: Subtract, a: $state.x, b: $hx.value}
    next: {x: $step.value}
outputs: {x: $euler.x, n: $n.length}
"""

SLOW = """
inputs:
  seconds: {type: float, default: 30}
nodes:
  wait: {type: Sleep, seconds: $inputs.seconds, value: 0.5}
  image: {type: SolidImage, value: $wait.value, width: 4, height: 4}
outputs: {image: $image.image}
"""


def cli(*args, cwd=None, timeout=60):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nodegraph.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_run_prints_non_file_outputs_as_json(tmp_path):
    result = cli("run", write(tmp_path, "e.yaml", EULER), "--set", "steps=2", "--set", "sizes=[1, 2, 3]", "-q")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"x": 0.25, "n": 3}


def test_image_outputs_are_written_as_png_without_overwriting(tmp_path):
    graph = write(tmp_path, "img.yaml", SLOW)
    out = tmp_path / "out"
    out.mkdir()
    (out / "image.png").write_bytes(b"an earlier result")
    result = cli("run", graph, "--set", "seconds=0", "--out", out, "--device", "cpu", "--dtype", "fp32")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"image": [str(out / "image-2.png")]}
    assert (out / "image.png").read_bytes() == b"an earlier result"
    assert (out / "image-2.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("text, code, line", [
    ("nodes:\n  a: {type: Int, value: 1\n", "yaml_syntax", 3),
    ("nodes:\n  a: {type: Intt, value: 1}\noutputs: {x: $a.value}\n", "unknown_node_type", 2),
])
def test_bad_graphs_exit_2_with_file_line_col_and_no_traceback(tmp_path, text, code, line):
    path = write(tmp_path, "bad.yaml", text)
    for command in ("run", "validate", "show"):
        result = cli(command, path)
        assert result.returncode == 2
        assert f"{path}:{line}:" in result.stderr and f"[{code}]" in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_set_values_are_validation_errors(tmp_path):
    path = write(tmp_path, "e.yaml", EULER)
    result = cli("validate", path, "--set", "steps=-1", "--set", "h=fast", "--set", "stpes=2", "--set", "oops")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for code in ("out_of_range", "invalid_value", "unknown_graph_input", "bad_set"):
        assert f"[{code}]" in result.stderr
    assert "did you mean `steps`?" in result.stderr and result.stderr.strip().endswith(f"4 errors in {path}")


def test_a_missing_file_exits_2(tmp_path):
    result = cli("run", tmp_path / "nope.yaml")
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


def test_a_failing_node_exits_1_naming_the_node(tmp_path):
    path = write(tmp_path, "d.yaml", "nodes:\n  d: {type: Divide, a: 1, b: 0}\noutputs: {x: $d.value}\n")
    result = cli("run", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "node `d` (Divide@1) failed: ZeroDivisionError" in result.stderr


def test_ctrl_c_stops_cleanly_with_exit_130_and_no_output_file(tmp_path):
    graph, out, log = write(tmp_path, "slow.yaml", SLOW), tmp_path / "out", tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        # a 600 s sleep: stopping within a minute of the signal is stopping inside it, on however loaded a machine
        process = subprocess.Popen([sys.executable, "-m", "nodegraph.cli", "run", str(graph), "--out", str(out),
                                    "--set", "seconds=600", "-v"], stdout=subprocess.PIPE, stderr=stderr, text=True)
        deadline = time.monotonic() + 120
        while "started wait" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
    assert process.returncode == 130
    assert time.monotonic() - started < 60  # stopped inside the 600 s sleep, not after it
    text = log.read_text()
    assert "cancelled" in text and "Traceback" not in text
    assert not out.exists() or list(out.iterdir()) == []


def test_validate_accepts_a_good_graph(tmp_path, capsys):
    path = write(tmp_path, "e.yaml", EULER)
    assert main(["validate", str(path), "--set", "steps=4"]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_shows_warnings_but_succeeds(tmp_path, capsys):
    path = write(tmp_path, "w.yaml", "nodes:\n  a: {type: Int, value: 1}\n  b: {type: Int, value: 2}\n"
                                     "outputs: {x: $a.value}\n")
    assert main(["validate", str(path)]) == 0
    assert "[unused_node]" in capsys.readouterr().err


def test_nodes_lists_every_type_with_ports_parameters_and_help(capsys):
    assert main(["nodes"]) == 0
    text = capsys.readouterr().out
    assert "Sleep@1\n  Waits `seconds`" in text and "seconds: float  (>= 0)" in text and "\nrepeat\n" in text
    assert main(["nodes", "Range"]) == 0
    assert capsys.readouterr().out.startswith("Range@1\n")
    assert main(["nodes", "Nope"]) == 2


def test_show_prints_mermaid_with_repeat_bodies_as_subgraphs(tmp_path, capsys):
    assert main(["show", str(write(tmp_path, "e.yaml", EULER))]) == 0
    text = capsys.readouterr().out
    assert text.startswith("flowchart LR\n") and 'subgraph n_euler ["euler: repeat"]' in text
    assert "n_hx -->|b| n_step" in text and "n_step -.->|next| n_euler__state_x" in text


def test_an_unknown_device_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(write(tmp_path, "e.yaml", EULER)), "--device", "toaster"]) == 2
    assert "not a torch device" in capsys.readouterr().err


def test_a_list_input_takes_yaml_and_a_component_input_is_refused(tmp_path, capsys):
    path = write(tmp_path, "u.yaml", "inputs:\n  u: {type: UNet}\n  s: {type: 'list[int]', default: []}\n"
                                     "nodes: {}\noutputs: {}\n")
    assert main(["validate", str(path), "--set", "u=x", "--set", "s=[1, oops]"]) == 2
    err = capsys.readouterr().err
    assert "cannot be given on the command line" in err and "[invalid_value]" in err and "2 errors" in err


def test_a_set_value_is_checked_against_the_node_inputs_it_feeds(tmp_path, capsys):
    path = write(tmp_path, "s.yaml", "inputs:\n  wait: {type: float, default: 0}\n"
                                     "nodes:\n  s: {type: Sleep, seconds: $inputs.wait}\noutputs: {x: $s.value}\n")
    assert main(["run", str(path), "--set", "wait=-1"]) == 2
    err = capsys.readouterr().err
    assert "`--set wait=-1.0` feeds `nodes.s.seconds` of `s` (Sleep@1)" in err and "[out_of_range]" in err
