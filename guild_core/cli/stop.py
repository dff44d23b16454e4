"""``guild stop`` and ``guild watch``."""

from __future__ import annotations

import sys
import time

import click

from guild_core import select
from guild_core.cli.common import confirm
from guild_core.errors import GuildError

from .runselect import filter_options, format_preview, selected_runs


@click.command()
@click.argument("runs", nargs=-1)
@click.option("-y", "--yes", is_flag=True, help="Do not prompt.")
@click.option("-n", "--no-wait", is_flag=True, help="Do not wait for runs to stop.")
@filter_options(remote=True)
def stop(runs, yes, no_wait, rf):
    """Stop running runs (default: all running runs that pass the filters).

    With -r, runs running on a remote that runs them (ssh)."""
    from guild_core import runner

    from .runselect import current_remote

    remote = current_remote()
    if remote is not None and not callable(getattr(remote, "stop", None)):
        raise GuildError(f"remote '{remote.name}' cannot stop runs: only a remote that runs them (ssh) can")
    targets = [r for r in selected_runs(rf, runs) if r.status == "running"]
    if not targets:
        click.echo("Nothing to stop.")
        return
    if not yes:
        lines = ["You are about to stop the following runs:"] + format_preview(targets)
        if not confirm("\n".join(lines) + "\nStop %d run(s)?" % len(targets)):
            sys.exit(1)
    if remote is not None:
        for r in targets:
            click.echo(f"Stopping {r.id} on {remote.name}")
        remote.stop([r.id for r in targets], wait=not no_wait)
        return
    for r in targets:
        click.echo(f"Stopping {r.id} (pid {r.pid})")
        runner.stop(r, wait=not no_wait)


@click.command()
@click.argument("run", required=False)
@click.option("-p", "--pid", metavar="PID", help="Watch the run of process PID (a process id, or a file holding one: a --pidfile).")
@filter_options(remote=True)
def watch(run, pid, rf):
    """Show a run's output as it is written (Ctrl-C stops watching, not
    the run). With -r, a run on a remote: its output is brought over
    every second until it stops there."""
    from .runselect import current_remote, filtered_runs

    runs_ = filtered_runs(rf)
    remote = current_remote()
    if remote is not None:
        if pid is not None:
            raise GuildError("--pid watches a local process: it cannot be used with --remote")
        running = [r for r in runs_ if r.status == "running"]
        target = select.select_one(runs_, run) if run is not None else (running[0] if running else select.select_one(runs_, None))
        _watch_remote(remote, target)
        return
    if pid is not None:
        pid = _pid_of(pid)
        # The run's process, or the guild process supervising it (what
        # --pidfile records).
        matches = [r for r in runs_ if r.pid == pid or getattr(r.supervisor(), "pid", None) == pid]
        if not matches:
            raise GuildError(f"cannot find run for pid {pid}")
        target = matches[0]
    elif run is None:
        running = [r for r in runs_ if r.status in ("running", "pending")]
        target = running[0] if running else select.select_one(runs_, None)
    else:
        target = select.select_one(runs_, run)
    click.echo(f"Watching run {target.id}", err=True)
    out = target.guild_path("output")
    pos = 0
    try:
        while True:
            pos = _copy_new(out, pos)
            if target.status not in ("running", "pending"):
                pos = _copy_new(out, pos)
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        return
    fresh = type(target)(target.id, target.path)
    click.echo(f"Run {target.id} stopped with a status of '{fresh.status}'", err=True)


def _watch_remote(remote, target) -> None:
    from guild_core import remotes

    click.echo(f"Watching run {target.id} on {remote.name}", err=True)
    pos = 0
    try:
        while True:
            remotes.fetch(remote, target)
            pos = _copy_new(target.guild_path("output"), pos)
            fresh = next((r for r in remotes.view(remote) if r.id == target.id), None)
            if fresh is None or fresh.status not in ("running", "pending"):
                remotes.fetch(remote, target)
                pos = _copy_new(target.guild_path("output"), pos)
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        return
    status = fresh.status if fresh is not None else "deleted"
    click.echo(f"Run {target.id} stopped with a status of '{status}'", err=True)


def _pid_of(spec: str) -> int:
    """A process id given as a number or as a file that holds one."""
    from pathlib import Path

    text = spec
    if not spec.strip().isdigit():
        try:
            text = Path(spec).read_text()
        except OSError as e:
            raise GuildError(f"invalid --pid {spec!r}: not a process id, and cannot read it as a file ({e.strerror})") from None
    try:
        return int(text.strip())
    except ValueError:
        raise GuildError(f"invalid --pid {spec!r}: {'the file holds no process id' if text is not spec else 'not a process id'}") from None


def _copy_new(path, pos: int) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            data = f.read()
    except OSError:
        return pos
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return pos + len(data)
