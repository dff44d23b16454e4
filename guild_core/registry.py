"""What plugins register: optimizers, pruners, batch formats, remote
types, executors, resolvers and filter extensions.

The core owns the names. Each plugin's hook is called with a ``register``
callback bound to that plugin, so a name claimed twice is an error that
names both plugins. Collections are built on first use: a command that
never needs optimizers never calls their hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import GuildError, PluginError


@dataclass
class OptimizerEntry:
    name: str
    factory: Callable
    aliases: tuple[str, ...] = ()
    flags: dict = field(default_factory=dict)
    default_max_trials: int = 20
    description: str = ""
    plugin: str = ""


@dataclass
class PrunerEntry:
    name: str
    factory: Callable
    aliases: tuple[str, ...] = ()
    flags: dict = field(default_factory=dict)
    description: str = ""
    plugin: str = ""


@dataclass
class BatchFormat:
    extensions: tuple[str, ...]
    read: Callable
    write: Callable | None
    name: str
    plugin: str


@dataclass
class Named:
    name: str
    value: Any
    plugin: str
    check: Any = None


@dataclass
class ExecutorEntry:
    """An executor: `value` is its factory; `address_flag` names the
    flag of its ``NAME:queue`` operation that gives the address."""

    name: str
    value: Callable
    plugin: str
    description: str = ""
    address_flag: str = "address"


class _Names:
    """name -> entry, refusing a second claim on a name."""

    def __init__(self, what: str):
        self.what = what
        self.entries: dict[str, Any] = {}
        self.owners: dict[str, str] = {}

    def claim(self, name: str, entry: Any, plugin: str) -> None:
        if name in self.owners:
            raise PluginError(
                f"{self.what} '{name}' is registered by both plugin "
                f"'{self.owners[name]}' and plugin '{plugin}'"
            )
        self.owners[name] = plugin
        self.entries[name] = entry

    def claim_aliased(self, entry: Any, plugin: str) -> None:
        """`entry` under its name and each of its aliases."""
        for name in (entry.name, *entry.aliases):
            self.claim(name, entry, plugin)


def _by_name(entries: dict[str, Any], what: str, name: str) -> Any:
    """The entry registered as `name` (a name or an alias), else an
    error listing what is available."""
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(sorted({e.name for e in entries.values()})) or "none installed"
        raise GuildError(f"unknown {what} '{name}' (available: {known})")
    return entry


class Registry:
    def __init__(self, pm):
        self._pm = pm
        self._cache: dict[str, _Names] = {}

    def _collect(self, hook_name: str, what: str, make_register) -> _Names:
        if hook_name not in self._cache:
            names = _Names(what)
            hook = getattr(self._pm.hook, hook_name)
            # Called per implementation, in registration order, so each
            # claim knows its plugin and clashes read first-come.
            for impl in hook.get_hookimpls():
                impl.function(make_register(names, impl.plugin_name))
            self._cache[hook_name] = names
        return self._cache[hook_name]

    # -- optimizers ---------------------------------------------------

    def optimizers(self) -> dict[str, OptimizerEntry]:
        """Every optimizer by name and by alias."""

        def make(names, plugin):
            def register(name, factory, *, aliases=(), flags=None, default_max_trials=20, description=""):
                entry = OptimizerEntry(
                    name, factory, tuple(aliases), dict(flags or {}),
                    default_max_trials, description, plugin,
                )
                names.claim_aliased(entry, plugin)

            return register

        return self._collect("guild_register_optimizers", "optimizer", make).entries

    def optimizer(self, name: str) -> OptimizerEntry:
        return _by_name(self.optimizers(), "optimizer", name)

    # -- pruners ------------------------------------------------------

    def pruners(self) -> dict[str, PrunerEntry]:
        """Every pruner by name and by alias."""

        def make(names, plugin):
            def register(name, factory, *, aliases=(), flags=None, description=""):
                names.claim_aliased(PrunerEntry(name, factory, tuple(aliases), dict(flags or {}), description, plugin), plugin)

            return register

        return self._collect("guild_register_pruners", "pruner", make).entries

    def pruner(self, name: str) -> PrunerEntry:
        return _by_name(self.pruners(), "pruner", name)

    # -- batch formats ------------------------------------------------

    def batch_formats(self) -> dict[str, BatchFormat]:
        """Batch-file formats by lower-case extension (with the dot)."""

        def make(names, plugin):
            def register(extensions, read, write=None, *, name=None):
                exts = tuple(_ext(e) for e in extensions)
                fmt = BatchFormat(exts, read, write, name or exts[0].lstrip("."), plugin)
                for ext in exts:
                    names.claim(ext, fmt, plugin)

            return register

        return self._collect("guild_register_batch_formats", "batch file extension", make).entries

    def batch_format(self, path: str) -> BatchFormat:
        import os

        ext = _ext(os.path.splitext(path)[1])
        fmt = self.batch_formats().get(ext)
        if fmt is None:
            known = ", ".join(sorted(self.batch_formats())) or "none installed"
            raise GuildError(f"{path}: unsupported batch file extension '{ext}' (supported: {known})")
        return fmt

    # -- remotes and resolvers ------------------------------------------

    def remote_types(self) -> dict[str, Named]:
        def make(names, plugin):
            def register(type_name, factory):
                names.claim(type_name, Named(type_name, factory, plugin), plugin)

            return register

        return self._collect("guild_register_remote_types", "remote type", make).entries

    def resolvers(self) -> dict[str, Named]:
        def make(names, plugin):
            def register(kind, resolve):
                names.claim(kind, Named(kind, resolve, plugin), plugin)

            return register

        return self._collect("guild_register_resolvers", "resolver", make).entries

    # -- executors --------------------------------------------------------

    def executors(self) -> dict[str, ExecutorEntry]:
        def make(names, plugin):
            def register(name, factory, *, description="", address_flag="address"):
                names.claim(name, ExecutorEntry(name, factory, plugin, description, address_flag), plugin)

            return register

        return self._collect("guild_register_executors", "executor", make).entries

    def executor(self, name: str) -> ExecutorEntry:
        entry = self.executors().get(name)
        if entry is None:
            from .plugins import DISABLE_ENV, disabled_plugins

            hint = None
            if name in disabled_plugins():
                hint = f"Plugin '{name}' is disabled by {DISABLE_ENV}."
            elif name == "dask":
                hint = "Install guild's dask extra: pip install 'guild[dask]'"
            raise GuildError(
                f"no executor '{name}': the plugin that provides it is not installed or is disabled",
                hint=hint,
            )
        return entry

    # -- filter extensions ----------------------------------------------

    def filter_extensions(self) -> tuple[dict[str, Named], dict[str, Named]]:
        """(values, operators) added to the filter language."""
        values = _Names("filter value")
        ops = _Names("filter operator")

        def make(_names, plugin):
            class Register:
                def value(self, name, fn):
                    values.claim(name, Named(name, fn, plugin), plugin)

                def operator(self, symbol, fn, check=None):
                    ops.claim(symbol, Named(symbol, fn, plugin, check), plugin)

            return Register()

        if "filters" not in self._cache:
            self._collect("guild_register_filter_extensions", "filter extension", make)
            self._cache["filters"] = values
            self._cache["filter-ops"] = ops
        return self._cache["filters"].entries, self._cache["filter-ops"].entries


def _ext(ext: str) -> str:
    ext = ext.lower()
    return ext if ext.startswith(".") else "." + ext
