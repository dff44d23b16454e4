"""``guild remotes``, ``guild remote status``, ``guild push`` and ``guild pull``."""

from __future__ import annotations

import click

from guild_core.errors import GuildError

from .runselect import confirm_runs, filter_options, selected_runs


@click.command("remotes")
def remotes_() -> None:
    """Show the remotes in the user config (``config.yml``, ``remotes:``)."""
    from guild_core import remotes
    from guild_core.util import table

    rows = []
    for name, config in sorted(remotes.configured().items()):
        try:
            desc = remotes.get(name).describe()
        except GuildError as e:
            desc = f"(error: {e})"
        rows.append([name, str(config.get("type") or ""), desc])
    for line in table(rows):
        click.echo(line)


@click.group("remote")
def remote() -> None:
    """Manage remotes."""


@remote.command("status")
@click.argument("name")
@click.option("-v", "--verbose", is_flag=True, help="Show more status information.")
def status(name, verbose) -> None:
    """Check that remote NAME is reachable, and say why not."""
    from guild_core import remotes

    rem = remotes.get(name)
    if verbose:
        click.echo(f"{name}: {rem.describe()}")
    click.echo(rem.status())


@remote.command("start")
@click.argument("name")
@click.option("--reinit", is_flag=True, help="Reinitialize a started remote.")
@click.option("-y", "--yes", is_flag=True, help="Start without prompting.")
def start(name, reinit, yes) -> None:
    """Start a remote (none of the built-in types needs starting)."""
    from guild_core import remotes

    remotes.get(name)
    raise GuildError(f"remote '{name}' cannot be started: it is used where it is")


@remote.command("stop")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Stop without prompting.")
def stop(name, yes) -> None:
    """Stop a remote (none of the built-in types can be stopped)."""
    from guild_core import remotes

    remotes.get(name)
    raise GuildError(f"remote '{name}' cannot be stopped")


@click.command("push")
@click.argument("remote_name", metavar="REMOTE")
@click.argument("runs", nargs=-1)
@click.option("-n", "--delete", is_flag=True, help="Delete remote files missing locally.")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt before copying.")
@filter_options
def push(remote_name, runs, delete, yes, rf) -> None:
    """Copy runs to REMOTE (default: all filtered runs, after asking).

    Only what changed since the last push travels; a run appears on the
    remote only once all of it is there. Runs still running are left out
    unless the filter asks for them (-Sr/--running)."""
    from guild_core import remotes

    rem = remotes.get(remote_name)
    selected = selected_runs(rf, runs)
    if "running" not in rf.status_in:
        live = [run for run in selected if remotes.is_running(run)]
        for run in live:
            click.echo(f"Skipping {run.short_id}: it is still running (--running pushes it)", err=True)
        selected = [run for run in selected if run not in live]
    if not selected:
        click.echo("Nothing to push.", err=True)
        return
    confirm_runs(
        selected,
        f"You are about to copy (push) the following runs to {remote_name}:",
        "Continue?",
        yes,
    )
    progress = remotes.Progress(len(selected))
    try:
        moved = rem.push([run.path for run in selected], delete, progress)
    finally:
        progress.finish()
    click.echo(moved.summary("Pushed"), err=True)


@click.command("pull")
@click.argument("remote_name", metavar="REMOTE")
@click.argument("runs", nargs=-1)
@click.option("-d", "--delete", is_flag=True, help="Delete local files missing on remote.")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt before copying.")
@filter_options
def pull(remote_name, runs, delete, yes, rf) -> None:
    """Copy runs from REMOTE (default: all filtered remote runs, after
    asking). RUN and the filters select among the remote's runs.

    Only what changed since the last pull travels; a run appears here
    only once all of it is. A run still running on the remote is marked
    so (``LOCK.remote``): `guild sync` brings the rest later."""
    from guild_core import home, remotes

    from .runselect import selected_remote_runs

    rem = remotes.get(remote_name)
    selected = selected_remote_runs(rem, rf, runs)
    if not selected:
        click.echo("Nothing to pull.", err=True)
        return
    confirm_runs(
        selected,
        f"You are about to copy (pull) the following runs from {remote_name}:",
        "Continue?",
        yes,
    )
    progress = remotes.Progress(len(selected))
    dest = home.runs_dir()
    try:
        moved = rem.pull([run.id for run in selected], dest, delete, progress)
    finally:
        progress.finish()
    remotes.mark_remote_locks(dest, [run.id for run in selected], remote_name)
    click.echo(moved.summary("Pulled"), err=True)


@click.command("sync")
@click.option("-w", "--watch", is_flag=True, help="Keep synchronizing until the runs stop.")
@click.option("-n", "--interval", type=click.FloatRange(min=0.1), default=60.0, metavar="SECONDS",
              help="Seconds between synchronizations with --watch (default: 60).")
@filter_options
def sync(watch, interval, rf) -> None:
    """Bring local copies of runs still running on a remote up to date.

    A run pulled while it was running on a remote is marked so
    (``LOCK.remote``, naming the remote); sync pulls each such run again
    from its remote, until it has stopped there. With --watch it keeps
    doing so every --interval seconds while any still runs."""
    import time

    from guild_core import home, remotes

    while True:
        live = [run for run in selected_runs(rf, ()) if remotes.remote_of(run)]
        if not live:
            click.echo("Nothing to synchronize.", err=True)
            return
        by_remote: dict[str, list[str]] = {}
        for run in live:
            by_remote.setdefault(remotes.remote_of(run), []).append(run.id)
        for name, ids in sorted(by_remote.items()):
            rem = remotes.get(name)
            moved = rem.pull(ids, home.runs_dir(), False, remotes.Progress(len(ids)))
            remotes.mark_remote_locks(home.runs_dir(), ids, name)
            click.echo(f"{name}: " + moved.summary("Synchronized"), err=True)
        if not watch:
            return
        time.sleep(interval)
