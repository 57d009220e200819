"""GET /graphs/{name}/picture.svg: the `nodegraph show` diagram drawn as SVG, repeat bodies and includes open."""

import pathlib
import xml.etree.ElementTree as ET

import httpx

from nodegraph.serve.picture import to_svg
from nodegraph.spec.loader import load_graph
from nodegraph.spec.mermaid import to_mermaid

GRAPHS = pathlib.Path(__file__).parents[2] / "graphs"
SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    return [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_picture_has_every_edge_of_the_mermaid_diagram_for_a_graph_without_includes():
    checked = load_graph(GRAPHS / "ddpm.yaml").checked
    mermaid_edges = [line for line in to_mermaid(checked).splitlines() if "-->" in line or "-.->" in line]
    paths = list(ET.fromstring(to_svg(checked, "ddpm")).iter(f"{SVG}path"))
    edges = [p for p in paths if "edge" in p.get("class", "")]
    assert len(edges) == len(mermaid_edges)
    assert sum("next" in p.get("class") for p in edges) == sum("-.->" in line for line in mermaid_edges) > 0


def test_picture_shows_nodes_inputs_the_repeat_and_the_included_step():
    checked = load_graph(GRAPHS / "stable_diffusion.yaml").checked
    shown = texts(to_svg(checked, "stable_diffusion"))
    for name in [*checked.input_types, *checked.nodes]:
        assert name in shown or any(t.startswith(f"{name}: ") for t in shown), name
    assert "denoise: repeat" in shown and "state.latents" in shown
    assert "step: ./sd_denoise_step.yaml" in shown
    assert "UNetStep@1" in shown and "CFGCombine@1" in shown  # the included step's own nodes


def test_picture_route_needs_the_token_and_knows_its_graphs(server):
    url = f"{server.url}/graphs/stable_diffusion/picture.svg"
    answer = httpx.get(url, headers=server.headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert "denoise: repeat" in texts(answer.text)
    assert httpx.get(url).status_code == 401
    missing = httpx.get(f"{server.url}/graphs/no_such_graph/picture.svg", headers=server.headers)
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "unknown_graph"


def test_every_shipped_graph_draws_as_well_formed_svg_with_boxes_inside_the_picture():
    for path in sorted(GRAPHS.glob("*.yaml")):
        root = ET.fromstring(to_svg(load_graph(path).checked, path.stem))
        width, height = float(root.get("width")), float(root.get("height"))
        for rect in root.iter(f"{SVG}rect"):
            right = float(rect.get("x", 0)) + float(rect.get("width"))
            bottom = float(rect.get("y", 0)) + float(rect.get("height"))
            assert right <= width + 1 and bottom <= height + 1, (path.name, rect.attrib)
