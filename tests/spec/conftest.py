import textwrap

import pytest

from nodegraph import load_graph
from nodegraph.spec.errors import ValidationFailed


@pytest.fixture
def write(tmp_path):
    """Write a dedented graph file into tmp_path and return its path."""

    def write(name, text):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def issues(write):
    """Every error and warning validation reports for a graph text (empty list: valid, no warnings)."""

    def issues(text, name="g.yaml", **kwargs):
        path = write(name, text)
        try:
            graph = load_graph(path, **kwargs)
        except ValidationFailed as exc:
            return exc.issues
        return graph.warnings

    return issues


@pytest.fixture
def one():
    """The single issue with `code` (fails listing all issues when there is not exactly one)."""

    def one(found, code):
        matching = [i for i in found if i.code == code]
        assert len(matching) == 1, "\n".join(map(str, found))
        return matching[0]

    return one
