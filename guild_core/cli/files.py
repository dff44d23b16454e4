"""``guild ls`` and ``guild cat``: a run's files and output.

Both read only inside the run directory. A PATH is resolved (symbolic
links followed) and must land inside the run, or inside a sibling run:
a run directory next to it, reached through a symbolic link in the run
(a batch's trial links ``../<id>``, a dependency's ``../<id>/file``,
a summary's ``<id>``). ``ls -L`` follows only such links, and never one
that leads back to a directory it is already in.
"""

from __future__ import annotations

import os
import sys

import click

from guild_core.errors import GuildError
from guild_core.run import RUN_ID_P

from .common import printable
from .runselect import filter_options, selected_run


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


class _RunArea:
    """Where a run's files may resolve to: the run directory and the
    sibling runs beside it (real paths)."""

    def __init__(self, run_dir: str):
        self.root = os.path.realpath(run_dir)
        # The parent of the real run directory is where its relative
        # links (`../<id>`) lead; the real parent of the run directory
        # as named is where absolute links to `runs/<id>` lead.
        self.parents = {os.path.dirname(self.root), os.path.realpath(os.path.dirname(run_dir))}

    def allows(self, real: str) -> bool:
        real = os.path.normpath(real)
        if _within(real, self.root):
            return True
        for parent in self.parents:
            if real != parent and _within(real, parent):
                first = real[len(parent.rstrip(os.sep)) + 1 :].split(os.sep, 1)[0]
                if RUN_ID_P.match(first) and os.path.isdir(os.path.join(parent, first)):
                    return True
        return False


def _inside_run(run, path: str) -> tuple[str, str]:
    """(`path` joined to the run directory, its real path); GuildError
    when it is not inside the run.

    PATH itself must name something under the run directory (``..``
    and absolute paths elsewhere are refused, even into a sibling run);
    resolved, it must stay in the run or in a sibling run, which only a
    symbolic link in the run can lead to."""
    run_dir = os.path.normpath(str(run.path))
    full = os.path.normpath(os.path.join(run_dir, path))
    real = os.path.normpath(os.path.realpath(full))
    if not _within(full, run_dir) or not _RunArea(run_dir).allows(real):
        raise GuildError(f"{printable(path)} is outside the run directory")
    return full, real


def _missing(full: str) -> GuildError:
    if os.path.lexists(full):
        # A link to nothing, or a loop of links.
        return GuildError(f"{printable(full)} is a broken link")
    return GuildError(f"{printable(full)} does not exist")


@click.command()
@click.argument("run", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Include Guild files under .guild.")
@click.option("-f", "--full-path", is_flag=True, help="Show full paths.")
@click.option("-L", "--follow-links", is_flag=True, help="Follow links to directories.")
@click.option("-p", "--path", metavar="PATH", help="List only files under PATH.")
@filter_options
def ls(run, all_, full_path, follow_links, path, rf):
    """List run files (default: the latest run).

    PATH is relative to the run directory and must stay inside it; a
    symbolic link in the run may lead it into a sibling run (batch
    trials, dependencies, summaries), nowhere else.

    -L follows links to directories in the run and in sibling runs; a
    link that leads elsewhere, or back into a directory being listed,
    is listed but not followed."""
    target = selected_run(rf, run)
    root = os.path.normpath(str(target.path))
    if path:
        base, real = _inside_run(target, path)
        if not os.path.exists(base):
            raise _missing(base)
    else:
        base, real = root, os.path.realpath(root)
    rel_base = os.path.relpath(base, root)
    show_guild = all_ or rel_base.split(os.sep)[0] == ".guild"
    if os.path.isdir(base):
        entries = _walk(base, real, root, show_guild, follow_links, _RunArea(root))
    else:
        entries = [base]
    if full_path:
        for entry in entries:
            click.echo(printable(entry))
        return
    click.echo(f"{printable(root)}:")
    for entry in entries:
        rel = os.path.relpath(entry.rstrip(os.sep), root) + ("/" if entry.endswith(os.sep) else "")
        click.echo("  " + printable(rel))


def _walk(base: str, real: str, root: str, show_guild: bool, follow: bool, area: _RunArea) -> list[str]:
    """Paths under `base` (directories with a trailing separator),
    sorted. A link to a directory is listed; with `follow` its contents
    too, when it stays in `area` and does not lead back to a directory
    on the way down to it (a cycle)."""
    entries = []
    # Each directory to read, with the real paths of the directories
    # on the way to it, itself last.
    todo = [(base, (real,))]
    while todo:
        dirpath, chain = todo.pop()
        try:
            with os.scandir(dirpath) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for item in items:
            full = os.path.join(dirpath, item.name)
            if dirpath == root and not show_guild and item.name == ".guild":
                continue
            try:
                is_dir = item.is_dir()
            except OSError:  # a loop of links
                is_dir = False
            if not is_dir:
                entries.append(full)
                continue
            entries.append(full + os.sep)
            if not item.is_symlink():
                todo.append((full, chain + (os.path.join(chain[-1], item.name),)))
            elif follow:
                target = os.path.normpath(os.path.realpath(full))
                if area.allows(target) and target not in chain:
                    todo.append((full, chain + (target,)))
    entries.sort()
    return entries


@click.command()
@click.argument("run", required=False)
@click.option("-p", "--path", metavar="PATH", help="File to show, relative to the run directory.")
@click.option("--output", "-O", is_flag=True, help="Show the run's output.")
@click.option("--page", is_flag=True, help="Show in a pager.")
@filter_options
def cat(run, path, output, page, rf):
    """Show a run file or the run's output (default: the latest run).

    PATH is relative to the run directory and must stay inside it; a
    symbolic link in the run may lead it into a sibling run (batch
    trials, dependencies, summaries), nowhere else."""
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
        full, real = _inside_run(target, path)
        try:
            # The path checked, not the one named: no link is followed
            # again after the check.
            with open(real, "rb") as f:
                data = f.read()
        except IsADirectoryError:
            raise GuildError(f"{printable(full)} is a directory") from None
        except OSError:
            raise _missing(full) from None
    if page:
        click.echo_via_pager(data.decode("utf-8", "replace"))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
