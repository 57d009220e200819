"""The package layering, read from the source (every import counts, also those inside functions):
no import circle between nodegraph's packages; spec/ and core/ import nothing above them; only cli.py imports
the CLI. Front-ends reach the core through nodegraph.runner, never through each other."""

from __future__ import annotations

import ast
import pathlib

import networkx as nx

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "nodegraph"
ABOVE_CORE_AND_SPEC = {"exec", "hub", "serve", "batch", "comfy", "cli", "runner", "client", "web", "nodes"}


def imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import statement in `path`, at any depth."""
    package = ["nodegraph", *path.relative_to(PACKAGE).parts[:-1]]
    found = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import):
            found += [(a.name, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = package[: len(package) - n.level + 1]
                names = [".".join(base + [n.module])] if n.module else [".".join(base + [a.name]) for a in n.names]
            else:
                names = [n.module] if n.module else []
                # `from nodegraph import cli` names the module in the alias
                if n.module == "nodegraph":
                    names += [f"nodegraph.{a.name}" for a in n.names]
            found += [(name, n.lineno) for name in names]
    return found


def unit(path: pathlib.Path) -> str:
    """The first-level package (or module) of nodegraph/ that `path` belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def edges() -> dict[tuple[str, str], str]:
    """{(from package, to package): "file:line" of the first import making that arrow}."""
    found: dict[tuple[str, str], str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = unit(path)
        for module, line in imports(path):
            parts = module.split(".")
            if parts[0] == "nodegraph" and len(parts) > 1 and parts[1] != src and src != "__init__":
                found.setdefault((src, parts[1]), f"{path.relative_to(PACKAGE.parent)}:{line}")
    return found


def test_the_reader_sees_imports_inside_functions():
    # the checker itself: a function-level import and a relative one both count
    sample = PACKAGE / "spec" / "values.py"
    assert any(m == "nodegraph.spec.together" for m, _ in imports(sample))  # imported inside a function


def test_no_import_circle_between_packages():
    graph = nx.DiGraph(list(edges()))
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    where = {pair: at for pair, at in edges().items() if any(set(pair) <= set(c) for c in circles)}
    assert not circles, f"import circles {circles}: {where}"


def test_core_and_spec_import_nothing_above_them():
    upward = {pair: at for pair, at in edges().items() if pair[0] in ("core", "spec") and pair[1] in ABOVE_CORE_AND_SPEC}
    assert not upward, f"core/ or spec/ import a higher layer: {upward}"


def test_core_does_not_import_spec():
    assert ("core", "spec") not in edges(), edges().get(("core", "spec"))


def test_only_cli_py_imports_the_cli():
    users = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in PACKAGE.rglob("*.py") if unit(path) != "cli"
             for module, line in imports(path) if module == "nodegraph.cli" or module.startswith("nodegraph.cli.")]
    assert not users, f"modules importing nodegraph.cli: {users}"
