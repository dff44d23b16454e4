"""Executors: where a batch's trials run.

The scheduler hands each trial to an executor and collects the trials'
ends (`guild_core.hookspecs.Executor`). The core's own executor runs
trials in threads of the guild process (`LocalExecutor`, ``--workers
N``); plugins add others through ``guild_register_executors`` (Dask's is
``--dask``).

Wherever a trial runs, it runs through `execute`: the attempt first
*claims* the trial by creating ``.guild/CLAIM`` exclusively. A second
attempt at the same trial (a task retried after its worker died) finds
the claim taken and only `settle`s the trial: it waits for a live
attempt to end, or stops what the dead attempt left running, so a trial
never has two writers and never reads ``running`` forever.
"""

from __future__ import annotations

import os
import queue as queuelib
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import procs
from .errors import GuildError
from .run import Run

CLAIM = "CLAIM"
SETTLE_TIMEOUT = 10.0
_TICK = 0.05


# ---------------------------------------------------------------------
# Running one trial, anywhere
# ---------------------------------------------------------------------


def claim(run: Run) -> bool:
    """Take `run` for this attempt; False when an earlier attempt has."""
    try:
        fd = os.open(run.guild_path(CLAIM), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (procs.current().encode() + "\n").encode())
    finally:
        os.close(fd)
    return True


def execute(
    run_dir: str | Path,
    *,
    base_env: dict[str, str | None] | None = None,
    tee: Callable[[bytes, int], None] | None = None,
    interrupted=None,
    new_session: bool = True,
    lifecycle: bool = True,
) -> int:
    """Run the trial in `run_dir` here, once; returns its exit status.

    Raises `GuildError` when the directory is not on this machine (an
    executor on workers that share no file system with the batch)."""
    from . import plugins, runner

    path = Path(run_dir)
    if not (path / ".guild").is_dir():
        raise GuildError(
            f"run directory {path} is not on host {_host()}: trials on other "
            "machines need the Guild home on a file system they share"
        )
    run = Run.for_dir(str(path))
    if not claim(run):
        return settle(run)
    hooks = {}
    if lifecycle:
        pm = _plugin_manager(os.environ.get(plugins.DISABLE_ENV, ""))
        hooks = dict(
            on_started=lambda r: plugins.call_lifecycle(pm, "guild_run_starting", run=r),
            on_stopped=lambda r: plugins.call_lifecycle(pm, "guild_run_stopped", run=r),
        )
    return runner.start(
        run, echo=False, tee=tee, interrupted=interrupted, base_env=base_env,
        new_session=new_session, **hooks,
    )


_PLUGIN_MANAGERS: dict[str, Any] = {}


def _plugin_manager(disabled: str):
    """One plugin manager per process (and plugin selection): a worker
    runs many trials, and loading entry points takes tens of ms."""
    from . import plugins

    pm = _PLUGIN_MANAGERS.get(disabled)
    if pm is None:
        pm = _PLUGIN_MANAGERS[disabled] = plugins.get_plugin_manager()
    return pm


def settle(run: Run, timeout: float = SETTLE_TIMEOUT) -> int:
    """The exit status of a trial an earlier attempt claimed, once it
    has one. A live attempt (its claimer or supervisor alive) is left to
    finish; a script whose supervisor died (its worker was killed) is
    stopped, with its process group, and recorded terminated."""
    claimer = _claimer(run)
    while True:
        fresh = Run(run.id, run.path)
        status = fresh.get("exit_status")
        if status is not None:
            return int(status)
        # The attempt that claimed it lives (its worker too): it records
        # the end, even if it has not started the script yet.
        if fresh.supervisor() is None and not procs.alive(claimer):
            break
        time.sleep(_TICK)
    orphan = fresh.run_process()
    if orphan is not None:
        _stop_group(orphan, timeout)
    fresh = Run(run.id, run.path)
    status = fresh.get("exit_status")
    if status is None:
        status = -int(signal.SIGTERM)
        fresh.clear_markers("PENDING")
        try:
            fresh.record_end(status)
        except Exception:  # noqa: BLE001 - the run may be gone
            pass
    return int(status)


def _claimer(run: Run) -> procs.Owner | None:
    try:
        return procs.Owner.decode(run.guild_path(CLAIM).read_text())
    except OSError:
        return None


def _stop_group(owner: procs.Owner, timeout: float) -> None:
    """SIGTERM to `owner`'s process group (it leads one: trials start
    in their own session), SIGKILL after `timeout`."""
    if not procs.alive(owner):
        return
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        if not procs.send_group(owner, signum):
            return
        deadline = time.monotonic() + wait
        while procs.alive(owner) and time.monotonic() < deadline:
            time.sleep(_TICK)
        if not procs.alive(owner):
            return


def _host() -> str:
    from . import util

    return util.hostname()


# ---------------------------------------------------------------------
# The local executor: threads of this process
# ---------------------------------------------------------------------


class LocalExecutor:
    """Runs up to `slots` trials at once, each supervised by a thread of
    this process, its output lines prefixed with the trial's short id."""

    name = "local"
    shows_output = True

    def __init__(self, slots: int, out=None, err=None):
        self.slots = max(1, int(slots))
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr.buffer
        self._ended: queuelib.Queue = queuelib.Queue()
        # Reentrant: stop() runs from a signal handler in the main thread.
        self._lock = threading.RLock()
        self._running: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []

    def describe(self) -> str:
        return f"{self.slots} local workers"

    def submit(self, run: Run) -> None:
        from . import runner

        interrupted = runner.Interrupted()
        prefix = f"[{run.short_id}] ".encode()

        def tee(line: bytes, stream_id: int) -> None:
            term = self.err if stream_id == 1 else self.out
            if not line.endswith(b"\n"):
                line += b"\n"
            with self._lock:
                try:
                    term.write(prefix + line)
                    term.flush()
                except (OSError, ValueError):
                    pass

        def work():
            try:
                status = execute(run.path, tee=tee, interrupted=interrupted, new_session=False)
            except BaseException as e:  # noqa: BLE001 - reported as the trial's end
                sys.stderr.write(f"guild: trial {run.short_id}: {e}\n")
                status = 1
            finally:
                with self._lock:
                    self._running.pop(run.id, None)
            self._ended.put((run, status))

        with self._lock:
            self._running[run.id] = interrupted
        t = threading.Thread(target=work, name=f"trial-{run.short_id}", daemon=True)
        self._threads.append(t)
        t.start()

    def wait(self, timeout: float) -> list[tuple[Run, int]]:
        ended = []
        try:
            ended.append(self._ended.get(timeout=timeout))
            while True:
                ended.append(self._ended.get_nowait())
        except queuelib.Empty:
            pass
        return ended

    def stop(self, signum: int) -> None:
        with self._lock:
            running = list(self._running.values())
        for interrupted in running:
            interrupted.receive(signum)

    def close(self) -> None:
        for t in self._threads:
            t.join(timeout=1.0)
