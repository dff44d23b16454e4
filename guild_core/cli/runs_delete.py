"""``guild runs delete``, ``restore`` and ``purge``."""

from __future__ import annotations

import click

from guild_core import store
from guild_core.errors import GuildError

from .runselect import confirm_runs, current_remote, filter_options, report_outcome, selected_runs, still_selected


def _yes_option(fn):
    return click.option("-y", "--yes", is_flag=True, help="Do not prompt.")(fn)


@click.command("delete")
@click.argument("runs", nargs=-1)
@click.option("-p", "--permanent", is_flag=True, help="Delete for good: the runs cannot be restored.")
@click.option("--force", is_flag=True, help="Stop running runs, then delete them.")
@_yes_option
@filter_options(remote=True)
def delete(runs, permanent, force, yes, rf):
    """Delete runs (default: all filtered runs, after asking).

    Deleted runs move to the trash, where `guild runs list -d` shows them
    and `guild runs restore` brings them back; `guild runs purge` removes
    them for good. A running run is refused unless --force, which stops it
    first."""
    selected = selected_runs(rf, runs)
    if not selected:
        click.echo("Nothing to delete.", err=True)
        return
    remote = current_remote()
    if remote is not None:
        _delete_remote(remote, selected, permanent, yes)
        return
    running = [run for run in selected if run.status == "running"]
    if running and not force:
        ids = ", ".join(run.short_id for run in running)
        raise GuildError(
            f"cannot delete running run(s) {ids}",
            "Stop them first ('guild stop') or use --force to stop and delete them.",
        )
    _warn_dependents(selected)
    if permanent:
        confirm_runs(
            selected,
            "WARNING: You are about to permanently delete the following runs:",
            "Permanently delete {count} run(s)?",
            yes,
            default=False,
        )
    else:
        confirm_runs(selected, "You are about to delete the following runs:", "Delete {count} run(s)?", yes)
    if running:
        from guild_core import runner

        for run in running:
            click.echo(f"Stopping {run.id} (pid {run.pid})", err=True)
            runner.stop(run)
    out = store.delete(selected, permanent, still=still_selected(rf, exempt={r.id for r in running}))
    report_outcome(out)
    click.echo(f"Deleted {len(out.done)} run(s)", err=True)


def _delete_remote(remote, selected, permanent: bool, yes: bool) -> None:
    from guild_core import remotes

    running = [run for run in selected if run.status == "running"]
    if running:
        ids = ", ".join(run.short_id for run in running)
        raise GuildError(f"cannot delete running run(s) {ids} on remote '{remote.name}'")
    if permanent:
        confirm_runs(
            selected,
            f"WARNING: You are about to permanently delete the following runs on {remote.name}:",
            "Permanently delete {count} run(s)?",
            yes,
            default=False,
        )
    else:
        confirm_runs(selected, f"You are about to delete the following runs on {remote.name}:", "Delete {count} run(s)?", yes)
    remotes.delete(remote, selected, permanent)
    click.echo(f"Deleted {len(selected)} run(s)", err=True)


def _warn_dependents(selected) -> None:
    """Runs that depend on a run being deleted keep links to it that
    would point at nothing: say so before asking."""
    from guild_core import deps, select

    ids = {run.id for run in selected}
    others = [run for run in select.all_runs() if run.id not in ids]
    for run_id, users in deps.dependents(ids, others).items():
        names = ", ".join(f"{u.short_id} ({u.op_name})" for u in users)
        click.echo(f"WARNING: run {run_id[:8]} is a dependency of {names}", err=True)


@click.command("restore")
@click.argument("runs", nargs=-1)
@_yes_option
@filter_options(remote=True)
def restore(runs, yes, rf):
    """Restore deleted runs (default: all filtered deleted runs).

    A run whose id is already in the runs list is refused, never
    overwritten."""
    selected = selected_runs(rf, runs, deleted=True)
    if not selected:
        click.echo("Nothing to restore.", err=True)
        return
    confirm_runs(selected, "You are about to restore the following runs:", "Restore {count} run(s)?", yes)
    remote = current_remote()
    if remote is not None:
        from guild_core import remotes

        remotes.restore(remote, selected)
        click.echo(f"Restored {len(selected)} run(s)", err=True)
        return
    out = store.restore(selected)
    report_outcome(out)
    click.echo(f"Restored {len(out.done)} run(s)", err=True)


@click.command("purge")
@click.argument("runs", nargs=-1)
@_yes_option
@filter_options(remote=True)
def purge(runs, yes, rf):
    """Permanently delete deleted runs (default: all filtered deleted runs).

    WARNING: Purged runs cannot be recovered! `guild check --space`
    shows the space deleted runs take."""
    selected = selected_runs(rf, runs, deleted=True)
    if not selected:
        click.echo("Nothing to purge.", err=True)
        return
    confirm_runs(
        selected,
        "WARNING: You are about to permanently delete the following runs:",
        "Permanently delete {count} run(s)?",
        yes,
        default=False,
    )
    remote = current_remote()
    if remote is not None:
        from guild_core import remotes

        remotes.purge(remote, selected)
        click.echo(f"Purged {len(selected)} run(s)", err=True)
        return
    out = store.purge(selected)
    report_outcome(out)
    click.echo(f"Purged {len(out.done)} run(s)", err=True)
