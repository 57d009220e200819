"""Prompts as users write them: A1111 weighting syntax, long prompts in 75-token chunks, clip skip."""

from nodegraph.prompts.a1111 import PromptError, parse

__all__ = ["PromptError", "parse"]
