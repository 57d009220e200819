"""Sharing graphs: hf:// addresses, `pack`, the editor JSON Schema and `upgrade` (node-version migrations)."""
