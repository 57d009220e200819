"""`embedding:NAME` in a ComfyUI prompt: the file looked up as ComfyUI looks it up, its vectors put in the prompt.

Facts from comfy/sd1_clip.py (`SDTokenizer.tokenize_with_weights`, `_try_get_embedding`, `load_embed`):
* a word of the prompt that starts with `embedding:` names a file in the `embeddings/` folders or any folder
  below them: NAME itself, else NAME + `.safetensors`, `.pt`, `.bin` (in that order); a name that would leave the
  folder is not looked up;
* not found: NAME stripped of commas is tried, the commas then read as text; still not found, the word is dropped
  and a warning says so ("embedding:NAME does not exist, ignoring");
* the file's vectors (n, width) take the place of the word as n tokens of the word's weight, grouped like one
  word when chunks of 75 are made; an embedding of another width is dropped with a warning.

nodegraph puts the vectors in the text encoder's token table of a copy (models/adapters/textual_inversion.py,
diffusers' `load_textual_inversion` rule), so the encoder computes exactly what it computes for a word.
Pickled files (.pt, .bin) are read only when allowed (`allow_pickle`, as for checkpoints), with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

IDENTIFIER = "embedding:"
EXTENSIONS = (".safetensors", ".pt", ".bin")


class EmbeddingWarning(UserWarning):
    """An `embedding:` word that was dropped (file missing, or made for another text encoder)."""


def find_embedding(name: str, folders: list[str]) -> Path | None:
    """The file ComfyUI reads for `embedding:<name>`: in each folder and the folders below it, NAME or
    NAME + one of EXTENSIONS; None when no folder has it."""
    for root in folders:
        root_path = Path(root).resolve()
        if not root_path.is_dir():
            continue
        below = sorted(Path(d) for d, _, _ in os.walk(root_path, followlinks=True))
        for folder in below:
            path = (folder / name).resolve()
            if os.path.commonpath((folder, path)) != str(folder):
                continue  # `..` or an absolute name: never outside the folder
            for candidate in (path, *(Path(f"{path}{ext}") for ext in EXTENSIONS)):
                if candidate.is_file():
                    return candidate
    return None


class PromptEmbeddings:
    """Resolves `embedding:` words for one text encoder while a prompt is tokenized; `encoder` is then the text
    encoder whose token table holds every embedding found (the given one when none was)."""

    def __init__(self, encoder, tokenizer, folders: list[str], key: str, allow_pickle: bool, where: str):
        self.encoder, self.tokenizer = encoder, tokenizer
        self.folders, self.key, self.allow_pickle, self.where = folders, key, allow_pickle, where
        self.known: dict[str, list[int] | None] = {}
        self.found: dict[str, bool] = {}

    def word(self, word: str) -> tuple[list[int] | None, str]:
        """(token ids of the embedding `word` names, or None if it is dropped; text left over to tokenize)."""
        name = word[len(IDENTIFIER):].strip("\n")
        ids, leftover = self.ids(name), ""
        if ids is None and len(name.strip(",")) < len(name):  # `embedding:name,`: the comma is text
            stripped = name.strip(",")
            ids, leftover = (self.ids(stripped) if stripped else None), name[len(stripped):]
        if ids is None and not self.found.get(name.strip(",")):
            warnings.warn(f"{self.where}: embedding:{name} does not exist in {_places(self.folders)}, ignoring "
                          f"(as ComfyUI does)", EmbeddingWarning, stacklevel=2)
        return ids, leftover

    def ids(self, name: str) -> list[int] | None:
        if name not in self.known:
            path = find_embedding(name, self.folders) if name else None
            self.found[name] = path is not None
            self.known[name] = None if path is None else self._add(name, path)
        return self.known[name]

    def _add(self, name: str, path: Path) -> list[int] | None:
        from nodegraph.models.adapters.textual_inversion import add_embedding, read_embedding
        from nodegraph.models.errors import CheckpointError

        try:
            _, tables = read_embedding(str(path), self.allow_pickle)
        except CheckpointError as exc:
            hint = " (run with `--set allow_pickle=true` if you trust it)" if "pickle" in str(exc) else ""
            raise ValueError(f"{self.where}: embedding:{name}: {exc}{hint}") from None
        vectors = tables.get(self.key, tables.get(""))
        width = self.encoder.get_input_embeddings().embedding_dim
        if vectors is None or vectors.shape[-1] != width:
            got = "no vectors for this encoder" if vectors is None else f"{vectors.shape[-1]}-wide vectors"
            warnings.warn(f"{self.where}: embedding:{name} ({path.name}) holds {got}, this text encoder takes "
                          f"{width}; ignored (as ComfyUI does)", EmbeddingWarning, stacklevel=3)
            return None
        token = f"<comfy-embedding-{len(self.known)}>"
        self.encoder, self.tokenizer = add_embedding(self.encoder, self.tokenizer, token, vectors, str(path))
        names = [token] + [f"{token}_{k}" for k in range(1, vectors.shape[0])]
        return list(self.tokenizer.convert_tokens_to_ids(names))


def _places(folders: list[str]) -> str:
    return ", ".join(folders) if folders else "no embeddings folder (pass --models DIR holding embeddings/)"
