"""``guild sys``: system utilities.

``guild sys shutdown-timer start|stop|status``: a background process
that shuts the machine down once no run of the Guild home has been
running for a while (a cloud instance left with nothing to do). Its
pid file (``$GUILD_HOME/proc/shutdown-timer.pid``) names the process by
pid and start time (`procs.Owner`), so a stale file never makes it read
as running and ``stop`` never signals another process. It logs to
``$GUILD_HOME/logs/shutdown-timer.log``.

Guild AI's other utility, ``s3-sync``, needs S3 remotes, which guild
does not have.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click

from guild_core import home, procs
from guild_core.errors import GuildError

NAME = "shutdown-timer"
TITLE = "Shutdown timer"


def _pidfile() -> Path:
    return home.guild_home() / "proc" / f"{NAME}.pid"


def _logfile() -> Path:
    return home.guild_home() / "logs" / f"{NAME}.log"


def _owner() -> procs.Owner | None:
    """The live timer process, or None (removing a stale pid file)."""
    path = _pidfile()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    owner = procs.Owner.decode(text)
    if procs.alive(owner):
        return owner
    path.unlink(missing_ok=True)
    return None


@click.group("sys")
def sys_():
    """System utilities.

    shutdown-timer shuts the machine down when no run has been running
    for a given time. (Guild AI's s3-sync needs S3 remotes, which guild
    does not have.)
    """


@sys_.group("shutdown-timer")
def shutdown_timer():
    """Shut the system down once no run is running for a while.

    The timer watches the runs of the Guild home. It runs in the
    background (--foreground keeps it in the terminal) and logs to
    $GUILD_HOME/logs/shutdown-timer.log.
    """


@shutdown_timer.command("start")
@click.option("-t", "--timeout", type=click.FloatRange(0, None, min_open=True), default=60, metavar="MINUTES", help="Minutes without a running run before shutting down (default 60).")
@click.option("-s", "--su", is_flag=True, help="Run the shutdown command with sudo.")
@click.option("-f", "--foreground", is_flag=True, help="Run in the foreground, logging to the terminal.")
@click.option("-g", "--grace-period", type=click.IntRange(0, None), default=1, metavar="MINUTES", help="Minutes the shutdown command waits (shutdown +N, default 1).")
@click.option("-d", "--dont-shutdown", is_flag=True, help="Log the shutdown instead of running it (for trying the timer out).")
def start(timeout, su, foreground, grace_period, dont_shutdown):
    """Start the shutdown timer."""
    owner = _owner()
    if owner is not None:
        raise GuildError(f"{TITLE} is already running (use 'guild sys {NAME} status' to verify)")
    args = [str(timeout), str(grace_period), "1" if su else "0", "1" if dont_shutdown else "0"]
    if foreground:
        _write_pidfile(procs.current())
        try:
            _run(*args, log=sys.stderr)
        finally:
            _pidfile().unlink(missing_ok=True)
        return
    import subprocess

    click.echo(f"Starting {TITLE} (use 'guild sys {NAME} stop' to stop)")
    log = _logfile()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out, open(os.devnull) as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guild_core.cli.syscmd", *args],
            stdin=devnull, stdout=out, stderr=out, start_new_session=True,
            cwd=home.guild_home() if home.guild_home().is_dir() else None,
        )
    # The process writes its own pid file; wait for it, so that status
    # and stop right after start see it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if _owner() is not None:
            return
        time.sleep(0.02)
    if proc.poll() is not None:
        raise GuildError(f"{TITLE} did not start (see {log})")


@shutdown_timer.command("stop")
def stop():
    """Stop the shutdown timer."""
    owner = _owner()
    if owner is None:
        click.echo(f"{TITLE} is not running")
        return
    click.echo(f"Stopping {TITLE} (pid {owner.pid})")
    procs.send(owner, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while procs.alive(owner) and time.monotonic() < deadline:
        time.sleep(0.02)


@shutdown_timer.command("status")
def status():
    """Show whether the shutdown timer is running."""
    owner = _owner()
    if owner is None:
        click.echo(f"{TITLE} is not running")
    else:
        click.echo(f"{TITLE} is running (pid {owner.pid})")


def _write_pidfile(owner: procs.Owner) -> None:
    from guild_core import util

    path = _pidfile()
    path.parent.mkdir(parents=True, exist_ok=True)
    util.atomic_write(path, owner.encode() + "\n")


# ---------------------------------------------------------------------
# The timer process: python -m guild_core.cli.syscmd TIMEOUT GRACE SU DRY
# ---------------------------------------------------------------------


def _running_runs() -> list[str]:
    from guild_core import select

    return [r.short_id for r in select.all_runs() if r.status == "running"]


def _run(timeout: str, grace: str, su: str, dry: str, log) -> int:
    def say(msg: str) -> None:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        log.flush()

    limit = float(timeout) * 60
    # Checks every 5 seconds (more often for a timeout under a minute).
    interval = min(5.0, max(limit / 10, 0.05))
    def on_term(*_):
        raise KeyboardInterrupt  # ends a sleep at once, unlike a flag

    signal.signal(signal.SIGTERM, on_term)
    say(f"{TITLE} started with timeout = {float(timeout):g}m")
    if dry == "1":
        say(f"{TITLE} will NOT shut down the system (--dont-shutdown)")
    last_active = time.monotonic()
    last_seen: list[str] = []
    while True:
        try:
            active = _running_runs()
        except GuildError as e:
            say(f"cannot read runs: {e}")
            active = []
        except KeyboardInterrupt:
            break
        now = time.monotonic()
        if active:
            last_active = now
            if active != last_seen:
                say(f"Active runs: {', '.join(active)}")
        elif last_seen:
            say("No runs running")
        last_seen = active
        if not active and now - last_active >= limit:
            say("NO RUN FOR THE TIMEOUT - SHUTTING DOWN THE SYSTEM")
            cmd = (["sudo"] if su == "1" else []) + ["shutdown", f"+{grace}"]
            if dry == "1":
                say(f"would run: {' '.join(cmd)} (--dont-shutdown)")
                break
            import subprocess

            try:
                subprocess.run(cmd, check=True)
            except (OSError, subprocess.CalledProcessError) as e:
                say(f"shutdown failed: {e}")
                return 1
            break
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            break
    say("Stopping")
    return 0


def main(argv: list[str]) -> int:
    _write_pidfile(procs.current())
    try:
        return _run(*argv, log=sys.stdout)
    finally:
        _pidfile().unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
