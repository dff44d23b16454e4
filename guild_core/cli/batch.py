"""Batch runs from ``guild run``: grids, optimizers, batch files, restarts."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from guild_core import batch as batchlib
from guild_core import flags as flagslib
from guild_core.errors import FlagError, GuildError
from guild_core.hookspecs import BatchFileError
from guild_core.cli.common import confirm, flags_launcher, plugin_manager, printable


@dataclass
class BatchArgs:
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


def run_batch(opdef, flag_vals, user_flags, args: BatchArgs, *, yes, stage, quiet, run_params, existing=None, deps=None):
    """Plan, preview and run a batch. `existing` is the batch run being
    restarted, if any; `deps` are the resolved dependencies every trial
    gets."""
    from guild_core.registry import Registry

    pm = plugin_manager()
    reg = Registry(pm)
    space = batchlib.space_of(flag_vals, user_flags, opdef.flagdefs)
    # The flags that vary across trials; the rest are fixed values.
    varying = {n: user_flags[n] for n in batchlib.batch_names(user_flags, opdef.flagdefs)}
    seed = args.random_seed if args.random_seed is not None else int.from_bytes(os.urandom(4), "big")
    opt_name, named_flags = batchlib.chosen_optimizer(opdef.data or {}, args.optimizer, args.optimize)
    if opt_name:
        # Flags the user left alone are searched over their choices or
        # min..max, as Guild AI's optimizers do.
        for name, dim in batchlib.flag_search_space(opdef.flagdefs, user_flags).items():
            space[name] = varying[name] = dim
    has_search = any(batchlib.is_search(space[n]) for n in varying)
    if not opt_name and has_search:
        opt_name = "random"
    if args.opt_flags and not opt_name:
        raise GuildError(f"invalid optimizer flag {args.opt_flags[0]}: no optimizer specified")
    file_trials = _read_batch_files(reg, opdef, args.batch_files)
    optimizer = entry = None
    objective, minimize = _objective(args, (opdef.data or {}).get("objective"))
    if opt_name:
        entry = reg.optimizer(opt_name)
        opt_flags = _opt_flags(entry, args.opt_flags, named_flags)
        max_trials = args.max_trials or (opdef.data or {}).get("default-max-trials") or entry.default_max_trials
        ctx = batchlib.BatchContext(
            # A list-valued flag's list is its value, not choices: the
            # driver adds it to every trial.
            space={n: v for n, v in space.items() if n in varying or not isinstance(v, list)},
            flagdefs=opdef.flagdefs,
            opt_flags=opt_flags,
            seed=seed,
            objective=objective,
            minimize=minimize,
            max_trials=max_trials,
        )
        optimizer = entry.factory(ctx)
        trials = None
    else:
        opt_flags = {}
        max_trials = args.max_trials
        if file_trials:
            base = {n: v for n, v in space.items() if n not in varying or not isinstance(v, (list, tuple))}
            trials = [{**base, **row} for row in file_trials]
            if max_trials is not None:
                trials = trials[:max_trials]
        else:
            trials = batchlib.grid_trials(space, varying, max_trials, seed)
    if args.print_trials or args.save_trials:
        if trials is None:
            trials = _planned(optimizer, opt_name, max_trials)
        if args.save_trials:
            _save_trials(reg, args.save_trials, trials)
        else:
            for line in batchlib.trials_table(trials):
                click.echo(line)
        return
    if not yes and not confirm(_preview(opdef.name, opt_name, trials, max_trials, objective, minimize, user_flags, space, opt_flags, stage, deps)):
        sys.exit(1)
    if existing is None:
        batch = batchlib.create_batch(
            opdef, flag_vals, user_flags, flags_launcher(pm, opdef.flags_dest),
            optimizer=entry.name if entry else None, opt_flags=opt_flags,
            max_trials=max_trials, seed=seed,
            objective=("-" + objective if not minimize else objective) if entry else None,
            run_params=run_params, staged=stage,
        )
    else:
        batch = existing
    batch_name = f"{opdef.name}+{entry.name if entry else ''}"
    if stage:
        if not quiet:
            click.echo(f"{batch_name} staged as {batch.id}")
            click.echo(f"To start the operation, use 'guild run --start {batch.id}'")
        return
    exit_status = _drive(batch, opdef, user_flags, varying, pm, args, trials, optimizer, objective, max_trials, space, deps)
    if exit_status:
        sys.exit(1 if exit_status > 0 else 128 - exit_status)


def _drive(batch, opdef, user_flags, varying, pm, args, trials, optimizer, objective, max_trials, space, deps=None) -> int:
    from guild_core import plugins, runner

    def make_trial(flags, staged):
        launcher = flags_launcher(pm, opdef.flags_dest) if flags else None
        trial_user = {n: v for n, v in flags.items() if n in user_flags}
        return runner.create_run(opdef, flags, trial_user, launcher, staged=staged, deps=deps)

    def start(run):
        return runner.start(
            run,
            on_started=lambda r: plugins.call_lifecycle(pm, "guild_run_starting", run=r),
            on_stopped=lambda r: plugins.call_lifecycle(pm, "guild_run_stopped", run=r),
        )

    driver = batchlib.Driver(
        batch, opdef.name, make_trial, start,
        needed=args.needed, init_only=args.init_trials, stage_trials=args.stage_trials,
        fail_on_trial_error=args.fail_on_trial_error,
    )
    driver.begin()
    if optimizer is not None:
        _warm_start(optimizer, batch, opdef, varying, space, objective)
    interrupted = None
    try:
        if optimizer is None:
            for flags in trials:
                _trial, status = driver.run_trial(flags)
                if status is not None and status < 0:
                    interrupted = status
                    break
                if driver.stop_early(status):
                    break
        else:
            fixed = {n: v for n, v in space.items() if n not in varying or not isinstance(v, (list, tuple))}
            while len(driver.generated) < max_trials:
                proposals = optimizer.propose(max_trials - len(driver.generated))
                if not proposals:
                    break
                for proposed in proposals:
                    flags = {**fixed, **proposed}
                    trial, status = driver.run_trial(flags)
                    value = _objective_value(trial, objective) if status == 0 else None
                    if status is not None and value is None:
                        driver.say(f"Trial {trial.short_id} did not log '{objective}': the optimizer ignores it")
                    optimizer.observe(proposed, value)
                    if status is not None and status < 0:
                        interrupted = status
                        break
                    if driver.stop_early(status):
                        break
                if interrupted or (driver.failed and args.fail_on_trial_error):
                    break
    except KeyboardInterrupt:
        # Between trials: the batch stops here, recorded as terminated.
        interrupted = -2
    finally:
        exit_status = driver.finish()
    if interrupted:
        batch.write_attr("exit_status", interrupted)
        return interrupted
    return exit_status


def _warm_start(optimizer, batch, opdef, varying, space, objective) -> None:
    """Tell the optimizer about earlier runs, as its ``prev-trials`` flag
    says: this batch's trials, runs of the same operation and source
    code, or all runs of the operation."""
    mode = (batch.get("flags") or {}).get("prev-trials")
    if not mode:
        return
    from guild_core import select

    if mode == "batch":
        candidates = list(batchlib.trial_links(batch).values())
    else:
        candidates = [
            r for r in select.all_runs()
            if r.opref == opdef.opref and r.id != batch.id and not r.batch_proto
        ]
        if mode == "sourcecode":
            digest = batch.batch_proto.get("sourcecode_digest")
            candidates = [r for r in candidates if r.get("sourcecode_digest") == digest]
    for run in candidates:
        if run.status != "completed":
            continue
        flags = run.get("flags") or {}
        point = {n: flags.get(n) for n in varying}
        value = _objective_value(run, objective)
        if value is not None and all(_in_space(point[n], space[n]) for n in varying):
            optimizer.observe(point, value)


def _in_space(val, dim) -> bool:
    if isinstance(dim, tuple):
        _name, (low, high) = dim
        return isinstance(val, (int, float)) and not isinstance(val, bool) and low <= val <= high
    if isinstance(dim, list):
        return val in dim
    return val == dim


def _objective_value(trial, objective: str) -> float | None:
    if trial is None:
        return None
    from guild_core.run import Run

    scalars = Run(trial.id, trial.path).last_scalars()
    val = scalars.get(objective)
    return val[0] if val else None


def _objective(args: BatchArgs, op_objective=None) -> tuple[str, bool]:
    if args.minimize and args.maximize:
        raise GuildError("--minimize and --maximize cannot both be used")
    if args.maximize:
        return args.maximize, False
    if args.minimize:
        return args.minimize, True
    return batchlib.objective_of(op_objective)


def _opt_flags(entry, assigns: list[str], named: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        parsed = flagslib.parse_assigns(assigns)
    except FlagError as e:
        raise GuildError(str(e)) from None
    vals = {name: fd.default for name, fd in entry.flags.items()}
    for name, val in (named or {}).items():
        # A named optimizer's own flags (guild.yml `optimizers:`).
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


def _planned(optimizer, opt_name, max_trials) -> list[dict[str, Any]]:
    trials = optimizer.propose(max_trials)
    if len(trials) < max_trials and max_trials > 1 and len(trials) == 1:
        raise GuildError(f"cannot print or save trials for {opt_name}: it chooses each trial from earlier results")
    return trials


def _read_batch_files(reg, opdef, paths: list[str]) -> list[dict[str, Any]]:
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


def _save_trials(reg, path: str, trials) -> None:
    fmt = reg.batch_format(path)
    if fmt.write is None:
        raise GuildError(f"{path}: the {fmt.name} batch format cannot be written")
    click.echo(f"Saving trials to {path}")
    fmt.write(Path(path), trials)


def _preview(op_name, opt_name, trials, max_trials, objective, minimize, user_flags, space, opt_flags, stage, deps=None) -> str:
    action = "stage" if stage else "run"
    if opt_name is None:
        n = len(trials)
        head = f"You are about to {action} {op_name} as a batch ({n} trial{'s' if n != 1 else ''})"
    elif opt_name == "random":
        head = f"You are about to {action} {op_name} with random search ({max_trials} trials)"
    else:
        goal = f"minimize {objective}" if minimize else f"maximize {objective}"
        head = f"You are about to {action} {op_name} with {opt_name} optimizer ({max_trials} trials, {goal})"
    lines = [head]
    for name, val in sorted(space.items()):
        if batchlib.is_search(val):
            fname, (low, high) = val
            shown = f"{fname}[{low}:{high}]"
        else:
            shown = flagslib.encode_value(val)
        lines.append(f"  {printable(name)}: {printable(shown)}")
    if opt_flags:
        lines.append("Optimizer flags:")
        for name, val in sorted(opt_flags.items()):
            lines.append(f"  {printable(name)}: {printable(flagslib.encode_value(val))}")
    runs = [run for res in deps or () for run in res.runs]
    if runs:
        from .runselect import format_preview

        lines.append("  The following runs are selected (for every trial):")
        lines += ["  " + line for line in format_preview(runs)]
    return "\n".join(lines) + "\nContinue?"
