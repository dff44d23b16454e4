"""Early stopping of a batch's trials: the pruner's monitor.

A pruner plugin (``guild_register_pruners``) decides; this module
watches and acts. `Monitor` runs beside the batch's trials, wherever
they run (in this process, in worker threads, on Dask workers sharing
the home): it reads each trial's objective from the event files the
runner writes as the trial prints (flushed per scalar), keeps every
trial's history by step, and for each new step of a running trial asks
the pruner whether it goes on. A trial to stop gets the pruning
attributes, its notice file (``$GUILD_PRUNE_FILE``), SIGTERM after the
notice period and SIGKILL after the grace period; the runner records it
as terminated.

Reading the files rather than hooking the runner is what makes the
same monitor right for every executor: a trial's scalars are on disk
wherever it ran, and so are its end and status.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import flags as flagslib
from .errors import FlagError, GuildError
from .run import RUN_ID_P, Run

# The file a trial's script may watch: it appears when the trial is
# about to be stopped (the runner names it in GUILD_PRUNE_FILE).
NOTICE_FILE = "PRUNED"
NOTICE_ENV = "GUILD_PRUNE_FILE"

# Flags every pruner has; the core acts on them, the pruner never sees
# them.
COMMON_FLAGS = {
    "notice": ("seconds between the notice file appearing and SIGTERM", 0.0),
    "grace": ("seconds between SIGTERM and SIGKILL", 5.0),
}

POLL_INTERVAL = 0.01
FINISHED_RECHECK = 0.5


@dataclass
class Prune:
    """A pruner's decision to stop a trial: which `rule` (``median``,
    ``asha``), the `threshold` the trial's value failed to reach, and a
    line saying why."""

    rule: str
    threshold: float | None = None
    reason: str = ""


@dataclass
class History:
    """One trial's objective so far, as a pruner sees it.

    :ivar id: the trial's run id.
    :ivar status: ``running``, ``pending``, ``completed``, ``terminated``
        or ``error``.
    :ivar steps: the steps at which the objective was logged, in order.
    :ivar values: the objective's value at each of them.
    :ivar pruned: whether it was pruned (its status is then terminated).
    """

    id: str
    status: str = "pending"
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    pruned: bool = False
    # Private to the monitor.
    final: bool = False
    seen: int = 0

    @property
    def finished(self) -> bool:
        return self.status not in ("running", "pending", "staged")

    @property
    def completed(self) -> bool:
        return self.status == "completed" and not self.pruned

    def value_at(self, step: int) -> float | None:
        """The last value logged at or before `step`; None when the trial
        has not reached `step`."""
        if not self.steps or self.steps[-1] < step:
            return None
        found = None
        for s, v in zip(self.steps, self.values):
            if s > step:
                break
            found = v
        return found


def pessimistic_value(trial: History, trials: dict[str, History], minimize: bool) -> float | None:
    """A pruned trial's value for an optimizer: its last value or the
    worst final value of the completed trials, whichever is worse. A
    pruned trial was losing; its last value, often from early in
    training, must not pass for a good result."""
    if not trial.values:
        return None
    last = trial.values[-1]
    finals = [t.values[-1] for t in trials.values() if t.completed and t.values]
    if not finals:
        return last
    return max(last, *finals) if minimize else min(last, *finals)


PRUNED_ATTRS = ("pruned", "pruned_step", "pruned_value", "pruned_rule", "pruned_threshold", "pruned_by")


def forget(run: Run) -> None:
    """Clear what pruning recorded on `run`: it is about to run again."""
    for name in PRUNED_ATTRS:
        try:
            os.unlink(run.guild_path("attrs", name))
        except FileNotFoundError:
            pass
    try:
        os.unlink(run.guild_path(NOTICE_FILE))
    except FileNotFoundError:
        pass
    run._cache.clear()


def is_pruned(run: Run | None) -> bool:
    return run is not None and bool(Run(run.id, run.path).get("pruned"))


# ---------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------


def pruner_flags(entry, assigns: list[str], named: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """``(pruner flags, common flags)``: the pruner's defaults, then
    guild.yml's values (`named`), then ``-Fp NAME=VAL``. Raises
    `GuildError`, one line, for an unknown flag or a bad value."""
    try:
        parsed = flagslib.parse_assigns(assigns)
    except FlagError as e:
        raise GuildError(str(e)) from None
    vals = {name: fd.default for name, fd in entry.flags.items()}
    common = {name: default for name, (_help, default) in COMMON_FLAGS.items()}
    hint = f"Flags of pruner {entry.name}: {', '.join(sorted(entry.flags) + ['notice', 'grace'])}."
    for source, items in (("guild.yml", (named or {}).items()), ("-Fp", parsed.items())):
        for name, raw in items:
            if name in COMMON_FLAGS:
                try:
                    val = float(raw)
                except (TypeError, ValueError):
                    raise GuildError(f"invalid value {raw!r} for pruner flag '{name}': a number of seconds is needed") from None
                if val < 0:
                    raise GuildError(f"invalid value {raw!r} for pruner flag '{name}': it cannot be negative")
                common[name] = val
                continue
            fd = entry.flags.get(name)
            if fd is None:
                where = " (in guild.yml)" if source == "guild.yml" else ""
                raise GuildError(f"unsupported flag '{name}' for pruner {entry.name}{where}", hint=hint)
            try:
                # guild.yml's YAML values are checked as typed ones are:
                # a pruner gets values of its flags' types and bounds.
                vals[name] = flagslib.coerce(fd, raw)
            except (FlagError, ValueError) as e:
                # The flag's own message names the value and flag again.
                why = str(e).rsplit(": ", 1)[-1]
                raise GuildError(f"invalid value {raw!r} for pruner flag '{name}': {why}") from None
    return vals, common


@dataclass
class PrunerContext:
    """What a pruner is told (`guild_core.hookspecs.PrunerContext`)."""

    flags: dict[str, Any]
    objective: str
    minimize: bool
    seed: int


def make(entry, flag_vals: dict[str, Any], objective: str, minimize: bool, seed: int):
    """The pruner of `entry`; its factory may refuse its flags with a
    `ValueError` or `GuildError`, turned into one line."""
    try:
        return entry.factory(PrunerContext(dict(flag_vals), objective, minimize, seed))
    except (ValueError, TypeError, GuildError) as e:
        raise GuildError(f"pruner {entry.name}: {e}") from None


def chosen_pruner(op_data: dict[str, Any], optimizer_data: dict[str, Any] | None, name: str | None):
    """``(name, flags from guild.yml)``: ``--pruner NAME`` first, then
    the optimizer's ``pruner:`` in guild.yml, then the operation's. A
    ``pruner:`` is a name (``median``) or a mapping with ``name`` and
    the pruner's flags."""
    for spec in ((optimizer_data or {}).get("pruner"), op_data.get("pruner")):
        if spec is None:
            continue
        spec_name, flags = _spec(spec)
        if name and name != spec_name:
            return name, {}
        return name or spec_name, flags
    return name, {}


def _spec(spec) -> tuple[str | None, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        data = dict(spec)
        name = data.pop("name", None) or data.pop("algorithm", None)
        if not name:
            raise GuildError("a pruner in guild.yml needs a name (pruner: median, or pruner: {name: median, ...})")
        return str(name), data
    raise GuildError(f"invalid pruner in guild.yml: {spec!r}")


# ---------------------------------------------------------------------
# The monitor
# ---------------------------------------------------------------------


class Monitor:
    """Watches a batch's trials and stops those its pruner says to.

    `start` begins a thread; `close` ends it. `pruned_value(trial)` is
    what the optimizer is told for a pruned trial."""

    def __init__(self, batch: Run, pruner, name: str, objective: str, *, notice: float = 0.0,
                 grace: float = 5.0, say: Callable[[str], None] = lambda line: None):
        self.batch = batch
        self.pruner = pruner
        self.name = name
        self.objective = objective
        self.notice = notice
        self.grace = grace
        self.say = say
        self.histories: dict[str, History] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stoppers: list[threading.Thread] = []
        self._known: dict[str, Run] = {}
        self._rechecked = 0.0

    def start(self) -> "Monitor":
        self._thread = threading.Thread(target=self._loop, name="guild-pruner", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for t in self._stoppers:
            t.join(self.notice + self.grace + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001  a pruner's bug must not leave trials unwatched silently
                self.say(f"Pruner {self.name} failed: {type(e).__name__}: {e}; trials are no longer pruned")
                return
            self._stop.wait(POLL_INTERVAL)

    def _trials(self) -> list[Run]:
        """The batch's trials: its links, each checked once (a poll
        lists the batch directory, and stats only links new since)."""
        from . import home

        try:
            names = os.listdir(self.batch.path)
        except OSError:
            return list(self._known.values())
        root = home.runs_dir()
        for gone in self._known.keys() - set(names):
            del self._known[gone]  # deleted meanwhile
        for name in names:
            if name not in self._known and RUN_ID_P.match(name) and os.path.islink(self.batch.path / name):
                path = root / name
                if (path / ".guild").is_dir():
                    self._known[name] = Run(name, path)
        return list(self._known.values())

    def poll(self) -> None:
        """Read what trials logged since the last poll; ask the pruner
        about each new step of each running trial, in step order."""
        from . import series

        now = time.monotonic()
        recheck = now - self._rechecked >= FINISHED_RECHECK
        if recheck:
            self._rechecked = now
        for run in self._trials():
            with self.lock:
                h = self.histories.get(run.id)
                if h is None:
                    h = self.histories[run.id] = History(run.id, pruned=is_pruned(run))
            if h.final:
                # A finished trial is read again only once it runs again
                # (a restart): its LOCK is back. Looked for twice a
                # second, not at every poll: a restart is no hurry, and a
                # large batch has many finished trials.
                if not recheck or not run.guild_path("LOCK").exists():
                    continue
                with self.lock:
                    h = self.histories[run.id] = History(run.id, pruned=is_pruned(run), seen=h.seen)
            status = run.status
            steps, values = series.points(str(run.guild_path()), self.objective)
            if len(steps) < h.seen:
                # Its event files were replaced: read anew.
                h.steps, h.values, h.seen = [], [], 0
            new = range(h.seen, len(steps))
            h.status = status
            for i in new:
                # Event files hold 32-bit floats: the value as logged
                # (0.3, not 0.30000001192092896).
                v = _as_logged(values[i])
                step = int(steps[i])
                h.seen = i + 1
                if v != v:
                    continue
                if h.steps and step < h.steps[-1]:
                    # Steps start again: a new attempt at the trial (a
                    # restart logs after its earlier attempt's values).
                    h.steps, h.values = [], []
                h.steps.append(step)
                h.values.append(v)
                if status == "running" and not h.pruned:
                    with self.lock:
                        decision = self.pruner.should_prune(h, self.histories)
                    if decision:
                        self._prune(run, h, decision)
            if h.finished:
                h.final = True

    def _prune(self, run: Run, h: History, decision) -> None:
        rule = getattr(decision, "rule", None) or self.name
        threshold = getattr(decision, "threshold", None)
        reason = getattr(decision, "reason", "") or ""
        step, value = h.steps[-1], h.values[-1]
        h.pruned = True
        attrs = {
            "pruned": True,
            "pruned_step": step,
            "pruned_value": value,
            "pruned_rule": rule,
            "pruned_threshold": threshold,
            "pruned_by": self.name,
        }
        for name, val in attrs.items():
            run.write_attr(name, val)
        notice = {"step": step, "value": value, "rule": rule, "threshold": threshold, "reason": reason}
        try:
            tmp = run.guild_path(NOTICE_FILE + ".tmp")
            tmp.write_text(json.dumps(notice) + "\n")
            os.replace(tmp, run.guild_path(NOTICE_FILE))
        except OSError:
            pass
        why = f": {reason}" if reason else ""
        self.say(f"Pruning trial {run.short_id} at step {step} ({rule}){why}")
        t = threading.Thread(target=self._stop_trial, args=(run,), name="guild-prune-stop", daemon=True)
        self._stoppers.append(t)
        t.start()

    def _stop_trial(self, run: Run) -> None:
        """SIGTERM after the notice period, SIGKILL after the grace
        period: only the trial's own process (or group), never the
        guild process supervising it."""
        from . import procs

        if self.notice and _wait_end(run, self.notice):
            return
        proc = _trial_process(run)
        if proc is None:
            return
        group = run.stopped_by_group()
        send = procs.send_group if group else procs.send
        send(proc, signal.SIGTERM)
        if _wait_end(run, self.grace, proc):
            return
        if procs.alive(proc):
            send(proc, signal.SIGKILL)

    def pruned_value(self, trial: Run) -> float | None:
        """What the optimizer is told for pruned `trial`: the pruner's
        `pruned_value` if it has one, else nothing (None: ignored)."""
        fn = getattr(self.pruner, "pruned_value", None)
        if fn is None:
            return None
        with self.lock:
            h = self.histories.get(trial.id)
            if h is None:
                return None
            val = fn(h, self.histories)
        return None if val is None else float(val)


def _as_logged(val) -> float:
    import numpy as np

    return float(str(np.float32(val)))


def _trial_process(run: Run, timeout: float = 5.0):
    """The trial's process once it is recorded (a trial is pruned on
    its first scalars, which may come before its process is on file)."""
    deadline = time.time() + timeout
    while True:
        fresh = Run(run.id, run.path)
        proc = fresh.run_process()
        if proc is not None or time.time() > deadline or fresh.get("exit_status") is not None:
            return proc
        time.sleep(0.02)


def _wait_end(run: Run, seconds: float, proc=None) -> bool:
    """Whether the trial ended within `seconds`."""
    from . import procs

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and not procs.alive(proc):
            return True
        if Run(run.id, run.path).get("exit_status") is not None:
            return True
        time.sleep(0.02)
    return False
