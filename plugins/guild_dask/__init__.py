"""Built-in plugin ``dask``: a batch's trials on a Dask cluster.

``guild run train.py x=[1,2,3,4] --dask [tcp://HOST:PORT]`` submits each
trial as a Dask task; the task runs the trial's directory with
``guild_core.executors.execute`` in a worker, which records it exactly
as a local run is recorded. Without an address (and without
``$GUILD_DASK_SCHEDULER``) the executor starts a local cluster of
``--workers`` processes (2 by default) and closes it at the end.
``guild run dask:queue`` is a queue whose staged runs go to the cluster.

Workers must see the run directories at the path the submitting guild
wrote them (the same machine, or a shared file system); a worker that
cannot is reported as the trial's one-line error.

This module is what workers import to run a task (`run_trial`,
`signal_trials`, pickled by reference), so it imports only guild's
hook marker: Dask itself is imported by `guild_dask.executor`, when an
executor is made.
"""

from __future__ import annotations

import os
import signal

from guild_core.hookspecs import hookimpl

NAME = "dask"
DESCRIPTION = (
    "Dask runs them on the cluster of the scheduler at tcp://HOST:PORT, else of "
    "$GUILD_DASK_SCHEDULER, else on a local cluster it starts. A run tagged "
    "dask:NAME=N needs N of worker resource NAME."
)


@hookimpl(trylast=True)
def guild_register_executors(register):
    register(NAME, _factory, description=DESCRIPTION, address_flag="scheduler")


def _factory(ctx):
    from .executor import DaskExecutor

    return DaskExecutor(ctx)


# ---------------------------------------------------------------------
# What runs in a worker
# ---------------------------------------------------------------------


def run_trial(run_dir: str, base_env: dict[str, str | None]):
    """The task of one trial: its exit status, or ``("error", message)``
    when the trial cannot be run here (its directory is not on this
    worker's machine).

    A retried task (its first worker died) finds the trial claimed and
    settles it instead: `execute` does that. Anything unexpected stops
    what this attempt started and records the trial failed before the
    exception goes back to the client, so no trial reads running under
    a worker that stopped supervising it."""
    from guild_core import executors
    from guild_core.errors import GuildError

    try:
        return executors.execute(run_dir, base_env=base_env, new_session=True)
    except GuildError as e:
        return ("error", str(e))
    except BaseException:
        _abandon(run_dir)
        raise


def _abandon(run_dir: str) -> None:
    from guild_core import executors, procs
    from guild_core.run import Run

    try:
        run = Run.for_dir(run_dir)
        claimed = run.guild_path(executors.CLAIM).read_text().strip()
        if claimed != procs.current().encode() or run.get("exit_status") is not None:
            return  # not this process's attempt, or already recorded
        orphan = run.run_process()
        if orphan is not None:
            _signal_group(orphan, signal.SIGKILL)
        run.clear_markers("PENDING")
        run.record_end(1)
    except Exception:  # noqa: BLE001 - the original error matters more
        pass


def signal_trials(run_dirs: list[str], signum: int) -> list[str]:
    """Send `signum` to the script (and its process group) of each trial
    in `run_dirs` running on this machine; the run directories whose
    script was signalled. Run on every worker (``Client.run``) to stop a
    batch: a trial's supervisor is a worker thread, which records the
    script's end as the trial's, so the worker itself is left alone."""
    from guild_core.run import Run

    done = []
    for run_dir in run_dirs:
        try:
            run = Run.for_dir(run_dir)
            if run.get("exit_status") is not None:
                continue
            proc = run.run_process()  # alive here, pid and start time
        except Exception:  # noqa: BLE001 - not visible from this machine
            continue
        if proc is not None and _signal_group(proc, signum):
            done.append(run_dir)
    return done


def _signal_group(owner, signum: int) -> bool:
    """`signum` to `owner`'s process group when it leads one (trials
    start in their own session), else to `owner` alone."""
    from guild_core import procs

    try:
        if os.getpgid(owner.pid) == owner.pid and procs.alive(owner):
            os.killpg(owner.pid, signum)
            return True
    except (ProcessLookupError, PermissionError):
        return False
    return procs.send(owner, signum)
