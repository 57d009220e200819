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


DEFAULT_LIMITS = Limits()
