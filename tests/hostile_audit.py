"""What a hostile-input test asserts besides the message: nothing outside the allowed folders was opened and
no secret from the environment was printed.

`Honeypot` plants a secret file in a folder of its own, sets a fake HF_TOKEN, and arms an audit hook
(sys.addaudithook) that records every `open` of a path inside that folder while the test runs; `check(text)`
fails if the secret file's content or the token appears in any text the test collected.
"""

from __future__ import annotations

import os
import pathlib
import sys

FAKE_TOKEN = "hf_FAKEtokenNeverToBePrinted1234567890"
# content that looks like a path: huggingface_hub quotes such a text in its error when it reads it as a ref
SECRET = "/root/SECRET-honeypot-content-9f3a/commit"

_ARMED: list["Honeypot"] = []


def _audit(event: str, args) -> None:
    if event != "open" or not _ARMED or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
    except (TypeError, ValueError):
        return
    for pot in _ARMED:
        if path == pot.folder_text or path.startswith(pot.folder_text + os.sep):
            pot.opened.append(path)


sys.addaudithook(_audit)  # once per process: hooks cannot be removed, so it only acts while a pot is armed


class Honeypot:
    def __init__(self, folder: pathlib.Path, monkeypatch):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.folder_text = str(folder.resolve())
        self.file = folder / "honey"
        self.file.write_text(SECRET)
        (folder / "honey.yaml").write_text("nodes: {}\noutputs: {}\ndescription: " + SECRET + "\n")
        self.opened: list[str] = []
        monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
        monkeypatch.setenv("NODEGRAPH_TOKEN", FAKE_TOKEN)

    def __enter__(self) -> "Honeypot":
        _ARMED.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _ARMED.remove(self)

    def check(self, *texts: str) -> None:
        """No file in the honeypot folder was opened; no text shows the secret file's content or the token."""
        assert not self.opened, f"a file outside the allowed folders was opened: {self.opened}"
        for text in texts:
            assert SECRET not in text and "SECRET-honeypot" not in text, text
            assert FAKE_TOKEN not in text, text
