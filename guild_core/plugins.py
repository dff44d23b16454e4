"""The plugin manager: one factory, no import-time globals."""

from __future__ import annotations

import os

import pluggy

from . import hookspecs, log
from .errors import PluginError

ENTRY_POINT_GROUP = "guild"
DISABLE_ENV = "GUILD_DISABLE_PLUGINS"


def disabled_plugins() -> list[str]:
    """Plugin names listed in GUILD_DISABLE_PLUGINS (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


class GuildPluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering each plugin's distribution."""

    def __init__(self):
        super().__init__(hookspecs.PROJECT_NAME)
        self.dists: dict[str, tuple[str, str]] = {}


def get_plugin_manager(load_entry_points: bool = True) -> GuildPluginManager:
    """Build a plugin manager with every installed plugin loaded.

    Plugins named in GUILD_DISABLE_PLUGINS are blocked before loading,
    so their modules are never imported. A hook implementation that
    matches no spec (a misspelled hook) raises `PluginError`.
    """
    pm = GuildPluginManager()
    pm.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        log.debug("plugin %s disabled (%s)", name, DISABLE_ENV)
        pm.set_blocked(name)
    if load_entry_points:
        for name, value, dist, version in entry_points():
            if pm.is_blocked(name) or pm.has_plugin(name):
                continue
            log.debug("loading plugin %s: %s (%s %s)", name, value, dist, version)
            plugin = _load(name, value)
            try:
                pm.register(plugin, name=name)
            except pluggy.PluginValidationError as e:
                raise _validation_error(pm, e) from None
            pm.dists[name] = (dist, version)
    check(pm)
    return pm


def _load(name: str, value: str):
    import importlib

    module_name, _, attr = value.partition(":")
    try:
        obj = importlib.import_module(module_name.strip())
    except ImportError as e:
        raise PluginError(
            f"cannot load plugin {name}: {e}",
            hint=f"Disable it with {DISABLE_ENV}={name} to run without it.",
        ) from None
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def entry_points() -> list[tuple[str, str, str, str]]:
    """(name, value, distribution, version) of each ``guild`` entry point.

    Scanning installed distributions costs more than the rest of a run's
    start-up, so the result is cached in the Guild home, keyed on the
    modification times of the directories on sys.path: installing or
    removing a package changes them.
    """
    import sys

    from . import home, util

    key = []
    for entry in sys.path:
        try:
            key.append(f"{entry}\t{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            pass
    # A tab-separated file, not JSON: this is read on every run.
    cache = home.cache_dir("plugins") / "entry-points.tsv"
    try:
        head, _, body = cache.read_text().partition("\n\n")
        if head.split("\n") == key:
            cached = [tuple(line.split("\t")) for line in body.split("\n") if line]
            # A damaged cache is scanned again, never trusted.
            if all(len(e) == 4 for e in cached):
                log.debug("plugin entry points from %s", cache)
                return cached
    except (OSError, ValueError):
        pass
    log.debug("scanning installed distributions for plugin entry points")
    entries = _scan_entry_points()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(key) + "\n\n" + "".join("\t".join(e) + "\n" for e in entries)
        util.atomic_write(cache, text)
    except OSError:
        pass
    return [tuple(e) for e in entries]


def _scan_entry_points() -> list[list[str]]:
    from importlib import metadata

    entries, seen = [], set()
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                continue
            seen.add(ep.name)
            entries.append([ep.name, ep.value, dist.metadata["name"], dist.version])
    return entries


def check(pm: pluggy.PluginManager) -> None:
    """Fail loudly on hook implementations that match no spec."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise _validation_error(pm, e) from None


def _validation_error(pm, e: pluggy.PluginValidationError) -> PluginError:
    import re

    name = pm.get_name(e.plugin) or getattr(e.plugin, "__name__", repr(e.plugin))
    m = re.match(r"unknown hook '([^']+)'", str(e))
    if m:
        msg = f"unknown hook '{m.group(1)}' (misspelled? see 'guild_core.hookspecs')"
    else:
        msg = str(e).split("\n")[0]
    return PluginError(
        f"plugin {name}: {msg}",
        hint=f"Disable it with {DISABLE_ENV}={name} to run without it.",
    )


def plugin_infos(pm: GuildPluginManager) -> list[dict]:
    """Name, distribution, version and implemented hooks of each plugin."""
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist, version = getattr(pm, "dists", {}).get(name, (None, None))
        infos.append(
            {
                "name": name,
                "module": getattr(plugin, "__name__", repr(plugin)),
                "distribution": dist,
                "version": version,
                "hooks": sorted(_hook_names(pm, plugin)),
            }
        )
    return sorted(infos, key=lambda info: info["name"])


def _hook_names(pm, plugin):
    return [caller.name for caller in pm.get_hookcallers(plugin) or []]


def call_lifecycle(pm: pluggy.PluginManager, hook_name: str, **kwargs) -> None:
    """Call a lifecycle hook; a failing plugin is reported, not fatal."""
    import sys

    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        try:
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as e:
            sys.stderr.write(f"WARNING: plugin {impl.plugin_name} failed in {hook_name}: {e}\n")


def flag_detector(pm: pluggy.PluginManager):
    """``detect(script) -> FlagsInfo | None`` through `guild_detect_flags`,
    as `opdef.resolve` takes it."""
    from .errors import GuildError

    def detect(script):
        try:
            source = script.read_text(errors="replace")
        except OSError as e:
            raise GuildError(f"cannot read {script}: {e.strerror}") from None
        return pm.hook.guild_detect_flags(script=script, source=source)

    return detect


def flags_launcher(pm: pluggy.PluginManager, dest: str) -> str | None:
    """The launcher module that delivers flags to `dest` (a guild.yml
    ``flags-dest``), through `guild_flags_launcher`; None for args and
    ``args:NAME``."""
    from .errors import GuildError

    if dest == "args" or dest.startswith("args:"):
        # Guild AI's ``args:NAME`` names the parser flags came from
        # (``args:click``): values still go as command-line options.
        return None
    launcher = pm.hook.guild_flags_launcher(dest=dest)
    if launcher is None:
        raise GuildError(f"unsupported flags-dest '{dest}' (no plugin handles it; see 'guild plugins')")
    return launcher
