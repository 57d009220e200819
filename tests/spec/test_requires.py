"""`requires:`: missing node packages and too-old nodegraph are reported first, with the pip command."""

from nodegraph import __version__, load_graph
from nodegraph.cli import main

USES_PLUGIN = """
requires:
  - nodegraph>=0.1
  - nodegraph-blur-not-installed>=1.2,<2
nodes:
  blur: {type: blur.Blur, radius: 2}
  other: {type: blur.Sharpen}
outputs: {x: $blur.image}
"""


def test_a_missing_package_is_one_error_with_the_install_command_instead_of_unknown_node_types(issues):
    found = issues(USES_PLUGIN)
    assert [(e.code, e.path, e.line) for e in found] == [("missing_requirement", "requires[1]", 3)]
    assert "pip install 'nodegraph-blur-not-installed>=1.2,<2'" in found[0].hint


def test_a_too_old_nodegraph_says_which_version_is_installed(issues, one):
    error = one(issues("requires: [nodegraph>=99]\nnodes: {}\n"), "requirement_not_met")
    assert f"nodegraph {__version__} is installed" in error.message and error.path == "requires[0]"


def test_met_requirements_and_requirements_for_another_platform_pass(write):
    graph = load_graph(write("g.yaml", """
        requires:
          - nodegraph>=0.1,<1
          - pydantic>=2
          - some-mac-only-package>=1; sys_platform == "never"
        nodes:
          one: {type: Int, value: 1}
        outputs: {x: $one.value}
        """))
    assert graph.run() == {"x": 1}
    assert "nodegraph>=0.1,<1" in graph.to_yaml()


def test_malformed_requirements_are_located(issues):
    found = issues("requires: [nodegraph>=0.1, 'blur >>> 2', 3]\nnodes: {}\n")
    assert [(e.code, e.path) for e in found if e.is_error] == [("invalid_requirement", "requires[1]"),
                                                              ("invalid_requirement", "requires[2]")]
    assert [e.code for e in issues("requires: nodegraph\nnodes: {}\n") if e.is_error] == ["invalid_field"]


def test_requirements_of_an_included_graph_are_checked_too(write, issues):
    write("part.yaml", "requires: [nodegraph-blur-not-installed]\nnodes: {}\noutputs: {}\n")
    found = issues("nodes:\n  p: {type: ./part.yaml}\noutputs: {}\n", name="main.yaml")
    assert [(e.code, e.file.endswith("part.yaml")) for e in found if e.is_error] == [("missing_requirement", True)]


def test_the_cli_prints_the_pip_command(write, capsys):
    assert main(["validate", str(write("g.yaml", USES_PLUGIN))]) == 2
    err = capsys.readouterr().err
    assert "g.yaml:3:5: requires[1]: this graph needs `nodegraph-blur-not-installed>=1.2,<2`" in err
    assert "pip install" in err and "unknown node type" not in err
