"""Checking a node written for an older version of its type: its inputs carried over by the type's migrations."""

from __future__ import annotations

from nodegraph.spec.checked import CheckedNode
from nodegraph.spec.document import Ref
from nodegraph.spec.errors import Reporter


def migrate_node(node: CheckedNode, migrations: list, reporter: Reporter, file: object) -> bool:
    """Carry `node` over to the installed version (with a `migrated_node` warning); False after reporting why
    it cannot be (a connected input that would need converting)."""
    from nodegraph.core.migration import MigrationProblem

    inputs, path = dict(node.spec.inputs), node.path
    try:
        for migration in migrations:
            inputs = migration.apply(inputs, is_literal=lambda v: not isinstance(v, Ref))
            if reporter.marks is not None:  # errors about a renamed input point where it is written
                for old, new in migration.rename.items():
                    for table in (reporter.marks.keys, reporter.marks.values):
                        if path + (old,) in table:
                            table.setdefault(path + (new,), table[path + (old,)])
    except MigrationProblem as exc:
        reporter.error("migration_failed", path + (exc.name,), exc.message,
                       "connect a value that already has the new meaning, then pin the new version", at_key=True)
        return False
    name = node.spec.type.partition("@")[0]
    first, last = migrations[0].from_version, migrations[-1].to_version
    reporter.warning("migrated_node", path + ("type",),
                     f"node `{node.id}` is written for {name}@{first}; it runs as {name}@{last} after the "
                     f"migration: {'; '.join(m.describe() for m in migrations)}",
                     f"`nodegraph upgrade {file}` rewrites the file for {name}@{last}")
    node.spec = node.spec.model_copy(update={"inputs": inputs})
    return True
