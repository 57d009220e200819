"""The registry loads its node modules once, and a thread asking meanwhile waits for all of them: the server's
first `GET /nodes` arriving while another request loads the registry used to get a partial list."""

import threading

from nodegraph.core import Node, Ports, node
from nodegraph.core.registry import Registry


@node("LateNode", version=1, register=False)  # only the test's registry gets it
class LateNode(Node):
    """Registered at the end of a slow load."""

    class Inputs(Ports):
        pass

    class Outputs(Ports):
        pass

    def run(self, i, ctx):
        return self.Outputs()


class SlowRegistry(Registry):
    def __init__(self):
        super().__init__(builtins=True, plugins=False)
        self.entered, self.release = threading.Event(), threading.Event()

    def _load_builtins(self) -> None:
        self.entered.set()
        self.release.wait(10)
        self.add(LateNode)


def test_a_thread_asking_while_the_registry_loads_waits_for_every_node_type():
    registry = SlowRegistry()
    loader = threading.Thread(target=registry.all)
    loader.start()
    assert registry.entered.wait(10)
    seen: list = []
    asker = threading.Thread(target=lambda: seen.append([t.name for t in registry.all()]))
    asker.start()
    asker.join(0.2)
    still_waiting = asker.is_alive()
    registry.release.set()
    loader.join(10)
    asker.join(10)
    assert seen == [["LateNode"]]
    assert still_waiting  # it waited for the load instead of answering with what was there
