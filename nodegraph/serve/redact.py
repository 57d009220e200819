"""What the server shows of its own files: nothing outside the folders a client may name.

Errors raised deep in a run name where they happened (`…/nodegraph/models/sources.py:116 in _list_files`),
the Hugging Face cache, the stored document's folder (`<data>/documents/<digest>/`). A client needs none of
that, and it tells a stranger how the machine is laid out. Every error message the server sends (a run's
`error`, a `failed` event, a refusal) passes through `Redactor.text`:

* a node error's `(at FILE:LINE in FUNCTION)`, a Python traceback and an object's `<… object at 0x…>` are
  dropped (the message stays);
* a stored document's folder is dropped (its files keep their own names, as in the document);
* the data folder, the hub cache, nodegraph's install, Python's and the home folder become `<data>`,
  `<hub cache>`, `<nodegraph>`, `<python>` and `~`;
* the folders a client may name (`--graphs`, `--models`, `<data>/inputs`) are kept as they are: file inputs
  are absolute paths inside them, so the client knows them already.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
from typing import Any, Iterable

WHERE = re.compile(r" \(at [^()\n]*?:\d+ in [\w<>.]+\)")
OBJECT = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")  # a Python object's repr: its address in memory
TRACEBACK = "Traceback (most recent call last):"


def hub_cache() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                     os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return home


class Redactor:
    def __init__(self, data: pathlib.Path, documents: pathlib.Path, allowed: Iterable[pathlib.Path]):
        import nodegraph

        hidden = [(documents, ""), (data, "<data>"), (pathlib.Path(hub_cache()), "<hub cache>"),
                  (pathlib.Path(nodegraph.__file__).parent, "<nodegraph>"), (pathlib.Path(sys.prefix), "<python>"),
                  (pathlib.Path(sys.base_prefix), "<python>"), (pathlib.Path(os.path.expanduser("~")), "~")]
        self._hidden = []
        for folder, label in hidden:
            for spelling in {str(folder), str(folder.resolve())}:
                if len(spelling) > 1:  # never `/` itself
                    self._hidden.append((spelling, label))
        self._hidden.sort(key=lambda item: -len(item[0]))  # the longest (innermost) folder first
        self._documents = {str(documents), str(documents.resolve())}
        self._allowed = sorted({str(p) for folder in allowed for p in (folder, folder.resolve())}, key=len,
                               reverse=True)

    def text(self, text: Any) -> Any:
        if not isinstance(text, str) or not text:
            return text
        if TRACEBACK in text:  # keep what came before it and the exception's own line
            head, _, trace = text.partition(TRACEBACK)
            last = [line for line in trace.strip().splitlines() if line.strip()][-1:]
            text = (head + " ".join(last)).strip()
        text = OBJECT.sub("", WHERE.sub("", text))
        kept = {}
        for index, folder in enumerate(self._allowed):  # shield the allowed folders from the replacements
            if folder in text:
                key = f"\x00{index}\x00"
                text, kept[key] = text.replace(folder, key), folder
        for folder in self._documents:  # `<documents>/<digest>/a.yaml` -> `a.yaml`
            text = re.sub(re.escape(folder) + r"/[0-9a-f]{64}/?", "", text)
        for folder, label in self._hidden:
            text = re.sub(re.escape(folder) + r"(?![\w.-])", label.replace("\\", "\\\\"), text)
        for key, folder in kept.items():
            text = text.replace(key, folder)
        return text

    def errors_json(self, body: dict) -> dict:
        """A `{message, errors: [...]}` answer with every text redacted."""
        body = {**body, "message": self.text(body.get("message"))}
        if isinstance(body.get("errors"), list):
            body["errors"] = [{k: self.text(v) if k in ("message", "hint", "file") else v for k, v in e.items()}
                              for e in body["errors"] if isinstance(e, dict)]
        return body
