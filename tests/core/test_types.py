from typing import Any, Literal, Optional

import pytest

from nodegraph.core.types import (Image, Latent, PortType, Tensor, UNet, UnsupportedType, can_connect,
                                  parse_type_name, port_type_of, type_of_literal)

T = parse_type_name


@pytest.mark.parametrize("src, dst", [
    ("int", "int"), ("int", "float"), ("list[int]", "list[float]"), ("Latent", "Latent"), ("Latent", "Tensor"),
    ("Image", "Tensor"), ("UNet", "UNet"), ("Any", "Latent"), ("Latent", "Any"),
])
def test_allowed_connections(src, dst):
    assert can_connect(T(src), T(dst))


@pytest.mark.parametrize("src, dst", [
    ("float", "int"), ("bool", "int"), ("int", "bool"), ("int", "str"), ("str", "float"), ("Tensor", "Latent"),
    ("Latent", "Image"), ("UNet", "VAE"), ("Scheduler", "Tensor"), ("list[float]", "list[int]"),
    ("int", "list[int]"), ("list[int]", "int"),
])
def test_nothing_else_is_silently_widened(src, dst):
    assert not can_connect(T(src), T(dst))


def test_annotations_normalise_to_port_types():
    assert port_type_of(int) == (PortType("int"), False)
    assert port_type_of(Optional[Latent]) == (PortType("Latent"), True)
    assert port_type_of(list[float]) == (PortType("list", PortType("float")), False)
    assert port_type_of(Literal["a", "b"]) == (PortType("str"), False)
    assert port_type_of(Any)[0] == PortType("Any")
    assert str(port_type_of(list[UNet])[0]) == "list[UNet]"


@pytest.mark.parametrize("annotation", [dict, int | str, Literal[1, "a"], object])
def test_unsupported_annotations_are_refused_with_the_reason(annotation):
    with pytest.raises(UnsupportedType, match="port"):
        port_type_of(annotation)


def test_type_names_parse_for_graph_inputs():
    assert T("list[list[int]]") == PortType("list", PortType("list", PortType("int")))
    assert T("list") == PortType("list", PortType("Any"))
    with pytest.raises(UnsupportedType):
        T("integer")


def test_repeat_items_of_lists_and_tensors():
    assert T("list[str]").item_type() == T("str")
    assert T("Timesteps").is_sequence and T("Timesteps").item_type() == T("Tensor")
    assert not T("int").is_sequence and not T("UNet").is_sequence


def test_literal_types():
    assert type_of_literal(True) == T("bool")
    assert type_of_literal([1, 2.5]) == T("list[float]")
    assert type_of_literal([]) == T("list[Any]")


def test_markers_are_plain_classes_that_pydantic_treats_as_any():
    from nodegraph.core import Ports

    class P(Ports):
        image: Image
        t: Tensor

    assert P(image=[1], t="anything").image == [1]
