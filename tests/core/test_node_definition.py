from typing import Optional

import pytest
from pydantic import field_validator

from nodegraph.core import Field, Node, NodeDefinitionError, Ports, node
from nodegraph.core.node import PortValueError, fast_ports
from nodegraph.core.types import Latent


@node("Blur", version=2, register=False)
class Blur(Node):
    """Blurs latents.

    More help here."""

    class Inputs(Ports):
        latents: Latent
        radius: int = Field(3, gt=0, le=10, description="in pixels")
        mask: Optional[Latent] = None

    class Outputs(Ports):
        latents: Latent = Field(description="blurred")

    def run(self, i, ctx):
        return {"latents": i.latents}


def test_a_node_type_reads_ports_defaults_and_constraints():
    info = Blur.node_type
    assert (info.name, info.version, info.label, info.summary) == ("Blur", 2, "Blur@2", "Blurs latents.")
    latents, radius, mask = info.inputs.values()
    assert latents.required and not radius.required and not mask.required and mask.nullable
    assert radius.default == 3 and radius.description == "in pixels"
    assert radius.describe() == "int = 3  (> 0, <= 10)"
    assert str(info.outputs["latents"]) == "Latent" and info.output_docs["latents"] == "blurred"


def test_literals_are_checked_strictly_with_the_field_constraints():
    radius = Blur.node_type.inputs["radius"]
    assert radius.check(4) == 4
    for bad, code in [(0, "out_of_range"), (11, "out_of_range"), ("4", "invalid_value"), (True, "invalid_value")]:
        with pytest.raises(PortValueError) as caught:
            radius.check(bad)
        assert caught.value.code == code
    with pytest.raises(PortValueError) as caught:
        Blur.node_type.inputs["latents"].check(1)
    assert caught.value.code == "literal_not_allowed"
    assert Blur.node_type.inputs["mask"].check(None) is None


def _define(name="X", doc="Doc.", inputs=Ports, run=True, version=1):
    body = {"__doc__": doc, "Inputs": inputs}
    if run:
        body["run"] = lambda self, i, ctx: {}
    return node(name, version, register=False)(type("X", (Node,), body))


@pytest.mark.parametrize("kwargs, message", [
    (dict(doc=None), "docstring"),
    (dict(run=False), "run"),
    (dict(name="my node"), "identifier"),
    (dict(name="repeat"), "repeat"),
    (dict(version=0), "positive integer"),
    (dict(inputs=type("I", (Ports,), {"__annotations__": {"x": dict}})), "not a port type"),
    (dict(inputs=type("I", (Ports,), {"__annotations__": {"type": int}})), "cannot be a port name"),
    (dict(inputs=int), "must subclass"),
])
def test_malformed_node_classes_fail_at_definition_with_the_fix(kwargs, message):
    with pytest.raises(NodeDefinitionError, match=message):
        _define(**kwargs)


def test_fast_inputs_are_real_ports_instances_built_without_validation():
    calls = []

    class In(Ports):
        x: int

        @field_validator("x")
        @classmethod
        def count(cls, v):
            calls.append(v)
            return v

    made = fast_ports(In)({"x": "not validated"})
    assert isinstance(made, In) and made.x == "not validated" and calls == []
