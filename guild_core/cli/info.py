"""``guild operations``, ``guild check`` and ``guild plugins``."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import click

from guild_core import __version__, home, util


@click.command()
def operations():
    """Show the operations defined in guild.yml."""
    from guild_core.opdef import list_operations

    ops = list_operations(Path.cwd())
    for line in util.table([[name, desc] for name, desc in ops]):
        click.echo(line)


@click.command()
def check():
    """Show the Guild setup: versions, Guild home, plugins."""
    from guild_core.cli.common import plugin_manager
    from guild_core.plugins import plugin_infos

    infos = plugin_infos(plugin_manager())
    rows = [
        ["guild_version:", __version__],
        ["guild_home:", str(home.guild_home())],
        ["python_version:", platform.python_version()],
        ["python_exe:", sys.executable],
        ["platform:", f"{platform.system()} {platform.release()} {platform.machine()}"],
        ["plugins:", ", ".join(i["name"] for i in infos) or "(none)"],
    ]
    for name in ("click", "pluggy", "yaml"):
        rows.append([f"{name}_version:", _version(name)])
    for line in util.table(rows, sep=" "):
        click.echo(line)


def _version(module: str) -> str:
    from importlib import metadata

    dist = {"yaml": "pyyaml"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Show as JSON.")
def plugins_(as_json):
    """Show installed plugins: name, distribution, version and hooks."""
    from guild_core.cli.common import plugin_manager
    from guild_core.plugins import disabled_plugins, plugin_infos

    infos = plugin_infos(plugin_manager())
    if as_json:
        click.echo(json.dumps(infos))
        return
    rows = [
        [i["name"], f"{i['distribution'] or '-'} {i['version'] or ''}".strip(), ", ".join(i["hooks"])]
        for i in infos
    ]
    for line in util.table(rows):
        click.echo(line)
    disabled = disabled_plugins()
    if disabled:
        click.echo(f"Disabled (GUILD_DISABLE_PLUGINS): {', '.join(disabled)}")
