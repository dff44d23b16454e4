"""The batch scheduler: plans a batch's trials and runs them.

One place decides what a batch is (a grid, batch-file rows, or an
optimizer's proposals over a search space) and runs its trials, talking
to the optimizer between them. ``guild run`` and pipeline steps both use
it: the command line only parses, confirms and prints.

`plan` reads the operation and the batch options into a `Plan`;
`create` makes the batch run; `drive` runs the trials.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import batch as batchlib
from . import flags as flagslib
from .errors import FlagError, GuildError
from .run import Run


@dataclass
class BatchOptions:
    """The batch options of ``guild run`` (and of a pipeline step)."""

    optimizer: str | None = None
    optimize: bool = False
    opt_flags: list[str] = field(default_factory=list)
    max_trials: int | None = None
    minimize: str | None = None
    maximize: str | None = None
    random_seed: int | None = None
    print_trials: bool = False
    init_trials: bool = False
    stage_trials: bool = False
    needed: bool = False
    fail_on_trial_error: bool = False
    save_trials: str | None = None
    batch_files: list[str] = field(default_factory=list)
    # Parallel trials: how many at once (``--workers``), the GPUs each
    # trial takes one of (``--gpus`` with workers), and the executor
    # (``--dask [ADDRESS]``: "dask", with its address) with resources.
    workers: int | None = None
    gpu_slots: list[str] = field(default_factory=list)
    executor: str | None = None
    executor_address: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    # Early stopping: the pruner (``--pruner``), its flags (``-Fp``), and
    # whether ``--needed`` reruns pruned trials (``--rerun-pruned``).
    pruner: str | None = None
    pruner_flags: list[str] = field(default_factory=list)
    rerun_pruned: bool = False

    def parallel(self) -> bool:
        return bool(self.executor) or (self.workers or 1) > 1

    def wants_batch(self) -> bool:
        return bool(
            self.optimizer or self.optimize or self.batch_files or self.print_trials
            or self.init_trials or self.stage_trials or self.save_trials
        )


def is_batch(flag_vals: dict[str, Any], user_flags: dict[str, Any], flagdefs) -> bool:
    """Whether flag values ask for a batch: a list of values or a search
    function (``[1,2]``, ``uniform[0:1]``) for a flag that takes one."""
    from . import flagfuncs

    return any(
        isinstance(flag_vals[n], list) or flagfuncs.is_function(flag_vals[n])
        for n in flagfuncs.batch_names(user_flags, flagdefs)
    )


@dataclass
class Plan:
    """A batch, decided: the trials it runs or the optimizer that
    proposes them."""

    opdef: Any
    flag_vals: dict[str, Any]
    user_flags: dict[str, Any]
    options: BatchOptions
    space: dict[str, Any]
    # The flags that vary across trials; the rest are fixed values.
    varying: dict[str, Any]
    seed: int
    opt_name: str | None
    entry: Any
    opt_flags: dict[str, Any]
    max_trials: int | None
    objective: str
    minimize: bool
    optimizer: Any = None
    trials: list[dict[str, Any]] | None = None
    # The pruner, when trials may be stopped early: its entry, flags,
    # the core's notice and grace periods, and the pruner itself.
    pruner_entry: Any = None
    pruner_flags: dict[str, Any] = field(default_factory=dict)
    pruner_common: dict[str, float] = field(default_factory=dict)
    pruner: Any = None

    @property
    def name(self) -> str:
        """The batch operation's name: ``train+`` or ``train+gp``."""
        return f"{self.opdef.name}+{self.entry.name if self.entry else ''}"

    def fixed(self) -> dict[str, Any]:
        return {
            n: v for n, v in self.space.items()
            if n not in self.varying or not isinstance(v, (list, tuple))
        }

    def planned_trials(self) -> list[dict[str, Any]]:
        """Every trial, known before any runs (for ``--print-trials``
        and ``--save-trials``)."""
        if self.trials is not None:
            return self.trials
        trials = self.optimizer.propose(self.max_trials)
        if len(trials) < self.max_trials and self.max_trials > 1 and len(trials) == 1:
            raise GuildError(
                f"cannot print or save trials for {self.opt_name}: it chooses each trial from earlier results"
            )
        return trials


def plan(opdef, flag_vals: dict[str, Any], user_flags: dict[str, Any], options: BatchOptions, reg) -> Plan:
    """Decide the batch `options` ask for over `opdef`'s flags. Raises
    `GuildError` for an unknown optimizer, a bad optimizer flag or a bad
    batch file."""
    op_data = opdef.data or {}
    space = batchlib.space_of(flag_vals, user_flags, opdef.flagdefs)
    varying = {n: user_flags[n] for n in batchlib.batch_names(user_flags, opdef.flagdefs)}
    seed = options.random_seed if options.random_seed is not None else int.from_bytes(os.urandom(4), "big")
    opt_name, named_flags = batchlib.chosen_optimizer(op_data, options.optimizer, options.optimize)
    # An optimizer's `pruner:` in guild.yml is the batch's, not a flag.
    named_flags = dict(named_flags)
    opt_pruner = named_flags.pop("pruner", None)
    if opt_name:
        # Flags the user left alone are searched over their choices or
        # min..max, as Guild AI's optimizers do.
        for name, dim in batchlib.flag_search_space(opdef.flagdefs, user_flags).items():
            space[name] = varying[name] = dim
    if not opt_name and any(batchlib.is_search(space[n]) for n in varying):
        opt_name = "random"
    if options.opt_flags and not opt_name:
        raise GuildError(f"invalid optimizer flag {options.opt_flags[0]}: no optimizer specified")
    file_trials = read_batch_files(reg, opdef, options.batch_files)
    objective, minimize = objective_of(options, op_data.get("objective"))
    p = Plan(
        opdef, flag_vals, user_flags, options, space, varying, seed, opt_name,
        entry=None, opt_flags={}, max_trials=options.max_trials,
        objective=objective, minimize=minimize,
    )
    if opt_name:
        p.entry = reg.optimizer(opt_name)
        p.opt_flags = optimizer_flags(p.entry, options.opt_flags, named_flags)
        p.max_trials = options.max_trials or op_data.get("default-max-trials") or p.entry.default_max_trials
        ctx = batchlib.BatchContext(
            # A list-valued flag's list is its value, not choices: the
            # driver adds it to every trial.
            space={n: v for n, v in space.items() if n in varying or not isinstance(v, list)},
            flagdefs=opdef.flagdefs,
            opt_flags=p.opt_flags,
            seed=seed,
            objective=objective,
            minimize=minimize,
            max_trials=p.max_trials,
        )
        p.optimizer = p.entry.factory(ctx)
    elif file_trials:
        base = {n: v for n, v in space.items() if n not in varying or not isinstance(v, (list, tuple))}
        p.trials = [{**base, **row} for row in file_trials]
        if p.max_trials is not None:
            p.trials = p.trials[: p.max_trials]
    else:
        p.trials = batchlib.grid_trials(space, varying, p.max_trials, seed)
    _plan_pruner(p, op_data, opt_pruner, reg)
    return p


def _plan_pruner(p: Plan, op_data: dict[str, Any], opt_pruner, reg) -> None:
    """The pruner `p` uses, made now: an unknown pruner or a bad flag is
    one line before anything is created."""
    from . import pruning

    opts = p.options
    name, named = pruning.chosen_pruner(op_data, {"pruner": opt_pruner}, opts.pruner)
    if not name:
        if opts.pruner_flags:
            raise GuildError(f"invalid pruner flag {opts.pruner_flags[0]}: no pruner specified (--pruner NAME)")
        return
    entry = reg.pruner(name)
    p.pruner_entry = entry
    p.pruner_flags, p.pruner_common = pruning.pruner_flags(entry, opts.pruner_flags, named)
    p.pruner = pruning.make(entry, p.pruner_flags, p.objective, p.minimize, p.seed)


def create(p: Plan, launcher: str | None, run_params: dict[str, Any], *, staged: bool = False,
           attrs: dict[str, Any] | None = None) -> Run:
    """The batch run of plan `p`, whole (see `batch.create_batch`), with
    `attrs` (its label, tags, comments) written once it exists."""
    objective = None
    if p.entry:
        objective = p.objective if p.minimize else "-" + p.objective
    batch = batchlib.create_batch(
        p.opdef, p.flag_vals, p.user_flags, launcher,
        optimizer=p.entry.name if p.entry else None, opt_flags=p.opt_flags,
        max_trials=p.max_trials, seed=p.seed, objective=objective,
        run_params=run_params, staged=staged,
    )
    for name, val in (attrs or {}).items():
        batch.write_attr(name, val)
    if p.pruner_entry is not None:
        batch.write_attr("pruner", pruner_attr(p))
    return batch


def pruner_attr(p: Plan) -> dict[str, Any]:
    """The batch's ``pruner`` attribute: what a restart uses again."""
    return {"name": p.pruner_entry.name, "flags": dict(p.pruner_flags), **p.pruner_common}


def drive(
    batch: Run,
    p: Plan,
    make_trial: Callable[[dict[str, Any], dict[str, Any], bool], Run],
    start: Callable[[Run], int],
    out=None,
    executor=None,
) -> int:
    """Run the trials of `batch` as plan `p` says; returns the batch's
    exit status (negative when a signal stopped it).

    `make_trial(flags, user_flags, staged)` creates a trial run;
    `start(run)` runs one here and returns its exit status. With an
    `executor` (see `open_executor`) trials run through it, as many at
    once as it has slots.
    """
    opts = p.options
    user_flags = p.user_flags

    def trial(flags, staged):
        return make_trial(flags, {n: v for n, v in flags.items() if n in user_flags}, staged)

    driver = batchlib.Driver(
        batch, p.opdef.name, trial, start,
        needed=opts.needed, init_only=opts.init_trials, stage_trials=opts.stage_trials,
        fail_on_trial_error=opts.fail_on_trial_error, out=out, rerun_pruned=opts.rerun_pruned,
    )
    driver.begin()
    if p.optimizer is not None:
        warm_start(p.optimizer, batch, p)
    monitor = None
    if p.pruner is not None and not (opts.init_trials or opts.stage_trials):
        from . import pruning

        if batch.get("pruner") != pruner_attr(p):
            batch.write_attr("pruner", pruner_attr(p))
        monitor = pruning.Monitor(
            batch, p.pruner, p.pruner_entry.name, p.objective,
            notice=p.pruner_common.get("notice", 0.0), grace=p.pruner_common.get("grace", 5.0),
            say=driver.say,
        ).start()
        driver.monitor = monitor
    interrupted = None
    try:
        if executor is not None and not (opts.init_trials or opts.stage_trials):
            interrupted = Parallel(driver, p, executor).run()
        elif p.optimizer is None:
            interrupted = _run_listed(driver, p.trials)
        else:
            interrupted = _run_proposed(driver, p)
    except KeyboardInterrupt:
        # Between trials: the batch stops here, recorded as terminated.
        interrupted = -2
    finally:
        if monitor is not None:
            monitor.close()
        exit_status = driver.finish()
    if interrupted:
        batch.write_attr("exit_status", interrupted)
        return interrupted
    return exit_status


def _run_listed(driver, trials) -> int | None:
    for flags in trials:
        trial, status = driver.run_trial(flags)
        if driver.interrupted(trial, status):
            return status
        if driver.stop_early(status, trial):
            break
    return None


def _run_proposed(driver, p: Plan) -> int | None:
    optimizer = p.optimizer
    fixed = p.fixed()
    while len(driver.generated) < p.max_trials:
        proposals = optimizer.propose(p.max_trials - len(driver.generated))
        if not proposals:
            break
        for proposed in proposals:
            trial, status = driver.run_trial({**fixed, **proposed})
            _observe(driver, p, proposed, trial, status)
            if driver.interrupted(trial, status):
                return status
            if driver.stop_early(status, trial):
                return None
        if driver.failed and p.options.fail_on_trial_error:
            break
    return None


def _observe(driver, p: Plan, proposed, trial, status) -> None:
    monitor = getattr(driver, "monitor", None)
    if monitor is not None and status is not None and status != 0 and trial is not None:
        from . import pruning

        if pruning.is_pruned(trial):
            # As the pruner says: never as a finished trial's result.
            value = monitor.pruned_value(trial)
            if value is None:
                driver.say(f"Trial {trial.short_id} was pruned: the optimizer ignores it")
            p.optimizer.observe(proposed, value)
            return
    value = objective_value(trial, p.objective) if status == 0 else None
    if status is not None and value is None:
        driver.say(f"Trial {trial.short_id} did not log '{p.objective}': the optimizer ignores it")
    p.optimizer.observe(proposed, value)


# ---------------------------------------------------------------------
# Parallel trials
# ---------------------------------------------------------------------


def open_executor(options: BatchOptions, reg, say: Callable[[str], None]):
    """The executor `options` ask for: the core's threads for
    ``--workers N``, or a plugin's (``--dask``) by name. Raises
    `GuildError` when it cannot be had."""
    from . import executors

    slots = max(1, options.workers or 1)
    if options.gpu_slots:
        # One trial per GPU, and no more than --workers when it is given.
        slots = min(len(options.gpu_slots), options.workers or len(options.gpu_slots))
    if not options.executor:
        return executors.LocalExecutor(slots)
    entry = reg.executor(options.executor)
    ctx = ExecutorContext(
        workers=options.workers, address=options.executor_address,
        resources=dict(options.resources), say=say,
    )
    return entry.value(ctx)


@dataclass
class ExecutorContext:
    """What an executor is told (`guild_core.hookspecs.ExecutorContext`)."""

    workers: int | None
    address: str | None
    resources: dict[str, float]
    say: Callable[[str], None]


class Parallel:
    """Keeps the executor's slots full: trials from the grid or batch
    file in order, or from the optimizer (told each result as it
    arrives); a GPU of ``--gpus`` held by each running trial."""

    def __init__(self, driver, p: Plan, executor):
        self.driver = driver
        self.p = p
        self.executor = executor
        self.listed = iter(p.trials) if p.optimizer is None else None
        self.fixed = p.fixed()
        gpus = list(p.options.gpu_slots)
        self.free = gpus[: executor.slots] if gpus else [None] * executor.slots
        # trial id -> (trial, proposal, gpu)
        self.running: dict[str, tuple[Run, dict[str, Any] | None, str | None]] = {}
        self.buffer: list[dict[str, Any]] = []
        self.exhausted = False
        self.ready = None
        self.stopping: int | None = None
        self.follow: dict[str, int] = {}

    def run(self) -> int | None:
        previous = {}

        def receive(signum, _frame):
            if self.stopping is None:
                self.stopping = signum
                self.driver.say("Stopping trials")
            self.executor.stop(signum)

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[signum] = signal.signal(signum, receive)
        self.driver.say(f"Running trials on {self.executor.describe()}")
        try:
            while True:
                self._fill()
                if not self.running:
                    break
                for trial, status in self.executor.wait(0.2):
                    self._ended(trial, status)
                if not self.executor.shows_output:
                    self._follow_output()
        finally:
            for signum, prev in previous.items():
                signal.signal(signum, prev)
            self.executor.close()
            if self.ready is not None:
                # Created ahead and never started: it waits, pending, for
                # the batch's restart.
                self.ready[0].mark_pending(None)
        if self.stopping is not None:
            return -int(self.stopping)
        return None

    def _fill(self) -> None:
        while self.stopping is None and not self.exhausted:
            if self.driver.failed and self.p.options.fail_on_trial_error:
                self.exhausted = True
                return
            if not self.free:
                # Listed trials are known: the next one is created while
                # the running ones run, ready for the first free slot.
                if self.listed is not None and self.ready is None:
                    self.ready = self._prepare()
                return
            ready, self.ready = self.ready, None
            ready = ready or self._prepare()
            if ready is None:
                return
            trial, flags, proposed = ready
            gpu = self.free.pop(0)
            if gpu is not None:
                from . import runner

                runner.apply_options(trial, runner.RunOptions(gpus=gpu))
            self.driver.announce(flags)
            self.running[trial.id] = (trial, proposed, gpu)
            # From where its output ends now: a restarted trial's earlier
            # output was shown when it was made.
            try:
                self.follow[trial.id] = trial.guild_path("output").stat().st_size
            except OSError:
                self.follow[trial.id] = 0
            self.executor.submit(trial)

    def _prepare(self):
        """The next trial to start, created: ``(trial, flags, proposal)``,
        or None when there is none now."""
        while True:
            proposed = self._next()
            if proposed is None:
                return None
            flags = proposed if self.listed is not None else {**self.fixed, **proposed}
            trial, go = self.driver.prepare(flags)
            if go:
                return trial, flags, (None if self.listed is not None else proposed)
            if self.listed is None:
                _observe(self.driver, self.p, proposed, trial, None)

    def _next(self) -> dict[str, Any] | None:
        if self.listed is not None:
            nxt = next(self.listed, None)
            if nxt is None:
                self.exhausted = True
            return nxt
        if not self.buffer:
            left = self.p.max_trials - len(self.driver.generated)
            if left <= 0:
                self.exhausted = True
                return None
            want = min(left, len(self.free))
            opt = self.p.optimizer
            concurrent = getattr(opt, "propose_concurrent", None)
            running = [prop for _t, prop, _g in self.running.values() if prop is not None]
            self.buffer = list(concurrent(want, running) if concurrent else opt.propose(want))
            if not self.buffer:
                # Nothing more now; with trials running, a result may
                # let a sequential optimizer go on.
                if not self.running:
                    self.exhausted = True
                return None
        return self.buffer.pop(0)

    def _ended(self, trial: Run, status: int) -> None:
        if trial.id not in self.running:
            return
        if not self.executor.shows_output:
            self._follow_output(only=trial.id)
        self.follow.pop(trial.id, None)
        entry = self.running.pop(trial.id)
        _trial, proposed, gpu = entry
        self.free.append(gpu)
        self.driver.ended(status, trial)
        fresh = Run(trial.id, trial.path)
        self.driver.say(f"Trial {trial.short_id} {fresh.status}")
        if proposed is not None:
            _observe(self.driver, self.p, proposed, fresh, status)

    def _follow_output(self, only: str | None = None) -> None:
        """Print what trials run elsewhere wrote to their output since
        last time, each line prefixed with the trial's id."""
        out = sys.stdout.buffer
        for run_id, offset in list(self.follow.items()):
            if only is not None and run_id != only:
                continue
            path = self.running[run_id][0].guild_path("output")
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1 if only is None else len(data)
            if end <= 0:
                continue
            prefix = f"[{run_id[:8]}] ".encode()
            lines = data[:end].splitlines(keepends=True)
            out.write(b"".join(prefix + (ln if ln.endswith(b"\n") else ln + b"\n") for ln in lines))
            out.flush()
            self.follow[run_id] = offset + end


def matching_batches(p: Plan, runs: list[Run]) -> list[Run]:
    """Batch runs among `runs` that ran plan `p` already and did not fail
    (Guild AI's ``--needed`` for a batch): the same optimizer and
    optimizer flags, over the same operation and flag values."""
    ref = p.opdef.opref
    want_opt = p.entry.name if p.entry else None
    out = []
    for run in runs:
        proto = run.batch_proto
        if proto is None or run.status not in ("completed", "running", "terminated"):
            continue
        r = proto.opref
        if r is None or (r.type, r.location, r.model, r.op) != (ref.type, ref.location, ref.model, ref.op):
            continue
        if (run.get("op") or {}).get("optimizer") != want_opt:
            continue
        if proto.get("flags") != p.flag_vals or (run.get("flags") or {}) != p.opt_flags:
            continue
        out.append(run)
    return out


def warm_start(optimizer, batch: Run, p: Plan) -> None:
    """Tell the optimizer about earlier runs, as its ``prev-trials`` flag
    says: this batch's trials, runs of the same operation and source
    code, or all runs of the operation."""
    mode = (batch.get("flags") or {}).get("prev-trials")
    if not mode:
        return
    from . import select

    if mode == "batch":
        candidates = list(batchlib.trial_links(batch).values())
    else:
        candidates = [
            r for r in select.all_runs()
            if r.opref == p.opdef.opref and r.id != batch.id and not r.batch_proto
        ]
        if mode == "sourcecode":
            digest = batch.batch_proto.get("sourcecode_digest")
            candidates = [r for r in candidates if r.get("sourcecode_digest") == digest]
    for run in candidates:
        if run.status != "completed":
            continue
        flags = run.get("flags") or {}
        point = {n: flags.get(n) for n in p.varying}
        value = objective_value(run, p.objective)
        if value is not None and all(_in_space(point[n], p.space[n]) for n in p.varying):
            optimizer.observe(point, value)


def _in_space(val, dim) -> bool:
    if isinstance(dim, tuple):
        _name, (low, high) = dim
        return isinstance(val, (int, float)) and not isinstance(val, bool) and low <= val <= high
    if isinstance(dim, list):
        return val in dim
    return val == dim


def objective_value(trial: Run | None, objective: str) -> float | None:
    """The last value `trial` logged for scalar `objective`."""
    if trial is None:
        return None
    scalars = Run(trial.id, trial.path).last_scalars()
    val = scalars.get(objective)
    return val[0] if val else None


def objective_of(options: BatchOptions, op_objective=None) -> tuple[str, bool]:
    """``(scalar, minimize)``: ``-N``/``-X`` first, then guild.yml's
    ``objective``, then loss."""
    if options.minimize and options.maximize:
        raise GuildError("--minimize and --maximize cannot both be used")
    if options.maximize:
        return options.maximize, False
    if options.minimize:
        return options.minimize, True
    return batchlib.objective_of(op_objective)


def optimizer_flags(entry, assigns: list[str], named: dict[str, Any] | None = None) -> dict[str, Any]:
    """The optimizer's flag values: its defaults, a named optimizer's
    own flags from guild.yml, then ``-Fo NAME=VAL`` assignments."""
    try:
        parsed = flagslib.parse_assigns(assigns)
    except FlagError as e:
        raise GuildError(str(e)) from None
    vals = {name: fd.default for name, fd in entry.flags.items()}
    for name, val in (named or {}).items():
        fd = entry.flags.get(name)
        if fd is None:
            raise GuildError(f"unsupported flag '{name}' for optimizer {entry.name} (in guild.yml optimizers)")
        vals[name] = flagslib.coerce(fd, val) if isinstance(val, str) else val
    for name, raw in parsed.items():
        fd = entry.flags.get(name)
        if fd is None:
            raise GuildError(
                f"unsupported flag '{name}' for optimizer {entry.name}",
                hint=f"Try 'guild run {entry.name} --help-op' for a list of flags.",
            )
        vals[name] = flagslib.coerce(fd, raw)
    return vals


def read_batch_files(reg, opdef, paths: list[str]) -> list[dict[str, Any]]:
    """The rows of batch files (``@trials.csv``), typed by the
    operation's flags."""
    from .hookspecs import BatchFileError

    rows = []
    for path in paths:
        fmt = reg.batch_format(path)
        if not Path(path).exists():
            raise GuildError(f"{path}: no such file")
        try:
            file_rows = fmt.read(Path(path))
        except BatchFileError as e:
            raise GuildError(str(e)) from None
        except RecursionError:
            # A plugin's parser (json, yaml) on absurdly nested input.
            raise GuildError(f"{path}: nested too deeply to read") from None
        numbers = getattr(file_rows, "rows", None) or range(1, len(file_rows) + 1)
        for row_no, row in zip(numbers, file_rows):
            typed = {}
            for name, val in row.items():
                fd = opdef.flagdefs.get(name)
                if fd is None:
                    raise GuildError(f"{path}, row {row_no}: unsupported flag '{name}'")
                try:
                    typed[name] = flagslib.coerce(fd, val)
                except FlagError as e:
                    raise GuildError(f"{path}, row {row_no}: {e}") from None
            rows.append(typed)
    return rows


def save_trials(reg, path: str, trials) -> None:
    fmt = reg.batch_format(path)
    if fmt.write is None:
        raise GuildError(f"{path}: the {fmt.name} batch format cannot be written")
    fmt.write(Path(path), trials)
