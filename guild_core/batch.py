"""Batches: the context optimizers receive, and the batch driver.

Search-space values (`BatchContext.space`) are one of:

- a fixed value: ``0.1``, ``"adam"``;
- a list of choices: ``[1, 2, 3]``;
- a search function as ``(name, args)``: ``("uniform", (0.0, 1.0))``,
  ``("loguniform", (1e-5, 1e-1))``. Bounds are numbers, ``low < high``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .flagdefs import FlagDef


@dataclass
class BatchContext:
    """What an optimizer is told about the batch it serves (see
    `guild_core.hookspecs.BatchContext` for the documented protocol)."""

    space: dict[str, Any]
    flagdefs: dict[str, FlagDef] = field(default_factory=dict)
    opt_flags: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    objective: str = "loss"
    minimize: bool = True
    max_trials: int = 20


# ---------------------------------------------------------------------
# The batch driver
# ---------------------------------------------------------------------

import itertools
import os
import sys
from typing import Callable

from . import home, procs, util
from .flagfuncs import batch_names
from .flags import encode_value
from .run import OpRef, Run

BATCH_OPREF_TYPE = "builtin"


def space_of(flags: dict[str, Any], user_flags: dict[str, Any], flagdefs: dict[str, FlagDef]) -> dict[str, Any]:
    """Flag values with sequences expanded and search functions parsed."""
    from . import flagfuncs

    from .flags import coerce

    space = dict(flags)
    for name in batch_names(user_flags, flagdefs):
        val = flagfuncs.expand(flags[name])
        if isinstance(val, list) and name in flagdefs:
            # A sequence over an int flag gives ints, over a float flag floats.
            val = coerce(flagdefs[name], val)
        space[name] = val
    return space


def chosen_optimizer(op_data: dict[str, Any], name: str | None, optimize: bool) -> tuple[str | None, dict[str, Any]]:
    """``(algorithm, flags)`` of the optimizer a batch uses: `name` (a
    name from the operation's ``optimizers:``, else an algorithm), or
    with `optimize` (``-O``) the operation's default optimizer (the one
    marked ``default: yes``, or the only one; else gp), as Guild AI
    chooses."""
    defs = _optimizer_defs(op_data)
    if name:
        if name in defs:
            return defs[name]["algorithm"], defs[name]["flags"]
        return name, {}
    if not optimize:
        return None, {}
    marked = [d for d in defs.values() if d["default"]]
    if len(defs) == 1:
        marked = list(defs.values())
    if marked:
        return marked[0]["algorithm"], marked[0]["flags"]
    return "gp", {}


def _optimizer_defs(op_data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = op_data.get("optimizers")
    if raw is None and op_data.get("optimizer") is not None:
        one = op_data["optimizer"]
        raw = {one: {}} if isinstance(one, str) else {one.get("algorithm"): one}
    if isinstance(raw, list):
        raw = {str(item): {} for item in raw} if all(isinstance(i, str) for i in raw) else {
            str(i.get("algorithm") if isinstance(i, dict) else i): (i if isinstance(i, dict) else {}) for i in raw
        }
    defs = {}
    for opt_name, data in (raw or {}).items():
        data = dict(data or {})
        algorithm = data.pop("algorithm", None) or opt_name
        default = bool(data.pop("default", False))
        defs[str(opt_name)] = {"algorithm": str(algorithm), "default": default, "flags": data}
    return dict(sorted(defs.items()))


def objective_of(spec: Any) -> tuple[str, bool]:
    """``(scalar, minimize)`` from guild.yml's ``objective``: ``loss``,
    ``-acc`` (maximize), ``{maximize: acc}`` or ``{minimize: loss}``;
    loss, minimized, when not given."""
    if isinstance(spec, dict):
        if spec.get("maximize"):
            return str(spec["maximize"]), False
        if spec.get("minimize"):
            return str(spec["minimize"]), True
    if isinstance(spec, str) and spec.strip():
        spec = spec.strip()
        return (spec[1:], False) if spec.startswith("-") else (spec, True)
    return "loss", True


# guild.yml's distribution names, as the search functions spell them.
_DISTRIBUTIONS = {None: "uniform", "uniform": "uniform", "log-uniform": "loguniform", "loguniform": "loguniform"}


def flag_search_space(flagdefs: dict[str, FlagDef], user_flags: dict[str, Any]) -> dict[str, Any]:
    """Search dimensions for flags the user did not set: a flag with
    choices varies over them, one with ``min`` and ``max`` over that
    range (its ``distribution``), as Guild AI's optimizers take them."""
    from . import flagfuncs
    from .flags import encode_value

    dims: dict[str, Any] = {}
    for name, fd in flagdefs.items():
        if name in user_flags or isinstance(fd.default, list):
            continue
        if fd.choices:
            dims[name] = list(fd.choices)
        elif fd.min is not None and fd.max is not None and fd.min < fd.max:
            func = _DISTRIBUTIONS.get(fd.distribution, fd.distribution)
            dims[name] = flagfuncs.expand(f"{func}[{encode_value(fd.min)}:{encode_value(fd.max)}]")
    return dims


def is_search(val: Any) -> bool:
    return isinstance(val, tuple)


def needs_batch(space: dict[str, Any], user_flags: dict[str, Any]) -> bool:
    return any(isinstance(space[n], (list, tuple)) for n in user_flags)


# A grid past this many trials is a typo (three range[1:1000] flags),
# not a sweep anyone can run: refused before it is built.
MAX_GRID = 100_000


def grid_trials(space: dict[str, Any], user_flags: dict[str, Any], max_trials: int | None, seed: int) -> list[dict[str, Any]]:
    """Every combination of the value lists, flags in name order with the
    first varying slowest; `max_trials` keeps a seeded subset, in order."""
    names = sorted(space)
    axes = [
        space[n] if n in user_flags and isinstance(space[n], list) else [space[n]]
        for n in names
    ]
    total = 1
    for axis in axes:
        total *= len(axis)
    keep = None
    if max_trials is not None and max_trials < total:
        import random

        keep = sorted(random.Random(seed).sample(range(total), max_trials))
    elif total > MAX_GRID:
        from .errors import GuildError

        raise GuildError(
            f"the grid has {total:,} trials, more than {MAX_GRID:,}",
            hint="Use -m/--max-trials N to run a sample of it, or a search range (uniform[LOW:HIGH]) with an optimizer.",
        )
    if keep is None:
        return [dict(zip(names, combo)) for combo in itertools.product(*axes)]
    return [dict(zip(names, _combo(axes, i))) for i in keep]


def _combo(axes: list[list[Any]], index: int) -> list[Any]:
    """The `index`th of itertools.product(*axes), without the others."""
    out = []
    for axis in reversed(axes):
        index, i = divmod(index, len(axis))
        out.append(axis[i])
    return out[::-1]


def format_trial(flags: dict[str, Any]) -> str:
    return ", ".join(f"{name}={encode_value(val)}" for name, val in sorted(flags.items()))


def trials_table(trials: list[dict[str, Any]]) -> list[str]:
    names = sorted({n for t in trials for n in t})
    rows = [["#", *names]]
    for i, t in enumerate(trials, 1):
        rows.append([str(i), *(encode_value(t[n]) if n in t else "" for n in names)])
    return util.table(rows)


def create_batch(
    opdef,
    base_flags: dict[str, Any],
    user_flags: dict[str, Any],
    launcher: str | None,
    *,
    optimizer: str | None,
    opt_flags: dict[str, Any],
    max_trials: int | None,
    seed: int,
    objective: str | None,
    run_params: dict[str, Any],
    staged: bool = False,
) -> Run:
    """Create the batch run, whole: its attributes and its prototype
    (``.guild/proto``, the trial operation with the batch's flags)."""
    from . import __version__, runner

    with runner.whole_run_dir() as (run_id, tmp, final):
        batch = Run(run_id, tmp)
        batch.guild_path("attrs").mkdir(parents=True)
        runner.assemble(
            tmp / ".guild" / "proto", Run(run_id, final / ".guild" / "proto"),
            opdef, base_flags, user_flags, launcher,
        )

        def write(name, val):
            batch.write_attr(name, val, atomic=False)

        write("id", run_id)
        write("initialized", util.now_micros())
        write("flags", opt_flags)
        write("user_flags", {})
        write("random_seed", seed)
        write("max_trials", max_trials)
        if objective:
            write("objective", objective)
        write("run_params", run_params)
        write("host", util.hostname())
        write("op", {"op-cmd": {"cmd-args": []}, "optimizer": optimizer})
        write("deps", {})
        batch.write_opref(OpRef(BATCH_OPREF_TYPE, "guild", __version__, "", optimizer or "+"))
        if staged:
            write("started", util.now_micros())
            batch.guild_path("STAGED").touch()
        else:
            batch.mark_pending(procs.current())
    return Run(run_id, final)


def trial_links(batch: Run) -> dict[str, Run]:
    """The batch's trials, by id, from its links. Links to deleted runs
    are removed: those trials are created again when needed."""
    trials = {}
    try:
        names = os.listdir(batch.path)
    except OSError:
        return trials
    for name in names:
        link = batch.path / name
        if not link.is_symlink():
            continue
        target = home.runs_dir() / name
        if target.is_dir():
            trials[name] = Run(name, target)
        else:
            link.unlink()
    return trials


def _link(batch: Run, trial: Run) -> None:
    link = batch.path / trial.id
    if not link.is_symlink():
        os.symlink(os.path.join("..", trial.id), link)


def _key(flags: dict[str, Any]) -> str:
    return format_trial(flags)


class Driver:
    """Runs a batch: creates or reuses trial runs and starts them.

    `make_trial(flags)` creates a trial run of the operation; `start(run)`
    runs it and returns its exit status.
    """

    def __init__(
        self,
        batch: Run,
        op_name: str,
        make_trial: Callable[[dict[str, Any], bool], Run],
        start: Callable[[Run], int],
        *,
        needed: bool = False,
        init_only: bool = False,
        stage_trials: bool = False,
        fail_on_trial_error: bool = False,
        out=None,
        rerun_pruned: bool = False,
    ):
        self.batch = batch
        self.op_name = op_name
        self.make_trial = make_trial
        self.start_trial = start
        self.needed = needed
        self.init_only = init_only
        self.stage_trials = stage_trials
        self.fail_on_trial_error = fail_on_trial_error
        self.rerun_pruned = rerun_pruned
        # The pruning monitor, when a pruner watches the trials.
        self.monitor = None
        self.out = out or sys.stdout
        # Trials by their flags, oldest first: a batch file may repeat a
        # row, and each repeat is a trial of its own.
        self.existing: dict[str, list[Run]] = {}
        for r in sorted(trial_links(batch).values(), key=lambda r: (r.get("initialized") or 0, r.id)):
            self.existing.setdefault(_key(r.get("flags") or {}), []).append(r)
        self.used: set[str] = set()
        self.generated: list[dict[str, Any]] = []
        self.failed = 0
        import threading

        # Reentrant: a signal handler may say a line while one is written.
        self._say_lock = threading.RLock()

    def say(self, line: str) -> None:
        with self._say_lock:
            self.out.write(line + "\n")
            self.out.flush()
            with open(self.batch.guild_path("output"), "ab") as f:
                f.write(line.encode() + b"\n")
            with open(self.batch.guild_path("output.index"), "ab") as f:
                f.write((util.now_micros() // 1000).to_bytes(8, "big") + b"\x00")

    def begin(self) -> None:
        self.batch.mark_pending(procs.current())
        self.batch.clear_markers("STAGED")
        self.batch.record_start()
        # The guild process drives a batch: it is the batch's process.
        self.batch.record_processes(procs.current(), None)
        self.batch.clear_markers("PENDING")

    def prepare(self, flags: dict[str, Any]) -> tuple[Run, bool]:
        """Initialize (or reuse) one trial; returns the run and whether
        to start it (not when it completed before and only what is
        needed runs, nor when trials are only initialized or staged)."""
        self.generated.append(flags)
        desc = format_trial(flags)
        key = _key(flags)
        trial = next((t for t in self.existing.get(key, ()) if t.id not in self.used), None)
        if trial is not None:
            self.used.add(trial.id)
        if trial is not None and self.needed and self._done(trial):
            return trial, False
        if trial is None:
            trial = self.make_trial(flags, self.stage_trials)
            _link(self.batch, trial)
            self.existing.setdefault(key, []).append(trial)
            self.used.add(trial.id)
        elif self.stage_trials:
            trial.write_marker("STAGED")
        self.say(f"Initialized trial ({desc})")
        if self.init_only or self.stage_trials:
            if self.init_only:
                # Pending with no starter: it waits for a later run.
                trial.mark_pending(None)
            return trial, False
        # A new attempt: an earlier attempt's claim (a parallel run that
        # was stopped) must not turn this one away.
        trial.clear_markers("CLAIM")
        if self._pruned(trial):
            from .pruning import forget

            forget(trial)
        return trial, True

    def _done(self, trial: Run) -> bool:
        """Whether ``--needed`` leaves `trial` as it is: completed, or
        pruned (a pruner's verdict stands unless ``--rerun-pruned``)."""
        if trial.status == "completed":
            return True
        from .pruning import is_pruned

        return not self.rerun_pruned and trial.status == "terminated" and is_pruned(trial)

    def interrupted(self, trial: Run | None, status: int | None) -> bool:
        """Whether a trial's end means the batch was stopped (a signal),
        not that its pruner stopped the trial."""
        if status is None or status >= 0:
            return False
        return not (self.monitor is not None and self._pruned(trial))

    def _pruned(self, trial: Run | None) -> bool:
        from .pruning import is_pruned

        return is_pruned(trial)

    def announce(self, flags: dict[str, Any]) -> None:
        self.say(f"Running trial: {self.op_name} ({format_trial(flags)})")

    def ended(self, status: int | None, trial: Run | None = None) -> None:
        # A pruned trial did what was asked of it: no failure.
        if status is not None and status != 0 and not (trial is not None and self._pruned(trial)):
            self.failed += 1

    def run_trial(self, flags: dict[str, Any]) -> tuple[Run | None, int | None]:
        """Initialize (or reuse) and run one trial here; returns the run
        and its exit status (None when it was not run)."""
        trial, go = self.prepare(flags)
        if not go:
            return trial, None
        self.announce(flags)
        status = self.start_trial(trial)
        self.ended(status, trial)
        return trial, status

    def finish(self) -> int:
        b = self.batch
        for trial in [t for trials in self.existing.values() for t in trials]:
            if trial.id in self.used:
                continue
            # Orphans: a pending trial no longer belongs and is deleted;
            # any other is left as an independent run.
            if trial.status == "pending":
                import shutil

                shutil.rmtree(trial.path, ignore_errors=True)
                try:
                    (b.path / trial.id).unlink()
                except FileNotFoundError:
                    pass
        b.write_attr("trials", self.generated)
        if self.init_only:
            # Nothing ran: the batch, like its trials, is still pending.
            b.mark_pending(None)
            b.clear_markers("LOCK", "LOCK.proc")
            return 0
        exit_status = 1 if self.failed else 0
        b.record_end(exit_status)
        return exit_status

    def stop_early(self, status: int | None, trial: Run | None = None) -> bool:
        return bool(status) and self.fail_on_trial_error and not (trial is not None and self._pruned(trial))
