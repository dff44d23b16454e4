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
    return p


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
    return batch


def drive(
    batch: Run,
    p: Plan,
    make_trial: Callable[[dict[str, Any], dict[str, Any], bool], Run],
    start: Callable[[Run], int],
    out=None,
) -> int:
    """Run the trials of `batch` as plan `p` says; returns the batch's
    exit status (negative when a signal stopped it).

    `make_trial(flags, user_flags, staged)` creates a trial run;
    `start(run)` runs one and returns its exit status.
    """
    opts = p.options
    user_flags = p.user_flags

    def trial(flags, staged):
        return make_trial(flags, {n: v for n, v in flags.items() if n in user_flags}, staged)

    driver = batchlib.Driver(
        batch, p.opdef.name, trial, start,
        needed=opts.needed, init_only=opts.init_trials, stage_trials=opts.stage_trials,
        fail_on_trial_error=opts.fail_on_trial_error, out=out,
    )
    driver.begin()
    if p.optimizer is not None:
        warm_start(p.optimizer, batch, p)
    interrupted = None
    try:
        if p.optimizer is None:
            interrupted = _run_listed(driver, p.trials)
        else:
            interrupted = _run_proposed(driver, p)
    except KeyboardInterrupt:
        # Between trials: the batch stops here, recorded as terminated.
        interrupted = -2
    finally:
        exit_status = driver.finish()
    if interrupted:
        batch.write_attr("exit_status", interrupted)
        return interrupted
    return exit_status


def _run_listed(driver, trials) -> int | None:
    for flags in trials:
        _trial, status = driver.run_trial(flags)
        if status is not None and status < 0:
            return status
        if driver.stop_early(status):
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
            value = objective_value(trial, p.objective) if status == 0 else None
            if status is not None and value is None:
                driver.say(f"Trial {trial.short_id} did not log '{p.objective}': the optimizer ignores it")
            optimizer.observe(proposed, value)
            if status is not None and status < 0:
                return status
            if driver.stop_early(status):
                return None
        if driver.failed and p.options.fail_on_trial_error:
            break
    return None


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
