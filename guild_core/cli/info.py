"""``guild operations``, ``guild check`` and ``guild plugins``."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import click

from guild_core import __version__, home, util


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show private operations too (names starting with '_').")
def operations(all_):
    """Show the operations defined in guild.yml."""
    from guild_core.cli.common import printable
    from guild_core.opdef import list_operations

    ops = list_operations(Path.cwd(), private=all_)
    for line in util.table([[printable(name), printable(desc)] for name, desc in ops]):
        click.echo(line)


@click.command()
@click.option("--space", is_flag=True, help="Also show disk space used by runs, deleted runs and caches.")
def check(space):
    """Show the Guild setup: versions, Guild home, plugins.

    With --space, also the disk space taken by runs, by deleted runs
    (what `guild runs purge` frees) and by caches."""
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
    if space:
        _print_disk_space()


def _print_disk_space() -> None:
    paths = [
        ("guild_home", home.guild_home()),
        ("runs", home.runs_dir()),
        ("deleted_runs", home.trash_runs_dir()),
        ("cache", home.guild_home() / "cache"),
    ]
    click.echo("disk_space:")
    rows = [[f"  {name}:", format_bytes(disk_usage(path)), str(path)] for name, path in paths]
    rows.append(_leftovers_row())
    for line in util.table(rows, sep=" "):
        click.echo(line)


def _leftovers_row() -> list[str]:
    """Hidden work under runs/ and the trash: a crashed command's
    leftovers (the next listing removes them) or work under way."""
    from guild_core import store

    found = store.leftovers(home.runs_dir()) + store.leftovers(home.trash_runs_dir())
    size = sum(disk_usage(lo.path) + _own_size(lo.path) for lo in found)
    dead = sum(1 for lo in found if not lo.owner_alive)
    live = len(found) - dead
    desc = f"{dead} from interrupted commands"
    if live:
        desc += f", {live} in progress"
    return ["  leftovers:", format_bytes(size), desc]


def _own_size(path: Path) -> int:
    try:
        return path.lstat().st_size if not path.is_dir() else 0
    except OSError:
        return 0


def disk_usage(path: Path) -> int:
    """Bytes under `path`, links counted as links, not followed."""
    import os

    total = 0
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def format_bytes(n: float) -> str:
    """Guild AI's format: 512, 1.5K, 20.0M."""
    for unit in ("", "K", "M", "G", "T", "P", "E"):
        if abs(n) < 1024:
            return str(int(n)) if not unit else f"{n:.1f}{unit}"
        n /= 1024.0
    return f"{n:.1f}Z"


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
    from guild_core.cli.common import plugin_manager, printable
    from guild_core.plugins import disabled_plugins, plugin_infos

    infos = plugin_infos(plugin_manager())
    if as_json:
        click.echo(json.dumps(infos))
        return
    rows = [
        [printable(c) for c in (i["name"], f"{i['distribution'] or '-'} {i['version'] or ''}".strip(), ", ".join(i["hooks"]))]
        for i in infos
    ]
    for line in util.table(rows):
        click.echo(line)
    disabled = disabled_plugins()
    if disabled:
        click.echo(f"Disabled (GUILD_DISABLE_PLUGINS): {', '.join(disabled)}")
