"""Grid expansion: `--grid` axes (lists, `A..B` ranges, `@file` lines) → the batch's items, each checked up front.

An axis is one graph input and the values it takes. Items are the product of the axes (the first axis varies
slowest, like nested loops written in order) or, with `zip`, the axes side by side. `repeat` makes N items of
each grid point with the seed advanced by one each (A1111's "batch count"). Every value is checked against
the graph before the first item runs, and a bad one is reported where it was written: `prompts.txt:17` for a
line of an `@file`, `--grid steps` for a command-line value.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from nodegraph.spec.errors import GraphError, Reporter, ValidationFailed

MAX_ITEMS = 1_000_000  # a typo such as `seed=0..1e12` must fail with a message, not exhaust memory
RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
COMMAND_LINE = "<command line>"


@dataclass(frozen=True)
class Axis:
    """One graph input and its values; `origins[k]` says where value k was written (for error messages)."""

    name: str
    values: tuple
    origins: tuple = ()
    files: tuple = ()  # per value: (file, line) of an `@file` line, else None

    def origin(self, k: int) -> str:
        return self.origins[k] if self.origins else f"grid `{self.name}` value {self.values[k]!r}"


@dataclass(frozen=True)
class Item:
    """One run of the graph: its index in the batch and every graph input value it runs with."""

    index: int
    inputs: dict = field(hash=False)


class GridError(ValueError):
    """A `--grid` option that cannot be read (bad syntax, unreadable file, too many items)."""


def _split_commas(text: str) -> list[str]:
    r"""`a,b\,c` → [`a`, `b,c`]: a value holding a comma escapes it (or goes in an `@file`)."""
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current += ch if ch == "," else "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current + ("\\" if escaped else ""))
    return parts


def parse_grid_option(text: str, convert: Callable[[str, str], Any], *, cwd: str = ".") -> Axis:
    """One `--grid NAME=VALUES` option: `v1,v2,...`, `A..B` (integers, both ends included) or `@FILE`.

    `convert(name, raw)` turns one text value into the input's type (raising ValueError with the reason);
    its failures become located errors later, so they are kept as `_Unparsed` values here.
    """
    name, eq, raw = text.partition("=")
    name = name.strip()
    if not eq or not name:
        raise GridError(f"`--grid {text}` is not NAME=VALUES; e.g. `--grid seed=0..9`, "
                        "`--grid scheduler=ddim,euler` or `--grid prompt=@prompts.txt`")
    if raw.startswith("@"):
        return _file_axis(name, raw[1:], convert, cwd)
    ranged = RANGE.match(raw)
    if ranged:
        start, stop = int(ranged.group(1)), int(ranged.group(2))
        if stop < start:
            raise GridError(f"`--grid {text}`: the range {start}..{stop} is empty; write the smaller end first")
        if stop - start + 1 > MAX_ITEMS:
            raise GridError(f"`--grid {text}`: {stop - start + 1:,} values is more than the {MAX_ITEMS:,} "
                            "items a batch may have")
        values = range(start, stop + 1)
        return Axis(name, tuple(_convert(convert, name, str(v)) for v in values),
                    tuple(f"`--grid {name}` value {v}" for v in values))
    parts = _split_commas(raw)
    return Axis(name, tuple(_convert(convert, name, p) for p in parts),
                tuple(f"`--grid {name}={p}`" for p in parts))


def _file_axis(name: str, path: str, convert, cwd: str) -> Axis:
    full = os.path.join(cwd, path)
    try:
        with open(full, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in itertools.islice(f, MAX_ITEMS + 1)]
    except FileNotFoundError:
        raise GridError(f"`--grid {name}=@{path}`: no such file (the path is relative to the current folder)")
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"`--grid {name}=@{path}`: cannot read it ({exc})") from None
    if len(lines) > MAX_ITEMS:
        raise GridError(f"`--grid {name}=@{path}`: more than {MAX_ITEMS:,} lines")
    kept = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]  # blank lines separate, never count
    if not kept:
        raise GridError(f"`--grid {name}=@{path}`: the file has no values (one value a line)")
    return Axis(name, tuple(_convert(convert, name, line) for _, line in kept),
                tuple(f"line {n} of {path}" for n, _ in kept), tuple((path, n) for n, _ in kept))


@dataclass(frozen=True)
class _Unparsed:
    """A text value that could not be converted to its input's type; reported by `plan_items`."""

    raw: str
    reason: str


def _convert(convert, name: str, raw: str) -> Any:
    try:
        return convert(name, raw)
    except ValueError as exc:
        return _Unparsed(raw, str(exc))


def count_items(axes: list[Axis], zip_axes: bool, repeat: int) -> int:
    if not axes:
        return repeat
    sizes = [len(a.values) for a in axes]
    return (sizes[0] if zip_axes else math.prod(sizes)) * repeat


def expand(axes: list[Axis], zip_axes: bool = False, repeat: int = 1) -> Iterable[dict[str, int]]:
    """Per item, {axis name: value position}: the product (first axis slowest) or the zip, each `repeat` times."""
    names = [a.name for a in axes]
    ranges = [range(len(a.values)) for a in axes]
    combos = zip(*ranges) if zip_axes else itertools.product(*ranges)
    for combo in combos:
        for _ in range(repeat):
            yield dict(zip(names, combo))


def _structure_problems(graph, axes: list[Axis], sets: dict, zip_axes: bool, repeat: int, problem) -> None:
    """Problems of the batch's shape: names, repeated axes, zip lengths, `--repeat`, required inputs."""
    from nodegraph.spec.document import NO_DEFAULT

    inputs = graph.checked.spec.inputs
    if repeat < 1:
        problem("invalid_value", "--repeat", f"`--repeat {repeat}`: must be at least 1", "e.g. `--repeat 4`")
    names = [a.name for a in axes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problem("duplicate_axis", f"--grid {name}", f"input `{name}` has more than one `--grid` axis",
                "give all its values in one axis, e.g. `--grid seed=0..9`")
    for name in sorted(set(names) & set(sets)):
        problem("duplicate_axis", f"--grid {name}", f"input `{name}` is given by both `--set` and `--grid`",
                "keep one of them")
    for name in [*sets, *dict.fromkeys(names)]:
        if name not in inputs:
            close = difflib.get_close_matches(str(name), list(inputs), n=1)
            problem("unknown_graph_input", name, f"{graph.file} has no input `{name}`",
                    f"did you mean `{close[0]}`?" if close else f"its inputs: {', '.join(inputs) or 'none'}")
    if zip_axes and len({len(a.values) for a in axes}) > 1:
        sizes = ", ".join(f"`{a.name}` {len(a.values)}" for a in axes)
        problem("zip_length_mismatch", "--zip", f"`--zip` needs axes of one length; they have {sizes}",
                "give every axis the same number of values, or drop `--zip` for their product")
    if repeat > 1 and "seed" in names:
        problem("duplicate_axis", "--repeat", "`--repeat` advances `seed`, which is also a `--grid` axis",
                "use a longer seed range instead, e.g. `--grid seed=0..99`")
    if repeat > 1 and "seed" not in inputs:
        problem("invalid_value", "--repeat", f"`--repeat` advances the `seed` input and {graph.file} has none",
                "give the varying input as a `--grid` axis instead")
    for name, decl in inputs.items():
        if decl.default is NO_DEFAULT and name not in sets and name not in names:
            problem("missing_graph_input", f"inputs.{name}", f"input `{name}` is required and was not given",
                    f"give it with `--set {name}=...` or a `--grid {name}=...` axis")


def plan_items(graph, axes: list[Axis], sets: Optional[Mapping[str, Any]] = None, *, zip_axes: bool = False,
               repeat: int = 1, set_origin: str = "value") -> list[Item]:
    """Every item of the batch with all its input values, checked against the graph before anything runs.

    Raises ValidationFailed listing every problem: unknown or repeated input names, axes of unequal length
    under `zip`, required inputs given nowhere, and each value (of `sets` and of every axis) that the graph
    input or a node port it feeds rejects — each located where the user wrote it.
    """
    from nodegraph.spec.values import bind_input_values, check_value_for_input

    checked = graph.checked
    sets = dict(sets or {})
    issues: list[GraphError] = []

    def problem(code: str, where: str, message: str, hint: str = "", file: str = COMMAND_LINE,
                line: Optional[int] = None) -> None:
        issues.append(GraphError(code, where, message, hint, file, line, 1 if line else None))

    _structure_problems(graph, axes, sets, zip_axes, repeat, problem)
    total = count_items(axes, zip_axes, max(repeat, 1))
    if total > MAX_ITEMS:  # listing the items would exhaust memory before saying anything useful
        problem("too_many_items", "--grid", f"the grid makes {total:,} items, more than {MAX_ITEMS:,}",
                "split the batch into several runs")
        raise ValidationFailed(issues, graph.file)

    def check(name: str, value: Any, label: str, file: str, line: Optional[int]) -> Any:
        if isinstance(value, _Unparsed):
            problem("invalid_value", name, f"{label}: {value.reason}", f"`{name}` is declared as "
                    f"{checked.input_types[name]}", file, line)
            return value
        r = Reporter(file)
        converted = check_value_for_input(checked, name, value, label, r, ("inputs", name))
        issues.extend(dataclasses.replace(i, path=name, line=line, col=1 if line else None) for i in r.issues)
        return converted

    known = checked.spec.inputs
    fixed = {name: check(name, value, f"`{set_origin} {name}={value!r}`" if set_origin != "value" else
                         f"value {value!r} for input `{name}`", COMMAND_LINE, None)
             for name, value in sets.items() if name in known}
    columns = {}
    for axis in (a for a in axes if a.name in known):
        column = []
        for k, value in enumerate(axis.values):
            file, line = axis.files[k] if axis.files else (COMMAND_LINE, None)
            shown = value.raw if isinstance(value, _Unparsed) else value
            column.append(check(axis.name, value, f"{shown!r}" if axis.files else axis.origin(k), file, line))
        columns[axis.name] = column
    if issues:
        raise ValidationFailed(issues, graph.file)
    # Each input is checked on its own (declaration and the ports it feeds), so values that passed one by
    # one make valid items in any combination; the executor checks each item again when it runs.
    base = bind_input_values(checked, fixed, require_all=False)
    if repeat > 1:  # the largest seed the repeats reach must be allowed too
        check("seed", (base["seed"] or 0) + repeat - 1, f"`--repeat {repeat}` (seed up to "
              f"{(base['seed'] or 0) + repeat - 1})", COMMAND_LINE, None)
        if issues:
            raise ValidationFailed(issues, graph.file)
    items = []
    for index, positions in enumerate(expand(axes, zip_axes, repeat)):
        inputs = {**base, **{name: columns[name][k] for name, k in positions.items()}}
        if repeat > 1:
            inputs["seed"] = (base["seed"] or 0) + index % repeat
        items.append(Item(index, inputs))
    return items
