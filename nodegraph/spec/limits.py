"""Size limits that keep a hostile graph document from exhausting memory or time while it is loaded.

A graph may come from a stranger (the Hub, a server request, a PNG's metadata), so loading refuses, with a
located error, anything far beyond what a real graph needs. The shipped Stable Diffusion graph is about 6 kB,
nests 8 levels deep, has 20 nodes and one repeat; every default below leaves a wide margin over that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_document_bytes: int = 256 * 1024
    """Bytes of one graph file; checked before it is read, so a huge file is never loaded into memory. PyYAML
    parses about 100 kB/s (pure Python, which keeps line:col of everything): this bounds the time too."""
    max_yaml_values: int = 100_000
    """Values after YAML aliases are expanded: a "billion laughs" document is small text but a huge value."""
    max_depth: int = 64
    """Nesting of mappings and lists; PyYAML composes recursively, so 10,000 `[` would overflow the stack."""
    max_nodes: int = 2_000
    """Nodes in one graph file, repeat bodies included."""
    max_include_depth: int = 16
    """Graph files including graph files, counted from the file being loaded."""
    max_expanded_nodes: int = 100_000
    """Nodes a run plans once every include is expanded: a few small files that each use the next one 50
    times would otherwise plan 50**depth steps."""
    max_repeat_nesting: int = 8
    """A repeat inside a repeat inside ...; each level multiplies the work of a run."""
    max_list_length: int = 100_000
    """Elements of a list a node makes (`Range`), checked at validation when its inputs are literals and
    when it runs otherwise: a `repeat` over 10**9 elements would first build a 36 GB list."""
    max_image_pixels: int = 8192 * 8192
    """Pixels (width × height) of an image read from a file or an upload (init images, masks, PNG recipes),
    checked from its header before it is decoded: a 140 kB PNG can declare 12000×12000 pixels (5 GB)."""
    max_format_width: int = 1024
    """Width or precision in a text template (`{x:>1000000000}` would ask for gigabytes)."""
    max_input_bytes: int = 32 * 1024 * 1024
    """Bytes read from any other file given to validate/run (a ComfyUI workflow, a JSON document); only
    regular files are read (not a FIFO or /dev/zero), and at most this many bytes whatever `st_size` says."""
    max_bundle_files: int = 256
    """Files in a graph bundle (a PNG recipe, a server document), checked before any is written."""
    max_bundle_bytes: int = 4 * 1024 * 1024
    """Total characters of the files in a bundle, checked before any is written."""
    max_safetensors_header_bytes: int = 16 * 1024 * 1024
    """The JSON header of a safetensors file (a real checkpoint's is under 1 MB), checked before it is read."""
    max_safetensors_entries: int = 100_000
    """Tensors listed in one safetensors header (an SDXL checkpoint has about 2,500)."""
    max_json_number_chars: int = 100
    """Digits of one number in a JSON document (a workflow, a recipe, a header): a 5,000-digit integer is
    refused instead of being converted (which Python stops at 4,300 digits with an unlocated error)."""

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        """The defaults, each raised (or lowered) by `NODEGRAPH_<FIELD>` in the environment, e.g.
        `NODEGRAPH_MAX_IMAGE_PIXELS=150000000`; a malformed value is an InputRefused naming the variable."""
        import os

        environ = os.environ if environ is None else environ
        values = {}
        for name in cls.__dataclass_fields__:
            raw = environ.get(f"NODEGRAPH_{name.upper()}")
            if raw is None:
                continue
            try:
                values[name] = int(raw.replace("_", ""))
                if values[name] <= 0:
                    raise ValueError
            except ValueError:
                raise InputRefused("invalid_limit", f"NODEGRAPH_{name.upper()}={raw[:40]!r} is not a positive "
                                   "whole number", "unset it or give a number, e.g. 1000000") from None
        return cls(**values)


class InputRefused(ValueError):
    """Input refused before it could cost memory or time, or reach outside its place: `code`, `message` and
    `hint` (a located GraphError, a CLI error with exit 2, an HTTP 422). Messages never quote a file's
    content or a path the input was not allowed to name."""

    def __init__(self, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint

    def __str__(self) -> str:
        return self.message + (f" ({self.hint})" if self.hint else "")


DEFAULT_LIMITS = Limits()


def active_limits() -> Limits:
    """The limits in force for this process: the defaults with any `NODEGRAPH_MAX_*` override."""
    return Limits.from_env()
