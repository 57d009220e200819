"""The node-type registry: stable name + version -> node class.

Built-in node modules (every module of `nodegraph.nodes`) and third-party packages that declare the
entry-point group `nodegraph.nodes` are loaded lazily, on the first lookup, so `import nodegraph` stays
cheap. An entry point may name a module (its node classes are registered) or a node class.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import threading
import types
import warnings
from importlib import metadata

from nodegraph.core.node import NodeDefinitionError, NodeType, is_node_class

ENTRY_POINT_GROUP = "nodegraph.nodes"
BUILTIN_PACKAGE = "nodegraph.nodes"


class UnknownNodeType(LookupError):
    def __init__(self, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


class Registry:
    """Node types by name and version; `get("Add")` is the latest version, `get("Add@1")` pins one."""

    def __init__(self, *, builtins: bool = True, plugins: bool = True):
        self._types: dict[str, dict[int, NodeType]] = {}
        self._migrations: dict[str, dict[int, object]] = {}  # name -> from_version -> Migration
        self._want_builtins, self._want_plugins = builtins, plugins
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self.plugin_problems: list[str] = []

    def add(self, cls: type) -> NodeType:
        """Register a node class (decorated with `@node`); adding the same class twice is harmless."""
        if not is_node_class(cls):
            raise NodeDefinitionError(f"{cls!r} is not a node class; decorate it with @node(name, version)")
        info: NodeType = cls.node_type
        with self._lock:
            versions = self._types.setdefault(info.name, {})
            existing = versions.get(info.version)
            if existing is not None and existing.cls is not cls:
                raise NodeDefinitionError(
                    f"node type {info.label} is defined twice: by {_where(existing.cls)} and by {_where(cls)}; "
                    "give one of them another name or a new version")
            versions[info.version] = info
            for migration in info.migrations:
                self._migrations.setdefault(info.name, {})[migration.from_version] = migration
        return info

    def get(self, spec: str) -> NodeType:
        """Resolve `Name` (latest version) or `Name@N`; raise UnknownNodeType with a did-you-mean hint."""
        self._ensure_loaded()
        name, _, pinned = spec.partition("@")
        versions = self._types.get(name)
        if not versions:
            close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
            folded = [n for n in self.names() if n.lower() == name.lower()]
            guess = folded[0] if folded else (close[0] if close else "")
            hint = (f"did you mean `{guess}`?" if guess
                    else "`nodegraph nodes` lists every node type; plugins add more through the "
                         f"`{ENTRY_POINT_GROUP}` entry-point group")
            raise UnknownNodeType("unknown_node_type", f"unknown node type `{name}`", hint)
        if not pinned:
            return versions[max(versions)]
        if not pinned.isdigit() or int(pinned) not in versions:
            have = ", ".join(f"{name}@{v}" for v in sorted(versions))
            raise UnknownNodeType("unknown_node_version", f"node type `{name}` has no version `{pinned}`",
                                  f"available: {have}")
        return versions[int(pinned)]

    def resolve(self, spec: str, input_names=()) -> tuple[NodeType, list]:
        """The node type a graph's `type:` runs as, and the migrations its inputs need first.

        `Name@N` with version N installed: that version, no migration. `Name@N` with N gone: the newest
        version the migrations from N lead to. `Name` whose inputs fit the latest version: the latest. `Name`
        whose inputs fit only an older version (written before a change): that version's migrations.
        Raises UnknownNodeType when nothing fits.
        """
        name, _, pinned = spec.partition("@")
        if not pinned:
            return self.resolve_unpinned(name, input_names)
        try:
            return self.get(spec), []
        except UnknownNodeType:
            if not (pinned.isdigit() and self._migrations.get(name)):
                raise
        chain = self.migration_chain(name, int(pinned))
        if not chain:
            raise UnknownNodeType("unknown_node_version", f"node type `{name}` has no version `{pinned}` and no "
                                  f"migration from it", "available: " + ", ".join(
                                      f"{name}@{v}" for v in sorted(self._types[name])))
        return self._types[name][chain[-1].to_version], chain

    def resolve_unpinned(self, name: str, input_names) -> tuple[NodeType, list]:
        """For `Name` written without a version: migrations when only an older version's inputs fit."""
        latest = self.get(name)
        names = list(input_names)
        if all(n in latest.inputs for n in names):
            return latest, []
        for old in sorted(self._migrations.get(name, {}), reverse=True):
            chain = self.migration_chain(name, old)
            if not chain or chain[-1].to_version != latest.version:
                continue
            keys = names
            for migration in chain:
                keys = migration.keys(keys)
            if all(k in latest.inputs for k in keys):
                return latest, chain
        return latest, []

    def migratable_versions(self, name: str) -> list[int]:
        """Versions of `name` no longer installed that migrations still carry over to an installed one."""
        self._ensure_loaded()
        installed = self._types.get(name, {})
        return sorted(v for v in self._migrations.get(name, {}) if v not in installed and self.migration_chain(name, v))

    def migration_chain(self, name: str, from_version: int) -> list:
        """Migrations from `from_version` to the newest installed version they reach ([] if none)."""
        self._ensure_loaded()
        steps, version, chain = self._migrations.get(name, {}), from_version, []
        while version in steps and len(chain) < 1000:
            chain.append(steps[version])
            version = steps[version].to_version
        while chain and chain[-1].to_version not in self._types.get(name, {}):
            chain.pop()  # stop at the last version actually installed
        return chain

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._types)

    def all(self) -> list[NodeType]:
        """Every registered node type and version, sorted by name then version."""
        self._ensure_loaded()
        return [self._types[n][v] for n in sorted(self._types) for v in sorted(self._types[n])]

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:  # other threads wait here until every module is loaded (never see half a registry)
            if self._loaded or self._loading:  # _loading: this thread, re-entering while its modules import
                return
            self._loading = True
            try:
                if self._want_builtins:
                    self._load_builtins()
                if self._want_plugins:
                    self._load_entry_points()
            finally:
                self._loaded, self._loading = True, False

    def _load_builtins(self) -> None:
        package = importlib.import_module(BUILTIN_PACKAGE)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            try:
                self._add_module(importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}"))
            except Exception as exc:  # one broken module must not take every node type down with it
                self._problem(f"built-in node module `{BUILTIN_PACKAGE}.{info.name}` failed to load: "
                              f"{type(exc).__name__}: {exc}")

    def _problem(self, message: str) -> None:
        self.plugin_problems.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _add_module(self, module: types.ModuleType) -> None:
        for obj in vars(module).values():
            if is_node_class(obj) and obj.__module__ == module.__name__:
                self.add(obj)

    def _load_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                target = ep.load()
                if isinstance(target, types.ModuleType):
                    self._add_module(target)
                elif isinstance(target, (list, tuple)):
                    for cls in target:
                        self.add(cls)
                else:
                    self.add(target)
            except Exception as exc:  # a broken plugin must not break every other node type
                dist = ep.dist.name if ep.dist else "?"
                self._problem(f"node plugin `{ep.name} = {ep.value}` (package {dist}) failed to load: "
                              f"{type(exc).__name__}: {exc}")


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


REGISTRY = Registry()
