"""UI-format subgraphs (`definitions.subgraphs`), flattened into one graph as ComfyUI's front end does when it
queues: each instance's inner nodes take the ids `<instance id>:<inner id>` (nested: `a:b:c`), a link into the
subgraph's input k reaches every inner input wired to it, a link out of the instance's output k comes from the inner
output wired to it. An inner widget input wired to a subgraph input that the instance leaves unconnected keeps the
inner node's own value (the front end shows that value on the instance, `proxyWidgets`), unless the instance carries
its own value for it: an instance's `widgets_values` hold one value per subgraph input that feeds an inner widget, in
the subgraph's input order (the promoted widgets; checked on every official template), and such a value reaches the
inner inputs as a PrimitiveNode's value would.

A muted instance is dropped with its nodes; a bypassed one stays a single bypassed node, which the reader passes
through as it does any bypassed node (each output takes the first linked input of its type). Refused with the reason:
instances whose values do not match their subgraph's promoted inputs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from nodegraph.comfy.errors import ComfyError

IN, OUT = -10, -20  # the subgraph's input and output pseudo-nodes, as links name them
MAX_DEPTH = 16


@dataclass
class _Level:
    prefix: str  # "" at the top, "57:" inside instance 57, …
    nodes: dict[str, dict]
    links: dict[int, tuple[str, int]]  # link id → (origin id, origin slot), ids as strings
    parent: "_Level | None" = None
    instance: dict | None = None  # the instance node, in `parent`
    definition: dict | None = None
    values: dict[str, Any] | None = None  # the instance's own value for each promoted subgraph input, by name


def flatten_subgraphs(doc: dict, origin: str) -> dict:
    """`doc` with every subgraph instance replaced by its nodes (the same dict when it has none)."""
    from nodegraph.comfy.schema import check_ui

    definitions = {str(sg.get("id")): sg for sg in (doc.get("definitions") or {}).get("subgraphs") or []}
    if not any(str(node["type"]) in definitions for node in doc["nodes"]):
        return doc
    for sg in definitions.values():  # the inner graphs' types, as the top level's were checked
        check_ui({"nodes": sg.get("nodes") or [], "links": sg.get("links") or []},
                 f"{origin} (subgraph {sg.get('name') or sg.get('id')!r})")
    flat = _Flattener(definitions, origin)
    flat.check(doc["nodes"], "", 0)  # every refusal before any expansion
    flat.level(_Level("", {str(n["id"]): n for n in doc["nodes"]}, _links(doc.get("links"))), 0)
    flat.check_unique_ids()
    return dict({k: v for k, v in doc.items() if k != "definitions"}, nodes=flat.nodes, links=flat.links)


def _links(raw) -> dict[int, tuple[str, int]]:
    out = {}
    for link in raw or []:
        if isinstance(link, list):
            out[link[0]] = (str(link[1]), int(link[2]))
        elif isinstance(link, dict):
            out[link["id"]] = (str(link["origin_id"]), int(link["origin_slot"]))
    return out


class _Flattener:
    def __init__(self, definitions: dict[str, dict], origin: str):
        self.definitions, self.origin = definitions, origin
        self.nodes: list[dict] = []
        self.links: list[list] = []
        self.ids = itertools.count(1)
        self.value_ids: set[str] = set()  # the PrimitiveNodes made for instances' own values

    def check(self, nodes: list[dict], prefix: str, depth: int) -> None:
        """Refuse what is not expanded (nested too deep, bypassed instances, instances' own widget values)."""
        if depth > MAX_DEPTH:
            raise ComfyError(f"{self.origin}: subgraphs nested more than {MAX_DEPTH} deep (a subgraph that holds "
                             f"itself?)")
        for node in nodes:
            sg = self.definitions.get(str(node["type"]))
            if sg is None or node.get("mode") == 2:
                continue
            where = f"{self.origin}: node {prefix}{node['id']} (subgraph {sg.get('name') or sg.get('id')!r})"
            if node.get("mode") == 4:  # bypassed: kept as one node the reader passes through, never expanded
                continue
            values, promoted = node.get("widgets_values"), promoted_inputs(sg)
            if values and (not isinstance(values, list) or len(values) != len(promoted)):
                raise ComfyError(f"{where} carries {len(values)} widget values for the {len(promoted)} subgraph "
                                 f"inputs that feed inner widgets ({', '.join(promoted) or 'none'}); nodegraph cannot "
                                 f"tell which value is whose: set them inside the subgraph in ComfyUI and save again")
            self.check(sg.get("nodes") or [], f"{prefix}{node['id']}:", depth + 1)

    def level(self, level: _Level, depth: int) -> None:
        for node_id, node in level.nodes.items():
            sg = self.definitions.get(str(node["type"]))
            if sg is None:
                self.nodes.append(self.real(level, node_id, node))
                continue
            if node.get("mode") == 2:  # muted: not sent, like any muted node
                continue
            if node.get("mode") == 4:  # bypassed: each output passes the first input of its type, as for any node
                self.nodes.append(self.real(level, node_id, node))
                continue
            inner = {str(n["id"]): n for n in sg.get("nodes") or []}
            values = dict(zip(promoted_inputs(sg), node.get("widgets_values") or []))
            self.level(_Level(f"{level.prefix}{node_id}:", inner, _links(sg.get("links")), level, node, sg, values),
                       depth + 1)

    def real(self, level: _Level, node_id: str, node: dict) -> dict:
        """A copy of a node of `level` under its global id, each linked input re-linked to its real source."""
        copy = dict(node, id=f"{level.prefix}{node_id}", inputs=[])
        for slot_index, slot in enumerate(node.get("inputs") or []):
            slot = dict(slot)
            if slot.get("link") is not None:
                source = self.source(level, slot["link"])
                if source is None:
                    slot["link"] = None  # a subgraph input left unconnected: the inner widget's value stands
                else:
                    link_id = next(self.ids)
                    self.links.append([link_id, source[0], source[1], copy["id"], slot_index, slot.get("type")])
                    slot["link"] = link_id
            copy["inputs"].append(slot)
        return copy

    def source(self, level: _Level, link_id: int) -> tuple[str, int] | None:
        """The (global node id, output slot) a link of `level` reads, through subgraph boundaries."""
        if link_id not in level.links:
            inside = f" inside node {level.prefix[:-1]}'s subgraph" if level.prefix else ""
            raise ComfyError(f"{self.origin}: link {link_id}{inside} is not in its `links` (a dangling link); "
                             f"reconnect it in ComfyUI and save again")
        origin, slot = level.links[link_id]
        if origin == str(IN):  # the subgraph's input `slot`: what the instance's input of that name reads
            name = (level.definition.get("inputs") or [{}] * (slot + 1))[slot].get("name")
            outer = [s for s in level.instance.get("inputs") or [] if s.get("name") == name]
            found = None if not outer or outer[0].get("link") is None else self.source(level.parent, outer[0]["link"])
            if found is None and name in (level.values or {}):  # the instance's own value for this input
                return self.value_node(level, name)
            return found
        sg = self.definitions.get(str((level.nodes.get(origin) or {}).get("type")))
        if sg is not None and level.nodes[origin].get("mode") != 4:
            # an instance's output `slot` (a bypassed one is a node of its own): the inner link into that output
            inner_links = [link for link in sg.get("links") or []
                           if isinstance(link, dict) and str(link.get("target_id")) == str(OUT)
                           and link.get("target_slot") == slot]
            if not inner_links:  # an output not wired inside: the input reading it is left unset, as in ComfyUI
                return None
            inner = _Level(f"{level.prefix}{origin}:", {str(n["id"]): n for n in sg.get("nodes") or []},
                           _links(sg.get("links")), level, level.nodes[origin], sg)
            return self.source(inner, inner_links[0]["id"])
        return f"{level.prefix}{origin}", slot

    def value_node(self, level: _Level, name: str) -> tuple[str, int]:
        """A PrimitiveNode holding the instance's value for subgraph input `name` (made once per instance). Its id
        `<instance>:[input <name>]` is outside the inner ids' space (ComfyUI's are integers), so an input named
        like an inner node ("5") cannot take that node's place; a crafted string id equal to it is refused by
        `check_unique_ids`. Never sent: the reader folds a PrimitiveNode into the inputs it feeds."""
        node_id = f"{level.prefix}[input {name}]"
        if node_id not in self.value_ids:
            self.value_ids.add(node_id)
            self.nodes.append({"id": node_id, "type": "PrimitiveNode", "mode": 0, "inputs": [],
                               "widgets_values": [level.values[name]]})
        return node_id, 0

    def check_unique_ids(self) -> None:
        """Refuse a flat graph in which two nodes have one id (string ids crafted to meet another's global id)."""
        seen: set[str] = set()
        for node in self.nodes:
            if node["id"] in seen:
                raise ComfyError(f"{self.origin}: two nodes have the id {node['id']} once the subgraphs are expanded "
                                 f"(node ids inside a subgraph are integers in ComfyUI); give them distinct ids in "
                                 f"ComfyUI and save again")
            seen.add(node["id"])


def promoted_inputs(definition: dict) -> list[str]:
    """The names of the subgraph inputs that feed an inner node's widget input, in input order: the widgets the
    front end shows on an instance, whose values its `widgets_values` hold."""
    links = {link["id"]: link for link in definition.get("links") or [] if isinstance(link, dict) and "id" in link}
    nodes = {str(node.get("id")): node for node in definition.get("nodes") or []}
    out = []
    for slot in definition.get("inputs") or []:
        for link_id in slot.get("linkIds") or []:
            link = links.get(link_id) or {}
            target = nodes.get(str(link.get("target_id")))
            inputs = (target or {}).get("inputs") or []
            index = link.get("target_slot")
            if isinstance(index, int) and 0 <= index < len(inputs) and inputs[index].get("widget"):
                out.append(slot.get("name"))
                break
    return out
