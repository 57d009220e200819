"""Routes of the page's node editor (web/static/js/editor/): the connection rule, open, validate, render, save.

The work is in editor_files.py; like every route they need the server's token (app.py's Guard).
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from nodegraph.serve.documents import error_json


class EditedGraph(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any] = Field(description="the graph as the editor holds it (the YAML's structure as JSON)")
    name: str = Field("", description="the graph's name: its file's text is kept where the document is unchanged")
    source: str = Field("", description="the graph it was opened from, when saved under a new name")


class SavedGraph(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any]
    stamp: Optional[str] = Field(None, description="the `stamp` GET /editor/graphs/NAME gave (null: a new graph)")
    layout: dict[str, Any] = Field(default_factory=dict, description="node positions, kept in a sidecar")
    draft: bool = Field(False, description="save a document that does not validate as a draft, with its errors")
    overwrite: bool = Field(False, description="write even though the file changed on disk since it was opened")
    source: str = Field("", description="the graph it was opened from (a new name keeps that file's comments)")


def connection_table() -> dict:
    """Every port type of the registered nodes (and the plain ones), and which may feed which, decided by the
    validator's own rule (core/types.py can_connect): the page asks this table, so both agree by construction."""
    from nodegraph.core.registry import REGISTRY
    from nodegraph.core.types import MARKERS, PRIMITIVES, PortType, can_connect, parse_type_name

    names = {*PRIMITIVES, *MARKERS, "Any", "list"} | {f"list[{n}]" for n in [*PRIMITIVES, *MARKERS, "Any"]}
    for t in REGISTRY.all():
        names |= {str(p.type) for p in t.inputs.values()} | {str(p) for p in t.outputs.values()}
    types: dict[str, PortType] = {}
    for name in sorted(names):
        try:
            types[name] = parse_type_name(name)
        except TypeError:
            continue
    return {"types": sorted(types),
            "connects": {src: [dst for dst in types if can_connect(types[src], types[dst])] for src in types}}


def add_editor_routes(app, service) -> None:
    from nodegraph.serve.editor_files import EditorFiles

    files = EditorFiles(service.documents, service.config.data)
    redact = service.redactor.errors_json

    def listed(problems) -> list[dict]:
        return redact({"message": "", "errors": [error_json(e) for e in problems]})["errors"]

    @app.get("/editor/types", summary="Port types and which may feed which (the validator's rule)")
    def types():
        return connection_table()

    @app.get("/editor/graphs", summary="The names of the graph files the editor can open (valid or not)")
    def names():
        return {"graphs": [{"name": name, "editable": files.editable(path)}
                           for name, path in service.documents.graph_files().items()]}

    @app.get("/editor/graphs/{name}", summary="A graph for the editor: its YAML, structure, stamp, layout")
    def open_graph(name: str):
        opened = files.open(name)
        opened["yaml"] = service.redactor.text(opened["yaml"])
        return opened

    @app.post("/editor/validate", summary="Validate an edited document: every problem, located at its node/port")
    async def validate(body: EditedGraph):
        def checked():  # both read files: on the pool, never on the event loop
            return files.check(body.document, body.name, body.source)[1], files.includes(body.document, body.name)

        problems, includes = await service.lookups.run(checked)
        return {"errors": listed(problems), "includes": includes}

    @app.post("/editor/yaml", summary="The YAML of an edited document (Download YAML; works when it is invalid)")
    async def as_yaml(body: EditedGraph):
        text, problems = await service.lookups.run(files.check, body.document, body.name, body.source)
        return {"yaml": text, "errors": listed(problems)}

    @app.put("/editor/graphs/{name}", summary="Save a graph (round trip keeping comments); 409 if it changed on "
             "disk, 422 if invalid unless saved as a draft")
    async def save(name: str, body: SavedGraph):
        saved = await service.lookups.run(files.save, name, body.document, body.stamp, body.layout, body.draft,
                                          body.overwrite, body.source)
        saved["errors"] = listed(saved["errors"])
        return saved
