"""Adapters applied on top of a loaded model without changing it: LoRA, textual-inversion embeddings."""
