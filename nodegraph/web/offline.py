"""The page's first run works offline: a model input whose default is a hub repo id this machine has not
downloaded is offered `builtin:digits` instead, when the graph says it takes it (its description names it).

Reported by GET /graphs as the input's `offline` value; the page fills it in and says why (form.js).
"""

from __future__ import annotations

import os
import re

BUILTIN_MODEL = "builtin:digits"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def hub_snapshot_exists(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds any snapshot of `repo_id` (a model repo)."""
    from huggingface_hub import constants

    snapshots = os.path.join(constants.HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"), "snapshots")
    return os.path.isdir(snapshots) and any(os.scandir(snapshots))


def offline_model(decl) -> str | None:
    """`builtin:digits` for a declaration whose default is an uncached hub id and whose description offers
    `builtin:digits`; None otherwise (the declared default stays)."""
    default = decl.default
    if decl.type != "str" or not isinstance(default, str) or BUILTIN_MODEL not in (decl.description or ""):
        return None
    if not _REPO_ID.match(default) or os.path.exists(default) or hub_snapshot_exists(default):
        return None
    return BUILTIN_MODEL
