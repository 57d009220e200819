"""Read a ComfyUI workflow — API format, UI (editor) format, or a ComfyUI PNG — into the API form.

The API form is ComfyUI's own `/prompt` body: `{node_id: {"class_type": str, "inputs": {name: literal |
[source_id, output_index]}}}`. UI workflows (`nodes` + `links` + positional `widgets_values`) are converted
the way ComfyUI's front end does it when queueing: Note/MarkdownNote dropped, Reroute followed, a
PrimitiveNode's value written into the inputs it feeds, muted nodes dropped, bypassed nodes passed through.

A workflow may come from a stranger: files are read as regular files within `max_input_bytes`, JSON with
bounded numbers (spec/reading.py), PNGs within the pixel limit, and every document's types are checked
(comfy/schema.py) before use, so anything malformed is a ComfyError naming the place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegraph.comfy.coverage import widget_names
from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.schema import check_api, check_ui
from nodegraph.comfy.subgraphs import flatten_subgraphs
from nodegraph.spec.limits import InputRefused, active_limits
from nodegraph.spec.reading import JsonProblem, load_json, open_image, read_limited
UI_ONLY = {"Note", "MarkdownNote"}
MODE_MUTED, MODE_BYPASSED = 2, 4


@dataclass
class Workflow:
    api: dict[str, dict[str, Any]]
    origin: str  # the file, for messages
    ui: dict | None = None  # the UI document when the source had one
    notes: list[str] = field(default_factory=list)


def is_comfy_file(path: str) -> bool:
    """A .json file, or a readable PNG without a nodegraph recipe (ComfyUI's, or one with no chunks at all, whose
    message then names both kinds)."""
    lower = path.lower()
    if lower.endswith(".json"):  # unless it is a nodegraph graph written as JSON (YAML's subset)
        try:
            doc = load_json(read_limited(path, active_limits().max_input_bytes, path, "workflow"))
            return not (isinstance(doc, dict) and "nodegraph" in doc)
        except InputRefused:  # read_workflow says what is wrong
            return True
    if not lower.endswith(".png"):
        return False
    chunks = _png_text(Path(path))
    return chunks is not None and "nodegraph" not in chunks


def _png_text(path: Path) -> dict[str, str] | None:
    import PIL.Image

    try:
        with open_image(path, str(path)) as img:
            return dict(getattr(img, "text", {}) or {})
    except (InputRefused, OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError):
        return None


def read_workflow(path: str | Path) -> Workflow:
    """The workflow in `path` (.json in either format, or a ComfyUI PNG) as API form; ComfyError if unreadable."""
    path = Path(path)
    origin = str(path)
    if path.suffix.lower() == ".png":
        try:
            with open_image(path, origin):
                pass
        except InputRefused as exc:
            raise ComfyError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None
        chunks = _png_text(path)
        if chunks is None:
            raise ComfyError(f"{origin}: cannot be read as a PNG image")
        if "prompt" in chunks:
            api = _parse_json(chunks["prompt"], f"{origin} (text chunk `prompt`)")
            ui = _parse_json(chunks["workflow"], f"{origin} (text chunk `workflow`)") if "workflow" in chunks else None
            return Workflow(_check_api(api, origin), origin, ui if isinstance(ui, dict) else None)
        if "workflow" in chunks:
            return from_document(_parse_json(chunks["workflow"], f"{origin} (text chunk `workflow`)"), origin)
        raise ComfyError(f"{origin} has no nodegraph metadata and no ComfyUI `prompt` or `workflow` text chunk "
                         f"(text chunks found: {', '.join(sorted(chunks)) or 'none'}); only PNGs written by "
                         f"`nodegraph run` or ComfyUI's SaveImage can be re-run")
    try:
        data = read_limited(path, active_limits().max_input_bytes, origin, "workflow")
    except InputRefused as exc:
        raise ComfyError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None
    return from_document(_parse_json(data, origin), origin)


def from_document(doc: Any, origin: str) -> Workflow:
    """A parsed JSON document in any of ComfyUI's shapes → Workflow."""
    if isinstance(doc, dict) and isinstance(doc.get("nodes"), list):  # (its API form is checked like a file's)
        return Workflow(_check_api(ui_to_api(doc, origin), origin), origin, doc)
    if isinstance(doc, dict) and isinstance(doc.get("prompt"), dict):  # a /prompt request body
        return Workflow(_check_api(doc["prompt"], origin), origin)
    return Workflow(_check_api(doc, origin), origin)


def _parse_json(text: str | bytes, origin: str) -> Any:
    try:
        return load_json(text)
    except JsonProblem as exc:
        raise ComfyError(f"{origin}:{exc.line}:{exc.col}: {exc.message}; a ComfyUI workflow is the .json saved "
                         f"by ComfyUI (Save or Export (API))") from None


def _check_api(doc: Any, origin: str) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict) or not doc:
        raise ComfyError(f"{origin}: not a ComfyUI workflow: expected an object of nodes "
                         f'({{"3": {{"class_type": "KSampler", "inputs": {{...}}}}}}) or a UI workflow with `nodes`')
    check_api(doc, origin)  # types first (comfy/schema.py): every list input is a link [node_id, output_index]
    api = {str(k): {"class_type": v["class_type"], "inputs": dict(v.get("inputs", {}))} for k, v in doc.items()}
    for node_id, entry in api.items():
        for name, value in entry["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) \
                    and not isinstance(value[1], bool) and isinstance(value[0], (str, int)):
                if str(value[0]) not in api:
                    raise ComfyError(f"{origin}: node {node_id} ({entry['class_type']}) input `{name}` links to "
                                     f"node {value[0]}, which is not in the workflow")
                entry["inputs"][name] = [str(value[0]), value[1]]
    return api


def ui_to_api(doc: dict, origin: str) -> dict[str, dict[str, Any]]:
    """ComfyUI's editor format → API form (what the front end's `graphToPrompt` sends)."""
    check_ui(doc, origin)  # types first (comfy/schema.py): below, every field read has its checked type
    doc = flatten_subgraphs(doc, origin)  # definitions.subgraphs: instances → their nodes (comfy/subgraphs.py)
    nodes = {str(raw["id"]): raw for raw in doc["nodes"]}
    links: dict[int, tuple[str, int]] = {}
    for link in doc.get("links") or []:
        if isinstance(link, list):
            links[link[0]] = (str(link[1]), int(link[2]))
        elif isinstance(link, dict) and {"id", "origin_id", "origin_slot"} <= set(link):
            links[link["id"]] = (str(link["origin_id"]), int(link["origin_slot"]))
    definitions = doc.get("definitions") or {}
    subgraphs = {s.get("id"): s.get("name") or s.get("id") for s in definitions.get("subgraphs") or []}

    def source(node_id: str, name: str, link_id) -> Any:
        """Follow a link through Reroutes and bypassed nodes to a real output, or to a PrimitiveNode's value."""
        seen = set()
        while True:
            if link_id not in links:
                raise ComfyError(f"{origin}: node {node_id} ({nodes[node_id]['type']}) input `{name}`: link "
                                 f"{link_id} is not in the workflow's `links` (a dangling link); reconnect it in "
                                 f"ComfyUI and save again")
            src_id, slot = links[link_id]
            src = nodes.get(src_id)
            if src is None:
                raise ComfyError(f"{origin}: node {node_id} ({nodes[node_id]['type']}) input `{name}`: link "
                                 f"{link_id} comes from node {src_id}, which is not in the workflow")
            if src_id in seen:
                raise ComfyError(f"{origin}: node {node_id} input `{name}`: Reroutes form a loop")
            seen.add(src_id)
            if src["type"] == "PrimitiveNode":
                values = src.get("widgets_values") or []
                values = list(values.values()) if isinstance(values, dict) else values
                if not values:
                    raise ComfyError(f"{origin}: PrimitiveNode {src_id} feeding node {node_id} input `{name}` "
                                     f"has no value")
                return ("value", values[0])
            if src["type"] == "Reroute" or src.get("mode") == MODE_BYPASSED:
                ins = [i for i in src.get("inputs") or [] if i.get("link") is not None]
                if src["type"] != "Reroute":
                    wanted = (src.get("outputs") or [{}])[slot].get("type") if slot < len(src.get("outputs") or []) else None
                    ins = [i for i in ins if i.get("type") == wanted] or ins
                if not ins:  # a bypassed or dangling-Reroute source: the front end leaves the input unset
                    return ("none", None)
                link_id = ins[0]["link"]
                continue
            return ("link", [src_id, slot])

    api: dict[str, dict[str, Any]] = {}
    for node_id, raw in nodes.items():
        kind = raw["type"]
        if kind in UI_ONLY or kind in ("Reroute", "PrimitiveNode") or raw.get("mode") in (MODE_MUTED, MODE_BYPASSED):
            continue
        inputs: dict[str, Any] = {}
        values = raw.get("widgets_values")
        names = widget_names(kind)
        if isinstance(values, dict):
            inputs.update(values)
        elif isinstance(values, list) and names is not None:
            for name, value in zip(names, values):
                if not name.startswith("__"):
                    inputs[name] = value
        for slot in raw.get("inputs") or []:
            if slot.get("link") is None:
                continue
            got = source(node_id, slot.get("name", "?"), slot["link"])
            if got[0] != "none":
                inputs[(slot.get("widget") or {}).get("name") or slot.get("name")] = got[1]
        # A subgraph instance is named by its definition (refused as a whole: subgraphs are not expanded yet).
        api[node_id] = {"class_type": f"subgraph {subgraphs[kind]!r}" if kind in subgraphs else kind, "inputs": inputs}
    if not api:
        raise ComfyError(f"{origin}: the workflow has no nodes to run")
    return api
