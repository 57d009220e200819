"""Plugs the Hub into the lower layers, which cannot import it: hf:// graph addresses for the loader
(spec/remote.py) and the Hub fields of a PNG recipe (exec/png_metadata.py). `import nodegraph` imports this
module; the Hub code itself (hub/resolve.py, huggingface_hub) is imported on first use."""

from __future__ import annotations

from typing import Any

from nodegraph.exec import png_metadata
from nodegraph.spec import remote


def _hub_error(exc) -> remote.RemoteError:
    return remote.RemoteError(exc.code, exc.message, exc.hint)


class HubGraphs:
    """The `spec.remote` resolver of `hf://` addresses (nodegraph/hub/resolve.py does the work)."""

    def is_address(self, text: str) -> bool:
        return isinstance(text, str) and text.startswith("hf://")

    def parse(self, text: str) -> Any:
        from nodegraph.hub import resolve

        try:
            return resolve.parse_address(text)
        except resolve.HubError as exc:
            raise _hub_error(exc) from None

    def at(self, address: Any, revision: str) -> Any:
        return address.at(revision)

    def sibling(self, file: Any, relative: str) -> Any:
        from nodegraph.hub import resolve

        try:
            return file.pinned.sibling(relative)
        except resolve.HubError as exc:
            raise _hub_error(exc) from None

    def fetch(self, address: Any) -> Any:
        from nodegraph.hub import resolve

        try:
            return resolve.fetch(address)
        except resolve.HubError as exc:
            raise _hub_error(exc) from None


def hub_recipe_fields(graph) -> dict[str, Any]:
    """For a PNG recipe: a Hub graph's pinned `source` and its bundle (`graph`); `hub_pins` of Hub includes."""
    from nodegraph.hub.resolve import hub_bundle, hub_pins, pinned_source

    fields: dict[str, Any] = {}
    source = pinned_source(graph)  # a Hub graph: re-run from the exact commit that made the image
    if source is not None:
        fields.update(graph=hub_bundle(graph), source=source)
    pins = hub_pins(graph)  # Hub graphs used as nodes: the commits they were read at
    if pins:
        fields["hub_pins"] = pins
    return fields


HUB_GRAPHS = HubGraphs()
remote.register_resolver(HUB_GRAPHS)
png_metadata.register_recipe_fields(hub_recipe_fields)
