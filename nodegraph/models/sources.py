"""Where a pipeline's files come from: a local folder, a hub repo, or a model shipped inside nodegraph.

A `Source` answers two questions, whatever the kind: which files a folder holds, and where a file is on local
disk (downloading it into the Hugging Face cache first for a hub repo). Everything above it (layouts, variants,
shards) is the same code for every kind of source.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from nodegraph.models.errors import CheckpointError

BUILTIN_ROOT = Path(__file__).resolve().parent.parent / "builtin"
BUILTIN_PREFIX = "builtin:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class Source:
    """A folder tree of checkpoint files; paths are '/'-separated and relative to its root ("" is the root)."""

    name: str  # as the user wrote it

    def files(self, folder: str) -> list[str]:
        """Names of the files directly inside `folder`; empty when there is no such folder."""
        raise NotImplementedError

    def has_folder(self, folder: str) -> bool:
        raise NotImplementedError

    def fetch(self, path: str) -> Path:
        """The local path of file `path`; CheckpointError naming it when it does not exist."""
        raise NotImplementedError

    def where(self, path: str) -> str:
        """How to name `path` in a message so that the user can find it."""
        raise NotImplementedError

    def read_json(self, path: str) -> dict[str, Any]:
        try:
            data = json.loads(self.fetch(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.where(path)} is not valid JSON ({e}); re-download or re-save it.") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{self.where(path)} should hold a JSON object, not {type(data).__name__}.")
        return data


class LocalSource(Source):
    def __init__(self, root: Path, name: str | None = None):
        self.root = root
        self.name = name or str(root)

    def __repr__(self) -> str:
        return f"LocalSource({str(self.root)!r})"

    def files(self, folder: str) -> list[str]:
        path = self.root / folder
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []

    def has_folder(self, folder: str) -> bool:
        return (self.root / folder).is_dir()

    def fetch(self, path: str) -> Path:
        local = self.root / path
        if not local.is_file():
            raise CheckpointError(f"missing file {local}: the folder {local.parent} holds "
                                  f"{_listing(self.files(str(Path(path).parent)))}.")
        return local

    def where(self, path: str) -> str:
        return str(self.root / path)


class HubSource(Source):
    """A hub repo at one revision, through huggingface_hub (its cache, token and `HF_HUB_OFFLINE`).

    The repo's file list comes from the hub, or, offline (or when the hub cannot be reached), from the cached
    snapshot of that revision; files are fetched one by one, so only what a component needs is downloaded.
    """

    def __init__(self, repo_id: str, revision: str | None = None):
        self.repo_id, self.revision = repo_id, revision
        self.name = repo_id if revision is None else f"{repo_id}@{revision}"
        self._paths = self._list_files()

    def __repr__(self) -> str:
        return f"HubSource({self.name!r})"

    def _list_files(self) -> set[str]:
        from huggingface_hub import HfApi, constants, snapshot_download
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

        online_error = None
        if not constants.HF_HUB_OFFLINE:
            try:
                return set(HfApi().list_repo_files(self.repo_id, revision=self.revision))
            except GatedRepoError:
                raise CheckpointError(f"hub repo `{self.repo_id}` is gated: accept its licence on the hub and log in "
                                      f"with `hf auth login`.") from None
            except RepositoryNotFoundError:
                raise CheckpointError(f"`{self.name}` is neither a local folder nor a hub repo (if it is private, "
                                      f"log in with `hf auth login`).") from None
            except RevisionNotFoundError:
                raise CheckpointError(f"hub repo `{self.repo_id}` has no revision `{self.revision}`.") from None
            except Exception as e:  # no network: fall back to the cache, as huggingface_hub's downloads do
                online_error = e
        try:
            snapshot = Path(snapshot_download(self.repo_id, revision=self.revision, local_files_only=True))
        except Exception:
            reason = f"the hub could not be reached ({online_error})" if online_error else "HF_HUB_OFFLINE is set"
            raise CheckpointError(
                f"`{self.name}` is not a local folder, and {reason}, and the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}) holds no snapshot of it at revision `{self.revision or 'main'}`. "
                f"Download it once while online, or pass the path of a local folder.") from None
        return {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()}

    def files(self, folder: str) -> list[str]:
        prefix = f"{folder}/" if folder else ""
        return sorted(p[len(prefix):] for p in self._paths if p.startswith(prefix) and "/" not in p[len(prefix):])

    def has_folder(self, folder: str) -> bool:
        return any(p.startswith(f"{folder}/") for p in self._paths)

    def fetch(self, path: str) -> Path:
        from huggingface_hub import hf_hub_download

        if path not in self._paths:
            folder = path.rpartition("/")[0]
            raise CheckpointError(f"missing file {self.where(path)}: {folder or 'the repo root'} holds "
                                  f"{_listing(self.files(folder))}.")
        try:
            return Path(hf_hub_download(self.repo_id, path, revision=self.revision))
        except Exception as e:
            raise CheckpointError(f"could not download {self.where(path)}: {e}") from None

    def where(self, path: str) -> str:
        return f"{self.name}:{path}"


def resolve_source(source: str | os.PathLike | Source, revision: str | None = None) -> Source:
    """A local folder, `builtin:<name>` (a model shipped in nodegraph/builtin/) or a hub repo id `org/name`.

    An existing local folder wins over a hub repo of the same name; `revision` applies to hub repos only.
    """
    if isinstance(source, Source):
        return source
    text = os.fspath(source)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX):]
        available = sorted(p.name for p in BUILTIN_ROOT.iterdir() if p.is_dir()) if BUILTIN_ROOT.is_dir() else []
        if name not in available:
            raise CheckpointError(f"no built-in model `{name}` (looked for the folder {BUILTIN_ROOT / name}); "
                                  f"built-in models: {_listing(available)}.")
        return LocalSource(BUILTIN_ROOT / name, text)
    path = Path(text).expanduser()
    if path.is_dir():
        return LocalSource(path.resolve(), text)
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the folder that holds the model (a diffusers pipeline folder "
                              f"or a component folder). A single-file checkpoint is loaded by `load_component`, "
                              f"not read as a folder.")
    if not _REPO_ID.match(text) or text.startswith((".", "~")):
        raise CheckpointError(f"no such folder: {path.resolve()} (and `{text}` is not a hub repo id like `org/name`).")
    return HubSource(text, revision)


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "nothing"
