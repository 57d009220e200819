"""`nodegraph schema`: a JSON Schema of the graph format with every installed node type's parameters.

YAML editors (yaml-language-server in VS Code, JetBrains IDEs) read it to complete node types and
parameters and to flag typos while typing. Draft-07, the draft those editors support best. Each port's
literal schema comes from pydantic (the library that checks the literal at validation time), so types,
enums and ranges agree with `nodegraph validate`; a port also accepts a `$node.port` reference.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from nodegraph.core.node import InputPort, NodeType
from nodegraph.core.registry import Registry
from nodegraph.spec.document import IDENTIFIER

DRAFT = "http://json-schema.org/draft-07/schema#"
REFERENCE = r"^\$[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$"
INCLUDE = r"^(hf://.+|.*/.*|.*\.ya?ml)$"  # spec.check.is_include: a path or address, not a registered name


def _ref(name: str) -> dict:
    return {"$ref": f"#/definitions/{name}"}


def _literal_schema(port: InputPort) -> Optional[dict]:
    """The JSON Schema of a literal this port accepts (None: only a node output can feed it)."""
    if not port.type.is_literal_friendly:
        return None
    from pydantic import TypeAdapter

    try:
        schema = TypeAdapter(port.annotation).json_schema()
    except Exception:  # a type pydantic cannot describe: leave it unchecked rather than wrong
        return {}
    if "$defs" in schema or "$ref" in json.dumps(schema):
        return {}
    schema.pop("title", None)
    if port.nullable and schema:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _json_default(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _port_schema(port: InputPort) -> dict:
    literal = _literal_schema(port)
    schema: dict[str, Any] = ({"anyOf": [literal, _ref("reference")]} if literal else
                              {} if literal == {} else _ref("reference"))
    text = port.description or ""
    schema["description"] = f"{port.describe()}{' — ' + text if text else ''}"
    if not port.required and _json_default(port.default) is not None:
        schema["default"] = port.default
    return schema


def _node_schema(info: NodeType, names: list[str]) -> dict:
    return {
        "type": "object",
        "description": f"{info.label}: {info.summary}",
        "properties": {"type": {"enum": names}, **{n: _port_schema(p) for n, p in info.inputs.items()}},
        "required": ["type", *[n for n, p in info.inputs.items() if p.required]],
        "additionalProperties": False,
    }


def _type_names(registry: Registry) -> dict[str, tuple[NodeType, list[str]]]:
    """Definition name -> (node type, the `type:` values that select it)."""
    found: dict[str, tuple[NodeType, list[str]]] = {}
    for info in registry.all():
        latest = registry.get(info.name)
        names = [info.label] + ([info.name] if info is latest else [])
        found[info.label] = (info, names)
    return found


def _migrated_versions(registry: Registry) -> list[str]:
    """`Name@N` labels that validate through a migration (their inputs are the old ones: left unchecked)."""
    return [f"{name}@{v}" for name in registry.names() for v in registry.migratable_versions(name)]


def build_schema(registry: Optional[Registry] = None) -> dict:
    from nodegraph.core.registry import REGISTRY

    registry = registry or REGISTRY
    types = _type_names(registry)
    migrated = _migrated_versions(registry)
    all_names = sorted([n for _, names in types.values() for n in names] + migrated)
    definitions: dict[str, Any] = {
        "reference": {"type": "string", "pattern": REFERENCE,
                      "description": "`$node.port`, `$inputs.name`, `$state.name`, `$loop.item` or `$loop.index`"},
        "input": {
            "type": "object", "required": ["type"], "additionalProperties": False,
            "properties": {
                "type": {"type": "string", "description": "int, float, str, bool, list[T], Any, or a port "
                         "type such as Latent, Image, UNet",
                         "examples": ["int", "float", "str", "bool", "list[int]", "Latent", "Image"]},
                "default": {}, "description": {"type": "string"},
                "choices": {"type": "array"}, "min": {"type": "number"}, "max": {"type": "number"},
                "group": {"type": "string", "description": "where a form shows it, e.g. advanced (collapsed)"}},
        },
        "nodes": {"type": "object", "propertyNames": {"pattern": IDENTIFIER.pattern, "not": {
            "enum": ["inputs", "state", "loop"]}}, "additionalProperties": _ref("node")},
        "repeat": {
            "type": "object", "required": ["type", "over"], "additionalProperties": False,
            "description": "Runs `nodes` once per element of `over`, carrying `state` through `next`.",
            "properties": {"type": {"const": "repeat"}, "over": {}, "state": {"type": "object"},
                           "nodes": _ref("nodes"), "next": {"type": "object"},
                           "collect": {"type": "object", "additionalProperties": _ref("reference")},
                           "description": {"type": "string"}},
        },
        "include": {"type": "object", "required": ["type"],
                    "description": "A graph file or hf:// address used as a node; its inputs are its ports.",
                    "properties": {"type": {"type": "string", "pattern": INCLUDE}}},
    }
    rules = [{"if": {"properties": {"type": {"const": "repeat"}}}, "then": _ref("repeat")},
             {"if": {"properties": {"type": {"type": "string", "pattern": INCLUDE}}}, "then": _ref("include")}]
    if migrated:  # an older version, migrated when the graph loads: its old inputs are not checked here
        rules.append({"if": {"properties": {"type": {"enum": migrated}}}, "then": {}})
    for label, (info, names) in types.items():
        definitions[f"node:{label}"] = _node_schema(info, names)
        rules.append({"if": {"properties": {"type": {"enum": names}}}, "then": _ref(f"node:{label}")})
    definitions["node"] = {
        "type": "object", "required": ["type"],
        "properties": {"type": {"anyOf": [{"enum": ["repeat", *all_names]}, {"type": "string", "pattern": INCLUDE}],
                                "description": "A node type (`nodegraph nodes` lists them), `repeat`, or a graph "
                                "file / hf:// address"}},
        "allOf": rules,
    }
    return {
        "$schema": DRAFT,
        "title": "nodegraph graph",
        "description": "A nodegraph YAML graph (see docs/graphs.md).",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "nodegraph": {"const": 1, "description": "Format version."},
            "description": {"type": "string"},
            "requires": {"type": "array", "items": {"type": "string"},
                         "description": "PEP 508 requirements, e.g. nodegraph>=0.1, nodegraph-blur>=1.2"},
            "inputs": {"type": "object", "additionalProperties": _ref("input"),
                       "propertyNames": {"pattern": IDENTIFIER.pattern}},
            "nodes": _ref("nodes"),
            "outputs": {"type": "object", "additionalProperties": _ref("reference")},
        },
        "definitions": definitions,
    }


def cmd_schema(args) -> int:
    """Print the schema, or write it to --out in one step."""
    text = json.dumps(build_schema(), indent=1, sort_keys=False) + "\n"
    if args.out:
        import pathlib

        from nodegraph.hub.migrate import write_atomically

        out = pathlib.Path(args.out)
        write_atomically(out, text)
        print(f"wrote {out}")
    else:
        print(text, end="")
    return 0
