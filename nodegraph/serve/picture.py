"""`GET /graphs/{name}/picture.svg`: the diagram `nodegraph show` prints as Mermaid, drawn as SVG on the server.

Drawing it here keeps the page free of a multi-megabyte diagram library. The picture shows what the Mermaid
text shows (graph inputs, nodes with their types, outputs, repeat bodies with their loop item and state) and
also opens included graphs, so both the loop and the step it runs are visible.

Layout: each box's children are put in columns by longest path from the box's sources (edges into a
container count for the container), boxes stacked in each column; containers are sized from their children
first. Loop-carried `next` edges (dashed) are left out of the layering, which keeps it acyclic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional
from xml.sax.saxutils import escape

CHAR_W, LINE_H, PAD, GAP_X, GAP_Y, HEADER = 7.0, 15, 10, 46, 14, 22


@dataclass(eq=False)
class Box:
    id: str
    title: str
    subtitle: str = ""
    kind: str = "node"  # node | input | output | state | repeat | graph
    parent: Optional["Box"] = None
    children: list["Box"] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    def add(self, child: "Box") -> "Box":
        child.parent = self
        self.children.append(child)
        return child

    def ancestors(self) -> list["Box"]:
        chain, box = [], self
        while box is not None:
            chain.append(box)
            box = box.parent
        return chain

    def absolute(self) -> tuple[float, float]:
        return sum(b.x for b in self.ancestors()), sum(b.y for b in self.ancestors())


class _Builder:
    def __init__(self):
        self.root = Box("", "")
        self.edges: list[tuple[Box, Box, str, bool]] = []  # source, target, label, loop-carried

    def edge(self, source: Optional[Box], target: Box, label: str, dashed: bool = False) -> None:
        if source is not None:
            self.edges.append((source, target, label, dashed))

    def graph(self, checked, into: Box, outer: list[dict]) -> dict[str, Box]:
        inputs = {name: into.add(Box(f"{into.id}/in:{name}", name, str(ptype), "input"))
                  for name, ptype in checked.input_types.items()}
        scope = {"inputs": inputs, "nodes": [{}, *outer], "loop": None, "state": {}}
        self.nodes(checked.nodes, into, scope)
        for name, ref in checked.spec.outputs.items():
            out = into.add(Box(f"{into.id}/out:{name}", name, "output", "output"))
            self.edge(self.resolve(ref, scope), out, "output")
        return inputs

    def resolve(self, ref, scope) -> Optional[Box]:
        if getattr(ref, "scope", None) == "node":
            return next((level[ref.name] for level in scope["nodes"] if ref.name in level), None)
        if getattr(ref, "scope", None) == "inputs":
            return scope["inputs"].get(ref.name)
        if getattr(ref, "scope", None) == "loop":
            return scope["loop"]
        if getattr(ref, "scope", None) == "state":
            return scope["state"].get(ref.name)
        return None

    def nodes(self, nodes: dict, into: Box, scope: dict) -> None:
        from nodegraph.spec.document import Ref

        level = scope["nodes"][0]
        pending = []
        for node in nodes.values():
            box_id = f"{into.id}/{node.id}"
            if node.kind == "repeat" and node.body is not None:
                box = level[node.id] = into.add(Box(box_id, f"{node.id}: repeat", "", "repeat"))
                loop = box.add(Box(f"{box_id}/loop", "loop.item / index", "", "state"))
                states = {n: box.add(Box(f"{box_id}/state:{n}", f"state.{n}", "", "state"))
                          for n in node.body.state_init}
                inner = {"inputs": scope["inputs"], "nodes": [{}, *scope["nodes"]], "loop": loop, "state": states}
                self.nodes(node.body.nodes, box, inner)
                self.edge(self.resolve(node.body.over, scope), loop, "over")
                for name, value in node.body.state_init.items():
                    self.edge(self.resolve(value, scope), states[name], "initial")
                for name, value in node.body.next.items():
                    self.edge(self.resolve(value, inner), states[name], "next", dashed=True)
            elif node.kind == "graph" and node.subgraph is not None:
                box = level[node.id] = into.add(Box(box_id, f"{node.id}: {node.label}", "", "graph"))
                ports = self.graph(node.subgraph, box, [])
                pending += [(value, ports.get(port, box), port) for port, value in node.spec.inputs.items()]
            else:
                box = level[node.id] = into.add(Box(box_id, node.id, node.label))
                pending += [(value, box, port) for port, value in node.spec.inputs.items()]
        for value, target, port in pending:  # after the loop: a node may read one defined below it
            if isinstance(value, Ref):
                self.edge(self.resolve(value, scope), target, port)


def _layout(box: Box, edges: list) -> None:
    if not box.children:
        text = max(len(box.title), len(box.subtitle))
        box.w = max(60.0, text * CHAR_W + 2 * PAD)
        box.h = LINE_H * (2 if box.subtitle else 1) + 2 * PAD - (4 if box.kind in ("input", "output", "state") else 0)
        return
    for child in box.children:
        _layout(child, edges)
    index = {id(c): i for i, c in enumerate(box.children)}
    preds: dict[int, set[int]] = {i: set() for i in range(len(box.children))}
    for source, target, _, dashed in edges:
        if dashed:
            continue
        a = next((index[id(b)] for b in source.ancestors() if id(b) in index), None)
        b = next((index[id(b)] for b in target.ancestors() if id(b) in index), None)
        if a is not None and b is not None and a != b:
            preds[b].add(a)
    layer: dict[int, int] = {}

    def depth(i: int, seen: frozenset = frozenset()) -> int:
        if i not in layer:
            layer[i] = 1 + max((depth(p, seen | {i}) for p in preds[i] if p not in seen), default=-1)
        return layer[i]

    columns: dict[int, list[Box]] = {}
    for i, child in enumerate(box.children):
        columns.setdefault(depth(i), []).append(child)
    x = PAD
    tallest = 0.0
    for number in sorted(columns):
        y = HEADER + PAD
        for child in columns[number]:
            child.x, child.y = x, y
            y += child.h + GAP_Y
        x += max(c.w for c in columns[number]) + GAP_X
        tallest = max(tallest, y - GAP_Y)
    box.w = max(x - GAP_X + PAD, len(box.title) * CHAR_W + 2 * PAD)
    box.h = tallest + PAD


STYLE = {"node": ('fill="#ffffff" stroke="#5c6166"', 3), "input": ('fill="#e8f0fb" stroke="#1a5fb4"', 12),
         "output": ('fill="#eef5ee" stroke="#2e7d32"', 12), "state": ('fill="#fff8e1" stroke="#b08800"', 12),
         "repeat": ('fill="#f3f6fa" stroke="#1a5fb4"', 8),
         "graph": ('fill="#fafafa" stroke="#7a5cc8" stroke-dasharray="5 3"', 8)}


def _draw(box: Box, out: list[str]) -> None:
    if box.parent is not None:
        x, y = box.absolute()
        look, radius = STYLE[box.kind]
        out.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{box.w:.0f}" height="{box.h:.0f}" rx="{radius}" {look}/>')
        if box.children:
            out.append(f'<text x="{x + PAD:.0f}" y="{y + 16:.0f}" class="head">{escape(box.title)}</text>')
        else:
            first = y + PAD + 11 - (2 if box.kind in ("input", "output", "state") else 0)
            out.append(f'<text x="{x + PAD:.0f}" y="{first:.0f}">{escape(box.title)}</text>')
            if box.subtitle:
                out.append(f'<text x="{x + PAD:.0f}" y="{first + LINE_H:.0f}" class="sub">{escape(box.subtitle)}</text>')
    for child in box.children:
        _draw(child, out)


def to_svg(checked, title: str = "") -> str:
    """An SVG picture of a checked graph (no model is loaded; nothing of the graph is run)."""
    builder = _Builder()
    builder.root.title = title
    builder.graph(checked, builder.root, [])
    _layout(builder.root, builder.edges)
    width, height = builder.root.w, builder.root.h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
           f"<title>{escape(title)}</title>",
           "<style>.head{font-weight:bold}.sub{fill:#5c6166;font-size:11px}.edge{fill:none;stroke:#8a9096}"
           ".next{stroke-dasharray:4 3;stroke:#b08800}.label{fill:#6b7075;font-size:9px}</style>",
           '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" markerHeight="6" '
           'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#8a9096"/></marker></defs>',
           f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>']
    _draw(builder.root, out)
    incoming: dict[int, list] = {}
    for edge in builder.edges:
        incoming.setdefault(id(edge[1]), []).append(edge)
    for edges in incoming.values():  # a box's incoming edges end at points spread down its left side
        edges.sort(key=lambda e: e[0].absolute()[1])
        for slot, (source, target, label, dashed) in enumerate(edges):
            (sx, sy), (tx, ty) = source.absolute(), target.absolute()
            span = min(target.h, 40.0)
            x1, y1 = sx + source.w, sy + min(source.h / 2, 20)
            x2, y2 = tx, ty + span * (slot + 1) / (len(edges) + 1)
            out += _edge(x1, y1, x2, y2, label, dashed)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _edge(x1: float, y1: float, x2: float, y2: float, label: str, dashed: bool) -> list[str]:
    bend = max(30.0, abs(x2 - x1) / 2)
    return [f'<path class="edge{" next" if dashed else ""}" marker-end="url(#arrow)" '
            f'd="M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}">'
            f"<title>{escape(label)}</title></path>",
            f'<text class="label" x="{x2 - 4:.0f}" y="{y2 - 2:.0f}" text-anchor="end">{escape(label)}</text>']


def add_picture_route(app, service) -> None:
    from fastapi.responses import Response

    from nodegraph.serve.documents import reject
    from nodegraph.spec.errors import ValidationFailed
    from nodegraph.spec.loader import load_graph

    @app.get("/graphs/{name}/picture.svg", summary="The graph as an SVG diagram (what `nodegraph show` prints)")
    def picture(name: str):
        path = service.documents.graph_files().get(name)
        if path is None:
            raise reject("unknown_graph", "name", f"no graph {name}", "GET /graphs lists them", status=404)
        try:
            checked = load_graph(path).checked
        except ValidationFailed as exc:
            raise reject("invalid_graph", "name", f"graph {name} does not validate", exc.report(), status=422)
        return Response(to_svg(checked, name), media_type="image/svg+xml",
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})
