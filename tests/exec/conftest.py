import textwrap

import pytest

from nodegraph import loads_graph


@pytest.fixture
def graph():
    """A Graph from dedented YAML text (optionally with a registry)."""

    def graph(text, **kwargs):
        return loads_graph(textwrap.dedent(text), **kwargs)

    return graph


@pytest.fixture
def recorder():
    """A hook that keeps every event."""

    class Recorder(list):
        def __call__(self, event):
            self.append(event)

        def of(self, kind):
            return [e for e in self if isinstance(e, kind)]

    return Recorder()
