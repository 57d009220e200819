"""The shapes of ComfyUI's workflow documents, checked with pydantic before the reader uses them.

A workflow may come from a stranger, so every field the reader touches is checked for its type first: a
node's `inputs` a list of slots, a link a list `[id, origin_id, origin_slot, target_id, target_slot, type]`
of integers, an API input a literal or `[node_id, output_index]`. Anything else is a ComfyError naming the
file and the place (`nodes[3].inputs[0].link: Input should be a valid integer`), never a TypeError later.
Fields the reader does not use are left unchecked, so files from newer ComfyUI versions still read.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter,
                      ValidationError, field_validator)

from nodegraph.comfy.errors import ComfyError

NodeId = Union[StrictInt, StrictStr]
Slot = Field(ge=0, le=10_000)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Widget(_Open):
    name: Optional[StrictStr] = None


class InputSlot(_Open):
    name: StrictStr = "?"
    link: Optional[StrictInt] = None
    type: Any = None
    widget: Optional[Widget] = None


class OutputSlot(_Open):
    type: Any = None


class UiNode(_Open):
    id: NodeId
    type: StrictStr
    mode: Optional[StrictInt] = 0
    inputs: Optional[list[InputSlot]] = None
    outputs: Optional[list[OutputSlot]] = None
    widgets_values: Optional[Union[list, dict]] = None


class LinkObject(_Open):
    id: StrictInt
    origin_id: NodeId
    origin_slot: StrictInt = Slot


class Subgraph(_Open):
    id: Optional[NodeId] = None
    name: Optional[StrictStr] = None


class Definitions(_Open):
    subgraphs: Optional[list[Subgraph]] = None


class UiWorkflow(_Open):
    nodes: list[UiNode]
    links: Optional[list[Optional[Union[list, LinkObject]]]] = None
    definitions: Optional[Definitions] = None

    @field_validator("links")
    @classmethod
    def _link_lists(cls, links):
        for i, link in enumerate(links or []):
            if isinstance(link, list) and not (len(link) >= 5 and _integer(link[0]) and _node_id(link[1])
                                               and _integer(link[2]) and link[2] >= 0):
                raise ValueError(f"link {i} is not [id, origin_id, origin_slot, target_id, target_slot, type] "
                                 f"(integers first)")
        return links


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _node_id(value) -> bool:
    return _integer(value) or isinstance(value, str)


Link = tuple[NodeId, Annotated[StrictInt, Field(ge=0, le=10_000)]]
"""An API input that reads another node's output: `[node_id, output_index]` (every list is a link)."""
ApiValue = Union[None, StrictBool, StrictInt, StrictFloat, StrictStr, Link, dict]


class ApiNode(_Open):
    class_type: StrictStr
    inputs: dict[StrictStr, ApiValue] = {}


_API = TypeAdapter(dict[StrictStr, ApiNode])


def _where(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(exc: ValidationError, origin: str, what: str) -> ComfyError:
    errors = exc.errors()
    first = errors[0]
    where = _where(tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith(("list[", "tuple[",
                                                                                                "function-")))))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    message = first["msg"].split("\n")[0][:200]
    return ComfyError(f"{origin}: not a ComfyUI {what} workflow: `{where or 'the document'}`: {message}{more}; "
                      "a ComfyUI workflow is the .json saved by ComfyUI (Save or Export (API))")


def check_ui(doc: Any, origin: str) -> UiWorkflow:
    """The UI (editor) document, its types checked; ComfyError naming the first wrong place."""
    try:
        return UiWorkflow.model_validate(doc)
    except ValidationError as exc:
        raise _problem(exc, origin, "UI") from None


def check_api(doc: Any, origin: str) -> dict[str, ApiNode]:
    """The API (`/prompt`) document, its types checked; ComfyError naming the first wrong place."""
    try:
        return _API.validate_python(doc)
    except ValidationError as exc:
        raise _problem(exc, origin, "API") from None
