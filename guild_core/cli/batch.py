"""Batch runs from ``guild run``: grids, optimizers, batch files, restarts."""

from __future__ import annotations

import sys

import click

from guild_core import batch as batchlib
from guild_core import flags as flagslib
from guild_core import scheduler
from guild_core.cli.common import confirm, flags_launcher, plugin_manager, printable


# The batch options, as `guild run` collects them.
BatchArgs = scheduler.BatchOptions


def run_batch(opdef, flag_vals, user_flags, args: BatchArgs, *, yes, stage, quiet, run_params, existing=None, deps=None,
              options=None, batch_attrs=None):
    """Plan, preview and run a batch. `existing` is the batch run being
    restarted, if any; `deps` are the resolved dependencies and
    `options` the run options (`runner.RunOptions`) every trial gets;
    `batch_attrs` (label, tags, comments) are the batch run's own."""
    from guild_core import plugins, runner
    from guild_core.registry import Registry

    pm = plugin_manager()
    reg = Registry(pm)
    plan = scheduler.plan(opdef, flag_vals, user_flags, args, reg)
    if args.print_trials or args.save_trials:
        trials = plan.planned_trials()
        if args.save_trials:
            click.echo(f"Saving trials to {args.save_trials}")
            scheduler.save_trials(reg, args.save_trials, trials)
        else:
            for line in batchlib.trials_table(trials):
                click.echo(line)
        return
    if not yes and not confirm(_preview(plan, stage, deps)):
        return  # declining is not an error, as in Guild AI
    if not args.resources and (opdef.data or {}).get("dask-resources"):
        # The operation's own (guild.yml `dask-resources`), unless given.
        args.resources = {str(n): float(v) for n, v in opdef.data["dask-resources"].items()}
    executor = None
    if not stage and args.parallel() and not (args.init_trials or args.stage_trials):
        # Before the batch run exists: a scheduler that cannot be
        # reached leaves nothing behind.
        executor = scheduler.open_executor(args, reg, click.echo)
    try:
        if existing is None:
            batch = scheduler.create(plan, flags_launcher(pm, opdef.flags_dest), run_params, staged=stage, attrs=batch_attrs)
        else:
            batch = existing
        if stage:
            if not quiet:
                click.echo(f"{plan.name} staged as {batch.id}")
                click.echo(f"To start the operation, use 'guild run --start {batch.id}'")
            return

        def make_trial(flags, trial_user, staged):
            launcher = flags_launcher(pm, opdef.flags_dest) if flags else None
            return runner.create_run(opdef, flags, trial_user, launcher, staged=staged, deps=deps, options=options)

        def start(run):
            return runner.start(
                run,
                on_started=lambda r: plugins.call_lifecycle(pm, "guild_run_starting", run=r),
                on_stopped=lambda r: plugins.call_lifecycle(pm, "guild_run_stopped", run=r),
            )

        exit_status = scheduler.drive(batch, plan, make_trial, start, executor=executor)
    finally:
        if executor is not None:
            executor.close()  # (closing twice is harmless)
    if exit_status:
        sys.exit(1 if exit_status > 0 else 128 - exit_status)


def _preview(plan, stage, deps=None) -> str:
    op_name, opt_name, trials, max_trials = plan.opdef.name, plan.opt_name, plan.trials, plan.max_trials
    objective, minimize, space, opt_flags = plan.objective, plan.minimize, plan.space, plan.opt_flags
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
    if plan.pruner_entry is not None:
        shown = [f"{n}={flagslib.encode_value(v)}" for n, v in sorted(plan.pruner_flags.items())]
        lines.append(f"Pruner: {plan.pruner_entry.name}" + (f" ({', '.join(shown)})" if shown else ""))
    runs = [run for res in deps or () for run in res.runs]
    if runs:
        from .runselect import format_preview

        lines.append("  The following runs are selected (for every trial):")
        lines += ["  " + line for line in format_preview(runs)]
    return "\n".join(lines) + "\nContinue?"
