"""The plugin manager: one factory, no import-time globals."""

from __future__ import annotations

import os

import pluggy

from . import hookspecs
from .errors import PluginError

ENTRY_POINT_GROUP = "guild"
DISABLE_ENV = "GUILD_DISABLE_PLUGINS"


def disabled_plugins() -> list[str]:
    """Plugin names listed in GUILD_DISABLE_PLUGINS (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def get_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """Build a plugin manager with every installed plugin loaded.

    Plugins named in GUILD_DISABLE_PLUGINS are blocked before loading,
    so their modules are never imported. A hook implementation that
    matches no spec (a misspelled hook) raises `PluginError`.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        pm.set_blocked(name)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except pluggy.PluginValidationError as e:
            raise _validation_error(pm, e) from None
        except ImportError as e:
            raise PluginError(f"cannot load plugin: {e}") from None
    check(pm)
    return pm


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


def plugin_infos(pm: pluggy.PluginManager) -> list[dict]:
    """Name, distribution, version and implemented hooks of each plugin."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(impl_hook for impl_hook in _hook_names(pm, plugin))
        infos.append(
            {
                "name": name,
                "module": getattr(plugin, "__name__", repr(plugin)),
                "distribution": dist.project_name if dist else None,
                "version": dist.version if dist else None,
                "hooks": hooks,
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
