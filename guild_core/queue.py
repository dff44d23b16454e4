"""Queues: ``guild run queue`` starts staged runs, oldest first.

A queue is a run of its own, of the built-in operation ``queue``, whose
command is this module (``python -um guild_core.queue``), as Guild AI's
is its ``queue_main``. It polls ``runs/`` for staged runs and starts each
in its own supervising process (`guild_core.background`, not detached),
so every run it starts is an ordinary run recorded whole. Slots bound
how many run at once: ``workers`` of them, or one per GPU of ``gpus``
(each started run sees its own GPU through ``CUDA_VISIBLE_DEVICES``).

A staged run is started by whoever *claims* it (`claim`): the rename of
its ``.guild/STAGED`` marker to ``PENDING``. One rename succeeds; every
other claimer's fails with FileNotFoundError, so two queues, or a queue
and ``guild run --start``, never start the same run.

Stopped (``guild stop``: SIGTERM; Ctrl-C: SIGINT), a queue claims no more
runs, stops the runs it started (they end ``terminated``) and ends by
the signal, leaving the other staged runs staged.

``guild run NAME:queue``, for an executor NAME a plugin registers
(``guild_register_executors``), is the same queue with its runs
submitted to that executor instead of started here: slots are the
executor's, its address is the flag the executor names, and a run the
executor refuses (``submit`` raising `GuildError`) is left staged.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import home, procs
from .run import OpRef, Run

MODULE = "guild_core.queue"
OP_NAME = "queue"
DEFAULT_POLL_INTERVAL = 10
STOP_TIMEOUT = 10.0
_TICK = 0.05

DESCRIPTION = """Start a queue

A queue polls for staged runs and starts them in the order they were
staged. By default, a queue runs staged runs even if there are other
runs in progress; with `wait-for-running` it waits until other runs
finish before starting one.

Use `run-once` to start staged runs and stop without waiting for more.

`workers` runs that many staged runs at once (default 1). With `gpus`
(a comma-separated list of GPU ids) each GPU is a slot: a started run
sees its own GPU through CUDA_VISIBLE_DEVICES, one run per GPU at a
time. A run staged with --gpus waits for those GPUs."""


# ---------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------


def claim(run: Run, owner: procs.Owner | None = None) -> bool:
    """Take staged `run` for `owner` (this process by default), to start
    it. True when this claim won: ``STAGED`` was renamed to ``PENDING``
    here, so the run never reads as anything but staged or pending;
    False when another claimer's rename came first (or the run is not
    staged)."""
    try:
        os.rename(run.guild_path("STAGED"), run.guild_path("PENDING"))
    except FileNotFoundError:
        return False
    run.mark_pending(owner or procs.current())
    return True


def release(run: Run) -> None:
    """Undo a `claim` whose run was not started: staged again."""
    run.guild_path("STAGED").touch()
    run.clear_markers("PENDING")


def staged_runs(root: Path | None = None) -> list[Run]:
    """The staged runs under ``runs/``, oldest staged first (queue runs
    left out), read from the directory, not the run index: what was
    claimed a moment ago is not listed."""
    root = root or home.runs_dir()
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    runs = []
    for entry in entries:
        if entry.name.startswith(".") or not os.path.exists(os.path.join(entry.path, ".guild", "STAGED")):
            continue
        run = Run.for_dir(entry.path)
        if not is_queue(run):
            runs.append(run)
    return sorted(runs, key=lambda r: (r.get("started") or r.get("initialized") or 0, r.id))


def is_queue(run: Run) -> bool:
    """A queue's run: ``queue``'s or an executor's ``NAME:queue``'s."""
    opref = run.opref
    return opref is not None and opref.op == OP_NAME and opref.type == "builtin"


# ---------------------------------------------------------------------
# The operation
# ---------------------------------------------------------------------


EXECUTOR_DESCRIPTION = """Start a queue on executor {name}

A queue polls for staged runs and submits them to executor {name},
oldest staged first. `workers` is how many of its runs run at once
(default: the executor's slots); `{address}` is where the executor runs
them (default: the executor's own choice).

{what}

Use `run-once` to start staged runs and stop without waiting for more.
With `wait-for-running` the queue waits until other runs finish before
starting one. There is no `gpus` flag: GPUs are the executor's to give
out."""


def opdef(cwd: Path, executor=None):
    """The built-in ``queue`` operation (Guild AI's flags, plus
    ``workers``), run from `cwd` with no source code; with `executor`
    (a registry entry), its ``NAME:queue``: no ``gpus``, and the flag
    the executor names for its address."""
    from .flagdefs import FlagDef
    from .opdef import OpDef
    from .sourcecode import SourceSpec

    flagdefs = {
        "poll-interval": FlagDef("poll-interval", type="number", default=DEFAULT_POLL_INTERVAL,
                                 description="Minimum number of seconds between polls"),
        "run-once": FlagDef("run-once", type="boolean", default=False, arg_switch=True,
                            description="Run all staged runs and stop"),
        "wait-for-running": FlagDef("wait-for-running", type="boolean", default=False, arg_switch=True,
                                    description="Wait for other runs to stop before starting staged runs"),
        "gpus": FlagDef("gpus", type="string", null_label="unspecified",
                        description="GPU ids, one slot each: a started run sees its own GPU"),
        "workers": FlagDef("workers", type="int",
                           description="How many staged runs to run at once (default 1, or one per GPU)"),
    }
    model, args, description = "", "", DESCRIPTION
    if executor is not None:
        model = executor.name
        address = executor.address_flag
        del flagdefs["gpus"]
        flagdefs["workers"] = FlagDef(
            "workers", type="int", null_label="auto",
            description="How many staged runs to run at once (default: the executor's slots)",
        )
        flagdefs[address] = FlagDef(
            address, type="string", arg_name="address", null_label="unspecified",
            description=f"Where executor {executor.name} runs the queue's runs",
        )
        args = f" --executor {executor.name}"
        import textwrap

        what = executor.description or f"The executor comes from plugin {executor.plugin}."
        description = EXECUTOR_DESCRIPTION.format(
            name=executor.name, address=address, what=textwrap.fill(what, 70),
        )
    return OpDef(
        name=f"{model}:{OP_NAME}" if model else OP_NAME,
        project_dir=cwd.resolve(),
        opref=OpRef("builtin", "guildai", _version(), model, OP_NAME),
        flagdefs=flagdefs,
        exec=f"${{python_exe}} -um {MODULE}{args} ${{flag_args}}",
        sourcecode=SourceSpec(enabled=False, digest=False),
        description=description,
        data={"description": description},
    )


def executor_opdef(cwd: Path, name: str):
    """``NAME:queue`` for the executor registered as `name`; raises
    `GuildError` when no plugin registers it."""
    from .plugins import get_plugin_manager
    from .registry import Registry

    return opdef(cwd, Registry(get_plugin_manager()).executor(name))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("guild")
    except Exception:
        return "0"


# ---------------------------------------------------------------------
# The queue's process
# ---------------------------------------------------------------------


@dataclass
class Options:
    poll_interval: float = DEFAULT_POLL_INTERVAL
    run_once: bool = False
    wait_for_running: bool = False
    gpus: list[str] | None = None
    workers: int | None = None
    # ``NAME:queue``: the executor's name and address.
    executor: str | None = None
    address: str | None = None


@dataclass
class _Started:
    run: Run
    proc: subprocess.Popen | None  # None: submitted to the executor
    slots: list[int]
    status: int | None = None  # the executor's report of its end

    def ended(self) -> bool:
        return self.proc.poll() is not None if self.proc is not None else self.status is not None


@dataclass
class Queue:
    """Claims and starts staged runs while slots are free. `say` prints
    a line of the queue's log; `self_id` is the queue run's id."""

    options: Options
    say: Callable[[str], None] = lambda msg: print(msg, flush=True)
    self_id: str | None = None
    stopping: int | None = None
    children: list[_Started] = field(default_factory=list)
    executor: object = None
    _noted: set = field(default_factory=set)
    _refused: set = field(default_factory=set)

    def __post_init__(self):
        opts = self.options
        self.gpus = list(opts.gpus or []) if not opts.executor else []
        self.slot_count = len(self.gpus) or max(1, opts.workers or 1)
        self.limit = max(1, opts.workers) if opts.workers else self.slot_count

    # -- the loop -------------------------------------------------------

    def run(self) -> int:
        """Until stopped (or, run once, until nothing is left to start
        and every started run has ended). Returns the signal that stopped
        it, or 0."""
        if self.options.executor:
            self._open_executor()
            try:
                return self._run()
            finally:
                self.executor.close()
        return self._run()

    def _open_executor(self) -> None:
        """The executor ``NAME:queue`` submits to; its slots are the
        queue's."""
        from .plugins import get_plugin_manager
        from .registry import Registry
        from .scheduler import ExecutorContext

        opts = self.options
        entry = Registry(get_plugin_manager()).executor(opts.executor)
        ctx = ExecutorContext(workers=opts.workers, address=opts.address, resources={}, say=self.say)
        self.executor = entry.value(ctx)
        self.slot_count = self.limit = max(1, int(self.executor.slots))
        self.say(f"Queue runs on {self.executor.describe()}")

    def _run(self) -> int:
        self.say("Starting queue")
        waiting = False
        while self.stopping is None:
            self._reap()
            waiting = self._start_what_fits()
            if self.stopping is not None:
                break
            if self.options.run_once and not waiting and not self.children:
                break
            if not waiting and not self.options.run_once and "idle" not in self._noted:
                self.say("Waiting for staged runs")
                self._noted.add("idle")
            self._sleep()
        if self.stopping is not None:
            self._stop_children()
        self.say("Stopping queue")
        return self.stopping or 0

    def _sleep(self) -> None:
        """Until the poll interval has passed, a started run ends, or
        the queue is stopped."""
        deadline = time.monotonic() + float(self.options.poll_interval)
        running = len(self.children)
        while self.stopping is None and time.monotonic() < deadline:
            if self.executor is not None:
                self._collect(min(4 * _TICK, max(0.0, deadline - time.monotonic())))
            else:
                time.sleep(_TICK)
            if sum(1 for c in self.children if not c.ended()) < running:
                return

    def _collect(self, timeout: float) -> None:
        """The ends the executor reports, noted on the runs they end."""
        mine = {c.run.id: c for c in self.children}
        for run, status in self.executor.wait(timeout):
            child = mine.get(run.id)
            if child is not None:
                child.status = int(status)

    def _free_slots(self) -> list[int]:
        busy = {i for c in self.children for i in c.slots}
        return [i for i in range(self.slot_count) if i not in busy]

    def _start_what_fits(self) -> bool:
        """Start staged runs into free slots, oldest first. True while a
        staged run this queue could start waits (for a slot, or for
        other runs to finish)."""
        waiting = False
        staged = staged_runs()
        if staged and self.options.wait_for_running:
            blocking = self._blocking_runs()
            if blocking:
                key = ("blocked", tuple(r.id for r in blocking))
                if key not in self._noted:
                    self.say("Waiting for runs to finish: " + ", ".join(r.id for r in blocking))
                    self._noted.add(key)
                return True
        for run in staged:
            if self.stopping is not None:
                return True
            if run.id in self._refused:
                continue  # the executor cannot take it
            slots = self._slots_for(run)
            if slots is None:
                continue  # never startable here
            if not slots or len(self.children) >= self.limit:
                waiting = True
                continue
            if self._start(run, slots):
                self._noted.discard("idle")
        return waiting

    def _slots_for(self, run: Run) -> list[int] | None:
        """The free slots `run` would take (empty: none free now), or
        None when this queue cannot start it (its GPUs are not the
        queue's)."""
        free = self._free_slots()
        wanted = (run.get("env") or {}).get("CUDA_VISIBLE_DEVICES")
        if not self.gpus or wanted is None or wanted == "":
            return free[:1]
        ids = [g.strip() for g in str(wanted).split(",") if g.strip()]
        if not set(ids) <= set(self.gpus):
            if ("gpus", run.id) not in self._noted:
                self.say(f"Ignoring staged run {run.id} (GPU spec mismatch: run is {wanted}, queue is {','.join(self.gpus)})")
                self._noted.add(("gpus", run.id))
            return None
        slots = [self.gpus.index(g) for g in ids]
        return slots if all(i in free for i in slots) else []

    def _blocking_runs(self) -> list[Run]:
        from .run import runs_in

        mine = {c.run.id for c in self.children}
        return [
            r for r in runs_in(home.runs_dir())
            if r.id != self.self_id and r.id not in mine and not is_queue(r) and r.status == "running"
        ]

    def _start(self, run: Run, slots: list[int]) -> bool:
        from . import runner

        if not claim(run):
            return False  # another queue or guild run --start has it
        if self.stopping is not None:
            release(run)
            return False
        if self.executor is not None:
            return self._submit(run, slots)
        run_env = run.get("env") or {}
        wanted = run_env.get("CUDA_VISIBLE_DEVICES")
        gpus = ",".join(self.gpus[i] for i in slots) if self.gpus else None
        try:
            if gpus is not None and wanted is None:
                runner.apply_options(run, runner.RunOptions(gpus=gpus))
            env = {k: v for k, v in os.environ.items() if not k.startswith("FLAG_")}
            proc = subprocess.Popen(
                [sys.executable, "-m", "guild_core.background", str(run.path)],
                stdin=subprocess.DEVNULL, env=env,
            )
        except BaseException:
            if gpus is not None and wanted is None:
                # Staged again as it was: bound to no GPU.
                run.write_attr("env", run_env)
            release(run)
            raise
        self.children.append(_Started(run, proc, slots))
        where = f" (CUDA_VISIBLE_DEVICES={gpus})" if gpus is not None and wanted is None else ""
        self.say(f"Starting staged run {run.id}{where}")
        return True

    def _submit(self, run: Run, slots: list[int]) -> bool:
        from . import executors
        from .errors import GuildError

        # Ours by the claim above: an earlier attempt's (a run that ran
        # on an executor before, restaged) must not turn this one away.
        run.clear_markers(executors.CLAIM)
        try:
            self.executor.submit(run)
        except GuildError as e:
            release(run)
            self._refused.add(run.id)
            self.say(f"Ignoring staged run {run.id} ({e})")
            return False
        except BaseException:
            release(run)
            raise
        self.children.append(_Started(run, None, slots))
        self.say(f"Starting staged run {run.id}")
        return True

    def _reap(self) -> None:
        if self.executor is not None:
            self._collect(0)
        for child in list(self.children):
            if child.ended():
                self._finish(child)

    def _finish(self, child: _Started) -> None:
        self.children.remove(child)
        run = Run(child.run.id, child.run.path)
        if child.proc is None:
            # The executor recorded it (or settled it): its status is
            # what the run reads.
            self.say(f"Run {run.id} ended: {run.status}")
            return
        if run.get("exit_status") is None and run.run_process() is None:
            # Its supervisor died before recording the end (stopped
            # before it could start the script, or killed).
            run.clear_markers("PENDING")
            rc = child.proc.returncode
            try:
                run.record_end(-int(self.stopping) if self.stopping else (rc if rc else 1))
            except Exception:
                pass
            run = Run(run.id, run.path)
        self.say(f"Run {run.id} ended: {run.status}")

    # -- stopping -------------------------------------------------------

    def stop(self, signum: int) -> None:
        """From a signal handler: no more claims; the started runs are
        told to stop (their supervisors record them terminated)."""
        if self.stopping is None:
            self.stopping = signum
        if self.executor is not None:
            self.executor.stop(signum)
            return
        self._signal_children(signal.SIGTERM)

    def _signal_children(self, signum: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                try:
                    child.proc.send_signal(signum)
                except OSError:
                    pass

    def _stop_children(self) -> None:
        if self.executor is not None:
            # The executor stops them; their ends still come from it.
            self.executor.stop(self.stopping or signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT + 5
            while self.children and time.monotonic() < deadline:
                self._collect(4 * _TICK)
                for child in [c for c in self.children if c.ended()]:
                    self._finish(child)
            return
        self._signal_children(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(c.proc.poll() is None for c in self.children) and time.monotonic() < deadline:
            time.sleep(_TICK)
        self._signal_children(signal.SIGKILL)
        for child in list(self.children):
            child.proc.wait()
            self._finish(child)


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    p.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
    p.add_argument("--run-once", action="store_true")
    p.add_argument("--wait-for-running", action="store_true")
    p.add_argument("--gpus")
    p.add_argument("--workers", type=int)
    p.add_argument("--executor")
    p.add_argument("--address")
    args = p.parse_args(argv)
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    return Options(
        args.poll_interval, args.run_once, args.wait_for_running, gpus, args.workers,
        args.executor, args.address or None,
    )


def main(argv: list[str] | None = None) -> int:
    """The queue run's process, in its run directory."""
    from .errors import GuildError

    options = parse_args(sys.argv[1:] if argv is None else argv)
    queue = Queue(options, self_id=os.environ.get("RUN_ID"))
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda n, _f: queue.stop(n))
    try:
        stopped = queue.run()
    except GuildError as e:
        # An executor that cannot be had: one line, the queue run fails.
        sys.stderr.write(f"guild: {e}\n")
        return 1
    if stopped:
        # End by the signal, so the queue run reads terminated.
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(stopped, signal.SIG_DFL)
        os.kill(os.getpid(), stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
