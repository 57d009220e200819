"""Node-type versions that do not break old graphs: a migration turns inputs written for one version into
inputs of the next.

```python
@node("Blur", version=2, migrations=[
    Migration(1, 2, rename={"radius": "sigma"}, convert={"sigma": lambda radius: radius / 2},
              note="`radius` became `sigma` (half the radius)")])
class Blur(Node): ...
```
A graph pinned to `Blur@1`, or written for version 1 before the change (it uses `radius`), still validates
and runs as `Blur@2`, with a warning naming the migration; `nodegraph upgrade` rewrites the file. A
migration is code in the installed node package, never in the graph: a graph only names versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from nodegraph.core.node import NodeDefinitionError


class MigrationProblem(ValueError):
    """An input the migration cannot carry over by itself (a connected value that needs converting)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name, self.message = name, message


@dataclass(frozen=True)
class Migration:
    """How the inputs of `from_version` of a node type become inputs of `to_version`.

    rename: {old input name: new name}; convert: {new name: function of the old literal value} (a retyped
    or rescaled parameter); remove: inputs that no longer exist (their values are dropped); note: what
    changed, in words, shown in the warning.
    """

    from_version: int
    to_version: int
    rename: Mapping[str, str] = field(default_factory=dict)
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self):
        if not (isinstance(self.from_version, int) and isinstance(self.to_version, int)
                and 1 <= self.from_version < self.to_version):
            raise NodeDefinitionError(f"a Migration goes from an older version to a newer one, got "
                                      f"{self.from_version} -> {self.to_version}")

    def keys(self, names) -> list[str]:
        """Input names after the migration (what `apply` would produce for these names)."""
        return [self.rename.get(n, n) for n in names if n not in self.remove]

    def apply(self, inputs: Mapping[str, Any], is_literal: Callable[[Any], bool]) -> dict[str, Any]:
        """The migrated inputs, in the order they were written; raises MigrationProblem."""
        out: dict[str, Any] = {}
        for name, value in inputs.items():
            if name in self.remove:
                continue
            new = self.rename.get(name, name)
            if new in self.convert:
                if not is_literal(value):
                    raise MigrationProblem(name, f"`{name}` is connected to `{value}`, but version "
                                           f"{self.to_version} takes it converted ({self.describe()})")
                value = self.convert[new](value)
            out[new] = value
        return out

    def describe(self) -> str:
        if self.note:
            return self.note
        parts = [f"`{old}` renamed `{new}`" for old, new in self.rename.items()]
        parts += [f"`{name}` converted" for name in self.convert if name not in self.rename.values()]
        parts += [f"`{name}` removed" for name in self.remove]
        return ", ".join(parts) or "no input changes"
