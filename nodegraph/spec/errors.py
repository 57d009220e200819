"""Validation errors: every problem in a graph document, located (`file:line:col`), coded and with a fix.

Validation collects all of them before anything runs; `ValidationFailed` carries the sorted list and
formats the report the CLI prints:

    graphs/sd.yaml:14:12: nodes.denoise.steps: Input should be greater than 0, got 0  [out_of_range]
      hint: `steps` of Denoise@1 must be > 0
    1 error in graphs/sd.yaml
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

PathPart = Union[str, int]
Path = tuple[PathPart, ...]


def dotted(path: Sequence[PathPart]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True)
class GraphError:
    code: str
    path: str
    message: str
    hint: str = ""
    file: str = ""
    line: Optional[int] = None
    col: Optional[int] = None
    severity: str = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @property
    def location(self) -> str:
        where = self.file or "<graph>"
        if self.line is not None:
            where += f":{self.line}:{self.col}"
        return where

    def sort_key(self):
        return (self.file, self.line is None, self.line or 0, self.col or 0, self.path, self.code, self.message)

    def __str__(self) -> str:
        label = "" if self.is_error else "warning: "
        path = f" {self.path}:" if self.path else ""
        text = f"{self.location}:{path} {label}{self.message}  [{self.code}]"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_report(issues: Sequence[GraphError], file: str = "") -> str:
    issues = sorted(issues, key=GraphError.sort_key)
    errors = sum(1 for i in issues if i.is_error)
    warnings = len(issues) - errors
    parts = [_count(errors, "error")] if errors else []
    if warnings:
        parts.append(_count(warnings, "warning"))
    summary = ", ".join(parts) or "no problems"
    lines = [str(i) for i in issues] + [f"{summary}{' in ' + file if file else ''}"]
    return "\n".join(lines)


class ValidationFailed(Exception):
    """A graph (or the values given for its inputs) is invalid; `errors` lists every problem found."""

    def __init__(self, issues: Sequence[GraphError], file: str = ""):
        self.issues = sorted(issues, key=GraphError.sort_key)
        self.file = file
        super().__init__(self.report())

    @property
    def errors(self) -> list[GraphError]:
        return [i for i in self.issues if i.is_error]

    @property
    def warnings(self) -> list[GraphError]:
        return [i for i in self.issues if not i.is_error]

    @property
    def codes(self) -> list[str]:
        return [e.code for e in self.errors]

    def report(self) -> str:
        """The errors (warnings only when there is no error: they are often consequences of errors)."""
        return format_report(self.errors or self.issues, self.file)


class Reporter:
    """Collects errors for one file, locating each document path through the file's marks."""

    def __init__(self, file: str, marks=None, issues: Optional[list[GraphError]] = None):
        self.file = file
        self.marks = marks
        self.issues: list[GraphError] = [] if issues is None else issues

    def error(self, code: str, path: Path, message: str, hint: str = "", *, at_key: bool = False,
              severity: str = "error") -> None:
        line = col = None
        if self.marks is not None:
            line, col = self.marks.locate(path, at_key=at_key)
        self.issues.append(GraphError(code, dotted(path), message, hint, self.file, line, col, severity))

    def warning(self, code: str, path: Path, message: str, hint: str = "", *, at_key: bool = True) -> None:
        self.error(code, path, message, hint, at_key=at_key, severity="warning")

    @property
    def has_errors(self) -> bool:
        return any(i.is_error for i in self.issues)
