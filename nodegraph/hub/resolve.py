"""`hf://OWNER/REPO[@REVISION]/PATH.yaml`: graph files on the Hugging Face Hub, read through huggingface_hub.

The address syntax is huggingface_hub's own `HfFileSystem` one (`hf://datasets/OWNER/REPO@REV/PATH` for a
dataset repo). Files come from huggingface_hub's cache, which it fills on demand and which `HF_HUB_OFFLINE=1`
restricts to what is already there. A graph file is data: fetching one never imports or runs anything, and
its node types resolve only through the node types installed here.

Every fetched file reports the commit it came from, so includes inside it are read from that same commit
(never from a branch that moved meanwhile) and a run can record exactly which version made an image.
"""

from __future__ import annotations

import pathlib
import posixpath
import re
from dataclasses import dataclass, replace
from typing import Optional
from urllib.parse import quote

from nodegraph.spec.locations import COMMIT, LocationError, check_repo_path, check_revision, shown, summarise

PREFIX = "hf://"
_ADDRESS = re.compile(r"^hf://(?:(?P<kind>datasets|spaces)/)?(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"
                      r"(?:@(?P<revision>[^/@]+))?/(?P<path>[^@]+)$")
_KINDS = {None: "model", "datasets": "dataset", "spaces": "space"}
_COMMIT = COMMIT
_HOW = ("write hf://OWNER/REPO/PATH.yaml, with @REVISION after the repo to pin a branch, tag or commit "
        "(hf://datasets/OWNER/REPO/... for a dataset repo)")


class HubError(Exception):
    """A graph address that cannot be read; `code`, `message` and `hint` become a located GraphError."""

    def __init__(self, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def is_hub_address(text: str) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


@dataclass(frozen=True)
class HubAddress:
    repo_id: str
    path: str
    revision: Optional[str] = None
    repo_type: str = "model"

    def __str__(self) -> str:
        kind = {"dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        at = f"@{quote(self.revision, safe='')}" if self.revision else ""
        return f"{PREFIX}{kind}{self.repo_id}{at}/{self.path}"

    def at(self, revision: str) -> HubAddress:
        return replace(self, revision=revision)

    def sibling(self, relative: str) -> HubAddress:
        """The file `relative` names from this file's folder, in the same repo at the same revision."""
        if relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
            raise HubError("include_outside", f"`{relative}`: a graph from the Hub cannot include an absolute path",
                           "write the path relative to the including file, inside the same repo")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(self.path), relative))
        try:  # decoded and checked like any path in a repo (no escape hides a `..`)
            joined = posixpath.normpath(check_repo_path(joined)) if not joined.startswith("..") else joined
        except LocationError:
            joined = ".."
        if joined == ".." or joined.startswith("../"):
            raise HubError("include_outside", f"`{relative}` points outside the repo {self.repo_id}",
                           "an include inside a Hub graph must stay in its repo; use an hf:// address for another")
        return replace(self, path=joined)


def parse_address(text: str) -> HubAddress:
    """The address's parts, each checked in its decoded form (spec/locations.py): the revision a branch, tag
    or commit, the path relative inside the repo. HubError otherwise, quoting the address escaped and cut."""
    match = _ADDRESS.match(text) if isinstance(text, str) and len(text) <= 1024 else None
    if not match:
        raise HubError("invalid_hub_address", f"`{shown(str(text))}` is not a graph address on the Hub", _HOW)
    try:
        path = check_repo_path(match["path"])
        revision = check_revision(match["revision"]) if match["revision"] else None  # `refs%2Fpr%2F1`, as HfFileSystem
    except LocationError as exc:
        raise HubError("invalid_hub_address", f"`{shown(text)}`: {exc.message}", f"{exc.hint}; {_HOW}") from None
    if not path.endswith((".yaml", ".yml")):
        raise HubError("invalid_hub_address", f"`{shown(text)}` is not a graph address on the Hub", _HOW)
    return HubAddress(match["repo"], path, revision, _KINDS[match["kind"]])


@dataclass(frozen=True)
class HubFile:
    """A fetched graph file: its address as written, the commit it resolved to, and its cached copy."""

    address: HubAddress
    commit: str
    local_path: pathlib.Path

    @property
    def pinned(self) -> HubAddress:
        """The address at the exact commit: it names these bytes forever."""
        return self.address.at(self.commit)


def fetch(address: HubAddress) -> HubFile:
    """Download (or find in the cache) one file; HubError says why it cannot be read and what to do."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    revision = address.revision or "main"
    try:
        local = pathlib.Path(hf_hub_download(address.repo_id, address.path, repo_type=address.repo_type,
                                             revision=address.revision))
    except GatedRepoError:
        raise HubError("hub_access", f"`{address}`: the repo is gated", "accept its terms on the Hub and log in "
                       "with `hf auth login`") from None
    except RepositoryNotFoundError:
        raise HubError("hub_not_found", f"`{address}`: no repo {address.repo_id} on the Hub",
                       "check the owner and name (a private repo needs `hf auth login`)") from None
    except RevisionNotFoundError:
        raise HubError("hub_not_found", f"`{address}`: the repo has no revision `{revision}`",
                       "use a branch, tag or commit hash of that repo") from None
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: first)
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        raise HubError("hub_offline", f"`{address}`: {why} and huggingface_hub's cache has no copy of "
                       f"{address.path} at `{revision}`",
                       "fetch it once while online, or pin a revision that is cached") from None
    except EntryNotFoundError:
        raise HubError("hub_not_found", f"`{address}`: the repo has no file {address.path} at `{revision}`",
                       "check the path (it is relative to the repo root)") from None
    except Exception as exc:  # network failures, malformed repo ids: summarised, never echoed (it may quote a
        # path or a file's content)
        raise HubError("hub_error", f"`{address}`: {summarise(exc, 'reading it from the Hub')}",
                       "check the address; run `hf download` on it to see huggingface_hub's own error") from None
    return HubFile(address, _commit_of(local, address.path), local)


def _commit_of(local: pathlib.Path, path: str) -> str:
    """huggingface_hub's cache lays files out as .../snapshots/<commit>/<path in repo>."""
    snapshot = local.parents[len(pathlib.PurePosixPath(path).parts) - 1]
    if snapshot.parent.name != "snapshots" or not _COMMIT.match(snapshot.name):
        raise HubError("hub_error", f"cannot tell which commit `{path}` comes from (huggingface_hub's cache is "
                       "not laid out as expected)", "")
    return snapshot.name


def pinned_source(graph) -> Optional[str]:
    """`hf://OWNER/REPO@<commit>/PATH.yaml` for a graph loaded from the Hub (None for any other graph)."""
    hub = getattr(getattr(getattr(graph, "checked", None), "source", None), "hub", None)
    return str(hub.pinned) if hub is not None else None


def hub_pins(graph) -> dict[str, str]:
    """{hf:// address as written in a `type:`: the commit it was read at} for every Hub graph used as a node.

    Recorded in PNG metadata, so a re-run reads those graphs at those commits even if a branch moved.
    """
    pins: dict[str, str] = {}
    todo = [graph.checked]
    while todo:
        nodes = list(todo.pop().nodes.values())
        while nodes:
            node = nodes.pop()
            if node.subgraph is not None:
                if is_hub_address(node.spec.type) and node.subgraph.source.hub is not None:
                    pins[str(node.subgraph.source.hub.address)] = node.subgraph.source.hub.commit
                todo.append(node.subgraph)
            if node.body is not None:
                nodes.extend(node.body.nodes.values())
    return pins


def hub_bundle(graph) -> dict:
    """The Hub graph and the files it includes from its own repo, keyed by their paths in the repo.

    Kept in PNG metadata next to the pinned address, so the recipe can be read even without the Hub.
    """
    from nodegraph.spec.bundle import BUNDLE_FORMAT

    main = graph.checked.source.hub
    files: dict[str, str] = {}

    def visit(checked) -> None:
        hub = checked.source.hub
        if hub is not None and hub.address.repo_id == main.address.repo_id and hub.address.path not in files:
            files[hub.address.path] = hub.local_path.read_text(encoding="utf-8")
        nodes = list(checked.nodes.values())
        while nodes:
            node = nodes.pop()
            if node.subgraph is not None:
                visit(node.subgraph)
            if node.body is not None:
                nodes.extend(node.body.nodes.values())

    visit(graph.checked)
    return {"format": BUNDLE_FORMAT, "main": main.address.path, "files": files}
