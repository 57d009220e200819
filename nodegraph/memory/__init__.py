"""Memory as a feature: sizes (`--max-memory 6GB`), what a process uses now, and the decisions a memory budget
drives (tiling the VAE). See docs/memory.md. Nothing here imports torch at module level."""

from nodegraph.memory.sizes import SizeError, format_size, parse_size

__all__ = ["SizeError", "format_size", "parse_size"]
