"""Static validation of a parsed graph: node types, inputs, references, edge types, cycles, outputs.

Every problem is reported (the checker never stops at the first one); a node whose type did not resolve
is skipped quietly afterwards so that one typo does not cascade into a page of follow-on errors.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from nodegraph.core.node import InputPort, PortValueError
from nodegraph.core.registry import Registry, UnknownNodeType
from nodegraph.core.types import (ANY, INT, PortType, UnsupportedType, can_connect, needs_float_conversion,
                                  parse_type_name, type_of_literal)
from nodegraph.spec.checked import CheckedBody, CheckedGraph, CheckedNode, Source
from nodegraph.spec.document import INVALID, NO_DEFAULT, GraphSpec, InputSpec, Ref, RepeatSpec
from nodegraph.spec.errors import Path, Reporter, dotted
from nodegraph.spec.migrated import migrate_node
from nodegraph.spec.together import check_together
from nodegraph.spec.values import Consumer, GraphInputPort, check_value_for_input


def is_include(node_type: str) -> bool:
    return "/" in node_type or node_type.endswith((".yaml", ".yml"))


@dataclass(eq=False)
class Scope:
    """The nodes visible at one level: the top-level graph or one repeat body (which also sees outward)."""

    path: Path
    parent: Optional[Scope] = None
    owner: Optional[CheckedNode] = None
    nodes: dict[str, CheckedNode] = field(default_factory=dict)

    def chain(self) -> Iterator[Scope]:
        scope = self
        while scope is not None:
            yield scope
            scope = scope.parent


class GraphChecker:
    def __init__(self, spec: GraphSpec, source: Source, registry: Registry, includes, reporter: Reporter):
        self.spec, self.source, self.registry, self.includes, self.r = spec, source, registry, includes, reporter
        self.g = CheckedGraph(spec, source, issues=reporter.issues)
        self.ids: dict[str, Path] = {}
        self.scope_of: dict[str, Scope] = {}
        self.body_of: dict[str, Scope] = {}
        self._prepared: set[str] = set()
        self._preparing: set[str] = set()

    def run(self) -> CheckedGraph:
        for name, decl in self.spec.inputs.items():
            self._declare_input(name, decl)
        top = Scope(("nodes",))
        self._declare(self.spec.nodes, top)
        self._check_scope(top)
        self._check_outputs(top)
        self._check_defaults()
        self.g.nodes = top.nodes
        check_together(self.g, self.r)
        return self.g

    # ---- declarations ---------------------------------------------------------------------------------
    def _declare_input(self, name: str, decl: InputSpec) -> None:
        path = ("inputs", name)
        try:
            ptype = parse_type_name(decl.type)
        except UnsupportedType as exc:
            self.r.error("unknown_type", path + ("type",), str(exc))
            ptype = ANY
        self.g.input_types[name] = ptype
        if (decl.min is not None or decl.max is not None) and ptype.name not in ("int", "float"):
            self.r.error("invalid_field", path, f"`min`/`max` apply to int and float inputs, not {ptype}",
                         at_key=True)
        elif decl.min is not None and decl.max is not None and decl.min > decl.max:
            self.r.error("invalid_field", path + ("min",), f"`min` {decl.min} is above `max` {decl.max}")
        if decl.choices is not None:
            if not ptype.is_literal_friendly:
                self.r.error("invalid_field", path + ("choices",), f"an input of type {ptype} cannot have choices")
            else:
                for i, choice in enumerate(decl.choices):
                    if not can_connect(type_of_literal(choice), ptype):
                        self.r.error("invalid_field", path + ("choices", i),
                                     f"choice {choice!r} is not a {ptype}", f"`{name}` is declared as {ptype}")
        if not ptype.is_literal_friendly and decl.default not in (NO_DEFAULT, None):
            self.r.error("invalid_default", path + ("default",),
                         f"an input of type {ptype} cannot have a literal default", "remove `default:` or use null")

    def _declare(self, specs: dict, scope: Scope) -> None:
        for node_id, spec in specs.items():
            path = scope.path + (node_id,)
            if node_id in self.ids:
                self.r.error("duplicate_node_id", path,
                             f"node id `{node_id}` is already used at `{dotted(self.ids[node_id])}`",
                             "node ids are unique across the whole graph, repeat bodies included; rename one",
                             at_key=True)
                continue
            self.ids[node_id] = path
            node = CheckedNode(node_id, spec, "unknown", spec.type, path, order=len(self.ids))
            scope.nodes[node_id] = node
            self.scope_of[node_id] = scope
            if isinstance(spec, RepeatSpec):
                node.kind, node.body = "repeat", CheckedBody()
                inner = self.body_of[node_id] = Scope(path + ("nodes",), scope, owner=node)
                node.body.nodes = inner.nodes
                self._declare(spec.nodes, inner)
            elif is_include(spec.type):
                sub = self.includes.load(spec.type, self.source, self.r, path + ("type",))
                if sub is not None and not sub.errors:
                    node.kind, node.subgraph, node.outputs = "graph", sub, dict(sub.output_types)
                    node.inputs = {n: GraphInputPort(n, sub.input_types[n], d, sub) for n, d in sub.spec.inputs.items()}
            else:
                try:
                    info, migrations = self.registry.resolve(spec.type, spec.inputs)
                except UnknownNodeType as exc:
                    self.r.error(exc.code, path + ("type",), exc.message, exc.hint)
                    continue
                if migrations and not migrate_node(node, migrations, self.r, self.source.file):
                    continue
                node.kind, node.node_type, node.label = "node", info, info.label
                node.inputs, node.outputs = info.inputs, info.outputs

    # ---- node inputs ----------------------------------------------------------------------------------
    def _check_scope(self, scope: Scope) -> None:
        for node in scope.nodes.values():
            if node.kind in ("node", "graph"):
                self._check_ports(node, scope)
            elif node.kind == "repeat":
                self._check_repeat(node, scope)
        self._check_cycles(scope)

    def _check_ports(self, node: CheckedNode, scope: Scope) -> None:
        for key, value in node.spec.inputs.items():
            port = node.inputs.get(key)
            if port is None:
                close = difflib.get_close_matches(str(key), list(node.inputs), n=1)
                hint = (f"did you mean `{close[0]}`?" if close
                        else f"{node.label} takes: {', '.join(node.inputs) or 'no inputs'}")
                self.r.error("unknown_input", node.path + (key,), f"{node.label} has no input `{key}`", hint,
                             at_key=True)
            else:
                self._bind(node, port, value, node.path + (key,), scope)
        for name, port in node.inputs.items():
            if port.required and name not in node.spec.inputs:
                self.r.error("missing_input", node.path,
                             f"node `{node.id}` ({node.label}) needs input `{name}` ({port.type})",
                             f"add `{name}: ...`, a literal or a reference like `$node.port`", at_key=True)

    def _bind(self, node: CheckedNode, port: InputPort, value: Any, path: Path, scope: Scope) -> None:
        if value is INVALID:
            return
        if isinstance(value, Ref):
            src = self._resolve(value, scope, path, consumer=node)
            if src is None:
                return
            if not can_connect(src, port.type):
                self.r.error("type_mismatch", path,
                             f"`{value}` is {src} ({self._describe(value, scope)}), but input `{port.name}` of "
                             f"node `{node.id}` ({node.label}) takes {port.type}",
                             f"connect a value of type {port.type}"
                             + (" (a generic Tensor does not say which kind it is)" if src.name == "Tensor" else ""))
                return
            if needs_float_conversion(src, port.type):
                node.conversions.add(port.name)
            if value.scope == "inputs":
                self.g.consumers.setdefault(value.name, []).append(
                    Consumer(self.source.file, path, f"`{node.id}` ({node.label})", port))
            node.values[port.name] = value
            return
        try:
            node.values[port.name] = port.check(value)
        except PortValueError as exc:
            hint = f"`{port.name}` takes {port.describe()}"
            if exc.code == "literal_not_allowed":
                hint = f"connect it to a node output: `{port.name}: $<node>.<port>`"
            self.r.error(exc.code, path, f"input `{port.name}` of `{node.id}` ({node.label}): {exc.message}", hint)

    # ---- repeat ---------------------------------------------------------------------------------------
    def _prepare_repeat(self, node: CheckedNode) -> None:
        """Infer state, item and output types (needed before the body or any consumer is checked)."""
        if node.id in self._prepared or node.id in self._preparing:
            return
        self._preparing.add(node.id)
        spec, body, scope, inner = node.spec, node.body, self.scope_of[node.id], self.body_of[node.id]
        for name, value in spec.state.items():
            body.state_types[name] = self._infer(value, scope)
        over = self._infer(spec.over, scope)
        body.item_type = over.item_type() if over.is_sequence else ANY
        node.outputs = dict(body.state_types)
        for name, ref in spec.collect.items():
            if ref is not None:
                node.outputs.setdefault(name, PortType("list", self._infer(ref, inner)))
        self._preparing.discard(node.id)
        self._prepared.add(node.id)

    def _check_repeat(self, node: CheckedNode, scope: Scope) -> None:
        self._prepare_repeat(node)
        spec, body, inner = node.spec, node.body, self.body_of[node.id]
        over_path = node.path + ("over",)
        if isinstance(spec.over, Ref):
            over = self._resolve(spec.over, scope, over_path, consumer=node)
            if over is not None and not over.is_sequence:
                self.r.error("invalid_sequence", over_path, f"`over` must be a list or a 1-D tensor; "
                             f"`{spec.over}` is {over}", "iterate over a list or a Timesteps/Tensor output")
        elif spec.over not in (None, INVALID) and not isinstance(spec.over, list):
            self.r.error("invalid_sequence", over_path, f"`over` must be a list or a 1-D tensor, got {spec.over!r}")
        body.over = spec.over
        for name, value in spec.state.items():
            if isinstance(value, Ref):
                self._resolve(value, scope, node.path + ("state", name), consumer=node)
            body.state_init[name] = value
        self._check_scope(inner)
        for name, value in spec.next.items():
            self._check_next(node, inner, name, value)
        for name in spec.state:
            if name not in spec.next:
                self.r.error("missing_input", node.path + ("state", name), f"state `{name}` has no `next` value",
                             f"add `next: {{{name}: $node.port}}`: each iteration's value feeds the next",
                             at_key=True)
        for name, ref in spec.collect.items():
            path = node.path + ("collect", name)
            if name in spec.state:
                self.r.error("duplicate_output", path, f"`{name}` is both a state and a collect name",
                             "the repeat's outputs are its state and collect names; rename one", at_key=True)
            if ref is not None and self._resolve(ref, inner, path) is not None:
                body.collect[name] = ref
        self._warn_unused(inner, [v for v in (*spec.next.values(), *spec.collect.values()) if isinstance(v, Ref)],
                          f"the body of repeat `{node.id}`", "feeds neither `next` nor `collect`")

    def _check_next(self, node: CheckedNode, inner: Scope, name: str, value: Any) -> None:
        body, path = node.body, node.path + ("next", name)
        if name not in node.spec.state:
            self.r.error("unknown_state", path, f"`next.{name}`: `{name}` is not declared in `state`",
                         f"declared state: {', '.join(node.spec.state) or 'none'}", at_key=True)
            return
        want = body.state_types[name]
        got = self._resolve(value, inner, path) if isinstance(value, Ref) else type_of_literal(value)
        if got is None:
            return
        if not can_connect(got, want):
            hint = f"make the initial value of `{name}` a {got}"
            if want.name == "int" and got.name == "float":
                hint += " (write e.g. 1.0 instead of 1)"
            self.r.error("type_mismatch", path, f"next value `{value}` is {got}, but state `{name}` is {want} "
                         "(the type of its initial value)", hint)
            return
        if needs_float_conversion(got, want):
            body.next_conversions.add(name)
        body.next[name] = value

    # ---- references -----------------------------------------------------------------------------------
    def _infer(self, value: Any, scope: Scope) -> PortType:
        if isinstance(value, Ref):
            return self._resolve(value, scope, (), report=False) or ANY
        return type_of_literal(value)

    def _resolve(self, ref: Ref, scope: Scope, path: Path, consumer: Optional[CheckedNode] = None,
                 report: bool = True, for_output: bool = False) -> Optional[PortType]:
        """The type `ref` carries in `scope`, recording the dependency; None (and an error) if it is dangling."""
        code = "dangling_output" if for_output else None
        if ref.scope == "node":
            home = next((s for s in scope.chain() if ref.name in s.nodes), None)
            if home is None:
                if report:
                    self._unknown_node(ref, scope, path, code or "unknown_node")
                return None
            target = home.nodes[ref.name]
            if target.kind == "repeat":
                self._prepare_repeat(target)
                if target.id in self._preparing:
                    return ANY  # inferring through a cycle; the cycle itself is reported
            if target.kind == "unknown":
                return ANY
            if ref.port not in target.outputs:
                if report:
                    close = difflib.get_close_matches(ref.port, list(target.outputs), n=1)
                    self.r.error(code or "unknown_port", path,
                                 f"`{ref}`: node `{target.id}` ({target.label}) has no output `{ref.port}`",
                                 f"did you mean `${target.id}.{close[0]}`?" if close else
                                 f"its outputs: {', '.join(target.outputs) or 'none'}")
                return None
            if report:
                self._note_use(ref, scope, home, consumer)
            return target.outputs[ref.port]
        if ref.scope == "inputs":
            if ref.name not in self.spec.inputs:
                if report:
                    close = difflib.get_close_matches(ref.name, list(self.spec.inputs), n=1)
                    self.r.error(code or "unknown_graph_input", path, f"`{ref}`: the graph has no input "
                                 f"`{ref.name}`", f"did you mean `$inputs.{close[0]}`?" if close else
                                 "declare it under `inputs:` at the top of the file")
                return None
            if report:
                self._note_use(ref, scope, None, consumer)
            return self.g.input_types[ref.name]
        body = scope.owner.body if scope.owner is not None else None
        if body is None:
            if report:
                self.r.error("bad_reference", path, f"`{ref}` can only be used inside a repeat body")
            return None
        if ref.scope == "loop":
            return INT if ref.name == "index" else (body.item_type or ANY)
        if ref.name not in body.state_types:
            if report:
                self.r.error("unknown_state", path, f"`{ref}`: repeat `{scope.owner.id}` has no state `{ref.name}`",
                             f"declared state: {', '.join(body.state_types) or 'none'}")
            return None
        return body.state_types[ref.name]

    def _note_use(self, ref: Ref, scope: Scope, home: Optional[Scope], consumer: Optional[CheckedNode]) -> None:
        if home is scope:
            if consumer is not None:
                consumer.deps.add(ref.name)
            return
        inner = scope
        while inner is not home and inner.owner is not None:  # every body between reads it from outside
            inner.owner.body.outer_refs.add(ref)
            if inner.parent is home and ref.scope == "node":
                inner.owner.deps.add(ref.name)
            inner = inner.parent

    def _unknown_node(self, ref: Ref, scope: Scope, path: Path, code: str) -> None:
        visible = [n for s in scope.chain() for n in s.nodes]
        if ref.name in self.ids:
            hint = (f"`{ref.name}` lives inside a repeat body (`{dotted(self.ids[ref.name])}`) and is not visible "
                    "here; expose its value through that repeat's `state` or `collect`")
        else:
            close = difflib.get_close_matches(ref.name, visible, n=1)
            hint = f"did you mean `${close[0]}.{ref.port}`?" if close else "declare the node under `nodes:`"
        self.r.error(code, path, f"`{ref}` refers to node `{ref.name}`, which does not exist here", hint)

    def _describe(self, ref: Ref, scope: Scope) -> str:
        if ref.scope == "node":
            home = next(s for s in scope.chain() if ref.name in s.nodes)
            return f"output `{ref.port}` of node `{ref.name}` ({home.nodes[ref.name].label})"
        return {"inputs": f"graph input `{ref.name}`", "state": f"loop state `{ref.name}`"}.get(
            ref.scope, f"the loop {ref.name}")

    # ---- whole-graph checks ---------------------------------------------------------------------------
    def _check_cycles(self, scope: Scope) -> None:
        import networkx as nx

        deps = nx.DiGraph()
        deps.add_nodes_from(scope.nodes)
        deps.add_edges_from((d, n.id) for n in scope.nodes.values() for d in n.deps if d in scope.nodes)
        for component in nx.strongly_connected_components(deps):
            if len(component) == 1 and not deps.has_edge(*(2 * tuple(component))):
                continue
            start = min(component, key=lambda n: scope.nodes[n].order)
            edges = nx.find_cycle(deps.subgraph(component), source=start)
            ring = [u for u, _ in edges] + [start]
            text = " → ".join(f"`{n}`" for n in ring)
            message = (f"node `{start}` reads its own output" if len(component) == 1
                       else f"nodes {text} form a cycle (each feeds the next)")
            self.r.error("cycle", scope.nodes[start].path, message,
                         "a graph must be acyclic; to iterate, use a `repeat` node with loop-carried `state`",
                         at_key=True)

    def _check_outputs(self, top: Scope) -> None:
        used = []
        for name, ref in self.spec.outputs.items():
            if ref is None:
                continue
            ptype = self._resolve(ref, top, ("outputs", name), for_output=True)
            self.g.output_types[name] = ptype or ANY
            used.append(ref)
        if not self.spec.outputs and self.spec.nodes:
            self.r.warning("no_outputs", ("outputs",), "the graph declares no outputs, so running it does nothing",
                           "add `outputs: {name: $node.port}`")
            return
        self._warn_unused(top, used, "the graph", "feeds no graph output")

    def _warn_unused(self, scope: Scope, used_refs: list, where: str, why: str) -> None:
        needed: set[str] = set()
        todo = [r.name for r in used_refs if r.scope == "node" and r.name in scope.nodes]
        while todo:
            node_id = todo.pop()
            if node_id not in needed:
                needed.add(node_id)
                todo.extend(d for d in scope.nodes[node_id].deps if d in scope.nodes)
        for node in scope.nodes.values():
            if node.id not in needed:
                self.r.warning("unused_node", node.path, f"node `{node.id}` in {where} {why}; it will not run",
                               "use its output or remove the node")

    def _check_defaults(self) -> None:
        for name, decl in self.spec.inputs.items():
            if not decl.required:
                self.g.defaults[name] = check_value_for_input(
                    self.g, name, decl.default, f"default {decl.default!r} of input `{name}`", self.r,
                    ("inputs", name, "default"))
