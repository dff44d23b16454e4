"""``guild ls`` and ``guild cat``: a run's files and output."""

from __future__ import annotations

import os
import sys

import click

from guild_core.errors import GuildError

from .runselect import filter_options, selected_run


@click.command()
@click.argument("run", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Include Guild files under .guild.")
@click.option("-f", "--full-path", is_flag=True, help="Show full paths.")
@click.option("-L", "--follow-links", is_flag=True, help="Follow links to directories.")
@click.option("-p", "--path", metavar="PATH", help="List only files under PATH.")
@filter_options
def ls(run, all_, full_path, follow_links, path, rf):
    """List run files (default: the latest run)."""
    target = selected_run(rf, run)
    root = str(target.path)
    base = os.path.join(root, path) if path else root
    if path and not os.path.exists(base):
        raise GuildError(f"{base} does not exist")
    show_guild = all_ or bool(path and path.split("/")[0] == ".guild")
    entries = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=follow_links):
        if dirpath == root and not show_guild and ".guild" in dirnames:
            dirnames.remove(".guild")
        dirnames.sort()
        for name in dirnames:
            entries.append(os.path.join(dirpath, name) + os.sep)
        for name in sorted(filenames):
            entries.append(os.path.join(dirpath, name))
    entries.sort()
    if full_path:
        for entry in entries:
            click.echo(entry)
        return
    click.echo(f"{root}:")
    for entry in entries:
        click.echo("  " + os.path.relpath(entry.rstrip(os.sep), root) + ("/" if entry.endswith(os.sep) else ""))


@click.command()
@click.argument("run", required=False)
@click.option("-p", "--path", metavar="PATH", help="File to show, relative to the run directory.")
@click.option("--output", "-O", is_flag=True, help="Show the run's output.")
@click.option("--page", is_flag=True, help="Show in a pager.")
@filter_options
def cat(run, path, output, page, rf):
    """Show a run file or the run's output (default: the latest run)."""
    if not path and not output:
        raise click.UsageError("one of --path or --output is required")
    if path and output:
        raise click.UsageError("--path and --output cannot both be used")
    target = selected_run(rf, run)
    if output:
        data = b"".join(line for _t, _s, line in target.iter_output())
        if not data and not target.guild_path("output").exists():
            raise GuildError(f"run {target.id} has no output")
    else:
        full = target.path / path
        try:
            data = full.read_bytes()
        except IsADirectoryError:
            raise GuildError(f"{full} is a directory") from None
        except OSError:
            raise GuildError(f"{full} does not exist") from None
    if page:
        click.echo_via_pager(data.decode("utf-8", "replace"))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
