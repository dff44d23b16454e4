"""``guild run``: start an operation, a staged run, or a restart."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from guild_core import flags as flagslib
from guild_core.errors import FlagError, GuildError
from guild_core.flagdefs import FlagDef
from guild_core.cli.common import confirm, flag_detector, flags_launcher, plugin_manager, printable


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("opspec", required=False)
@click.argument("flags", nargs=-1)
@click.option("-y", "--yes", is_flag=True, help="Do not prompt before running.")
@click.option("-l", "--label", metavar="LABEL", help="Set a label for the run.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the run (may be used more than once).")
@click.option("-b", "--background", is_flag=True, help="Run in the background.")
@click.option("--pidfile", metavar="PIDFILE", help="Run in the background and write its pid to PIDFILE.")
@click.option("--stage", is_flag=True, help="Stage the run to start later with --start.")
@click.option("--start", "--restart", "restart", metavar="RUN", help="Start a staged run or restart an existing one.")
@click.option("--print-cmd", is_flag=True, help="Show the command the operation would run and exit.")
@click.option("--help-op", is_flag=True, help="Show the operation's help and flags and exit.")
@click.option("--test-sourcecode", is_flag=True, help="Show which source code files would be copied, and why, and exit.")
@click.option("--force-flags", is_flag=True, help="Accept flags the operation does not define.")
@click.option("-q", "--quiet", is_flag=True, help="Do not show messages from guild.")
@click.option("-m", "--max-trials", type=int, metavar="N", help="Run at most N trials in a batch.")
@click.option("-o", "--optimizer", metavar="NAME", help="Optimize flags with NAME (random, gp, ...).")
@click.option("-O", "--optimize", is_flag=True, help="Optimize with the operation's default optimizer.")
@click.option("-Fo", "--opt-flag", "opt_flags", multiple=True, metavar="NAME=VALUE", help="An optimizer flag (repeatable).")
@click.option("--minimize", metavar="SCALAR", help="Scalar to minimize (default: loss).")
@click.option("--maximize", metavar="SCALAR", help="Scalar to maximize.")
@click.option("--random-seed", type=int, metavar="N", help="Seed for batch sampling.")
@click.option("--print-trials", is_flag=True, help="Show the trials a batch would run and exit.")
@click.option("--save-trials", metavar="PATH", help="Write the trials a batch would run to PATH (.csv, .json, .yml).")
@click.option("--init-trials", is_flag=True, help="Create batch trials as pending runs and run none.")
@click.option("--stage-trials", is_flag=True, help="Create batch trials as staged runs.")
@click.option("--needed", is_flag=True, help="On a batch restart, skip trials that completed.")
@click.option("--fail-on-trial-error", is_flag=True, help="Stop a batch at the first failed trial.")
def run(opspec, flags, yes, label, tags, background, pidfile, stage, restart, print_cmd, help_op, test_sourcecode, force_flags, quiet, **batch_opts):
    """Run an operation.

    OPSPEC is an operation from guild.yml or a script path (train.py).
    Set flags with NAME=VALUE arguments; value lists (x=[1,2]), sequences
    (range[1:5]), search ranges (uniform[0:1]) and @FILE batch files run
    a batch of trials.
    """
    if opspec and ("=" in opspec or opspec.startswith("@")) and not Path(opspec).exists():
        flags = (opspec,) + flags
        opspec = None
    # Plain values until a batch is certain: the batch modules stay off
    # a single run's start-up.
    batch_opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in batch_opts.items()}
    batch_opts["batch_files"] = [f[1:] for f in flags if f.startswith("@")]
    flags = tuple(f for f in flags if not f.startswith("@"))
    if restart:
        _restart(restart, list(flags), yes, label, tags, background, pidfile, print_cmd, force_flags, quiet, batch_opts)
        return
    from guild_core import opdef as opdeflib
    from guild_core import runner

    opspec = opspec or opdeflib.default_operation(Path.cwd())
    if not opspec:
        raise GuildError(
            "cannot find a default operation",
            hint="Try 'guild operations' for a list.",
        )

    pm = plugin_manager()
    if help_op and not Path(opspec).exists():
        optimizer_help = _help_optimizer(pm, opspec)
        if optimizer_help:
            click.echo(optimizer_help)
            return
    opdef = opdeflib.resolve(opspec, Path.cwd(), flag_detector(pm))
    if help_op:
        click.echo(_help_op(opdef))
        return
    if test_sourcecode:
        from guild_core import sourcecode as sourcecodelib

        click.echo("\n".join(sourcecodelib.test_sourcecode_for(opdef, Path.cwd())))
        return
    try:
        assigns = flagslib.parse_assigns(list(flags))
        deps, dep_values = _dependencies(opdef.data.get("requires"), assigns, opdef.flagdefs)
        flag_vals, user_flags = flagslib.resolve_flag_values(opdef.flagdefs, assigns, force_flags)
    except FlagError as e:
        raise _flag_error(e, opdef.name) from None
    run_params = {
        "opspec": opspec,
        "flags": list(flags),
        "label": label,
        "tags": list(tags),
        "background": bool(background or pidfile),
        "stage": stage,
        "force_flags": force_flags,
        "yes": yes,
        "quiet": quiet,
    }
    if opdef.data and opdef.data.get("steps"):
        from guild_core import steps as stepslib

        if stepslib.is_pipeline(opdef):
            if _wants_batch(batch_opts) or _is_batch(flag_vals, user_flags, opdef.flagdefs):
                raise GuildError(f"cannot run pipeline {opdef.name} as a batch: give each flag one value")
            _run_pipeline(opdef, flag_vals, user_flags, run_params, batch_opts, print_cmd, pidfile)
            return
        _warn(f"operation '{opdef.name}' has both {'main' if 'main' in opdef.data else 'exec'} and steps: steps ignored")
    if _wants_batch(batch_opts) or _is_batch(flag_vals, user_flags, opdef.flagdefs):
        from guild_core.cli.batch import BatchArgs, run_batch

        # One selection for every trial, made before the batch exists.
        resolved = _resolve(deps, dep_values, opdef.project_dir, flag_vals)
        run_batch(opdef, flag_vals, user_flags, BatchArgs(**batch_opts), yes=yes, stage=stage, quiet=quiet, run_params=run_params, deps=resolved)
        return
    # With no flag values to deliver, the script runs as it is: a launcher
    # would only add its own start-up.
    has_values = any(v is not None for v in flag_vals.values())
    launcher = flags_launcher(pm, opdef.flags_dest) if has_values else None
    if print_cmd:
        op = runner.op_data(opdef, launcher, script_in_run=True)
        click.echo(" ".join(shlex.quote(a) for a in runner.command(op, flag_vals)))
        return
    resolved = _resolve(deps, dep_values, opdef.project_dir, flag_vals)
    action = "stage" if stage else "run"
    if not yes and not confirm(_preview(f"You are about to {action} {opdef.name}", flag_vals, resolved)):
        sys.exit(1)
    new_run = runner.create_run(
        opdef, flag_vals, user_flags, launcher,
        label=label, tags=list(tags), run_params=run_params, staged=stage, deps=resolved,
    )
    if stage:
        if not quiet:
            click.echo(f"{opdef.name} staged as {new_run.id}")
            click.echo(f"To start the operation, use 'guild run --start {new_run.id}'")
        return
    _start(new_run, opdef.name, background, pidfile, quiet)


def _run_pipeline(opdef, flag_vals, user_flags, run_params, batch_opts, print_cmd, pidfile=None):
    """A ``steps:`` operation: every step checked, then one run that
    runs them (`guild_core.steps`)."""
    from guild_core import steps as stepslib

    if print_cmd:
        click.echo(" ".join(shlex.quote(a) for a in stepslib.command(opdef)))
        return
    from guild_core.registry import Registry

    planned = stepslib.plan(
        opdef, flag_vals, flag_detector(plugin_manager()),
        label=run_params["label"], tags=run_params["tags"], warn=_warn,
        registry=Registry(plugin_manager()),
    )
    stage = run_params["stage"]
    action = "stage" if stage else "run"
    if not run_params["yes"] and not confirm(_pipeline_preview(f"You are about to {action} {opdef.name}", flag_vals, planned)):
        sys.exit(1)
    run_params["needed"] = bool(batch_opts.get("needed"))
    new_run = stepslib.create(
        opdef, flag_vals, user_flags,
        label=run_params["label"], tags=run_params["tags"], run_params=run_params, staged=stage,
    )
    if stage:
        if not run_params["quiet"]:
            click.echo(f"{opdef.name} staged as {new_run.id}")
            click.echo(f"To start the operation, use 'guild run --start {new_run.id}'")
        return
    _start(new_run, opdef.name, run_params["background"], pidfile, run_params["quiet"])


def _pipeline_preview(header, flag_vals, planned) -> str:
    from guild_core import steps as stepslib

    text = _preview(header, flag_vals)
    lines = ["  Steps:"] + ["  " + printable(line) for line in stepslib.describe(planned)]
    return text[: -len("Continue?")] + "\n".join(lines) + "\nContinue?"


def _warn(msg: str) -> None:
    click.echo(f"WARNING: {printable(msg)}", err=True)


def _wants_batch(batch_opts) -> bool:
    return any(
        batch_opts.get(name)
        for name in ("optimizer", "optimize", "batch_files", "print_trials", "init_trials", "stage_trials", "save_trials")
    )


def _is_batch(flag_vals, user_flags, flagdefs) -> bool:
    from guild_core import scheduler

    return scheduler.is_batch(flag_vals, user_flags, flagdefs)


def _start(run, op_name, background, pidfile, quiet):
    from guild_core import plugins, runner

    if background or pidfile:
        pid = runner.start_background(run, pidfile)
        if not quiet:
            click.echo(f"{op_name} started in background as {run.id} (pid {pid})")
        return
    pm = plugin_manager()
    exit_status = runner.start(
        run,
        on_started=lambda r: plugins.call_lifecycle(pm, "guild_run_starting", run=r),
        on_stopped=lambda r: plugins.call_lifecycle(pm, "guild_run_stopped", run=r),
    )
    if exit_status != 0:
        sys.exit(exit_status if exit_status > 0 else 128 - exit_status)


def _restart(spec, flags, yes, label, tags, background, pidfile, print_cmd, force_flags, quiet, batch_opts):
    from guild_core import runner, select
    from guild_core.opdef import _typed

    run = select.select_one(select.all_runs(), spec)
    if run.status == "running":
        raise GuildError(f"run {run.id} is still running", hint="Stop it first with 'guild stop'.")
    if run.batch_proto is not None:
        from guild_core.cli.batch import BatchArgs

        _restart_batch(run, flags, yes, force_flags, quiet, BatchArgs(**batch_opts))
        return
    op = run.get("op")
    if not op:
        raise GuildError(f"cannot restart run {run.id}: it has no operation definition")
    # A Guild AI 0.9 run starts through Guild AI's own module: guild
    # starts it as it starts its own runs.
    adopted = runner.guild_ai_op(op, lambda dest: flags_launcher(plugin_manager(), dest))
    if adopted is not None:
        op = adopted
    prev = run.get("flags") or {}
    cmd_flags = (op.get("op-cmd") or {}).get("cmd-flags") or {}
    flagdefs = {
        name: _typed(FlagDef.from_dict(name, {**(cmd_flags.get(name) or {}), "default": val}))
        for name, val in prev.items()
    }
    try:
        assigns = flagslib.parse_assigns(flags)
        deps, dep_values = _dependencies(op.get("requires"), assigns, flagdefs)
        flag_vals, new_user_flags = flagslib.resolve_flag_values(flagdefs, assigns, force_flags)
    except FlagError as e:
        raise _flag_error(e, run.op_name) from None
    if print_cmd:
        click.echo(" ".join(shlex.quote(a) for a in runner.command(op, flag_vals)))
        return
    pipeline_params = None
    if run.get("steps") is not None:
        pipeline_params = _check_pipeline_restart(run, flag_vals, label, tags, batch_opts)
    resolved = []
    if deps and (dep_values or not batch_opts.get("needed")):
        # Resolved again, so runs that match now join; a value given
        # before (ids, `where ...`) is kept unless a new one is given.
        for name, value in _recorded_dep_values(run).items():
            dep_values.setdefault(name, value)
        resolved = _resolve(deps, dep_values, run.project_dir or ".", flag_vals)
    if not yes and not confirm(_preview(f"You are about to start {run.id} ({run.op_name})", flag_vals, resolved)):
        sys.exit(1)
    if adopted is not None:
        run.write_attr("op", adopted)
        run.write_attr("cmd", runner.command(adopted, flag_vals))
    if assigns or label is not None:
        user_flags = {**(run.get("user_flags") or {}), **new_user_flags}
        runner.update_flags(run, flag_vals, user_flags, label)
    if resolved:
        from guild_core import deps as depslib

        # After the new flags: config files and dependency flags take them.
        depslib.reinstall(run, resolved)
    if tags:
        run.write_attr("tags", sorted(set(run.get("tags") or []) | set(tags)))
    if pipeline_params is not None:
        run.write_attr("run_params", pipeline_params)
    _start(run, run.op_name, background, pidfile, quiet)


def _check_pipeline_restart(run, flag_vals, label, tags, batch_opts):
    """A pipeline's steps, checked against guild.yml as it is now before
    the pipeline starts again; --needed, -l and --tag are remembered for
    its steps."""
    from guild_core import opdef as opdeflib
    from guild_core import steps as stepslib

    opref = run.opref
    if opref is None or opref.type != "guildfile":
        raise GuildError(f"cannot restart pipeline {run.id}: it does not come from a guild.yml")
    params = dict(run.get("run_params") or {})
    if label is not None:
        params["label"] = label
    if tags:
        params["tags"] = list(tags)
    params["needed"] = bool(batch_opts.get("needed"))
    opdef = opdeflib.resolve(opref.op_name, Path(opref.project_dir), flag_detector(plugin_manager()))
    from guild_core.registry import Registry

    stepslib.plan(
        opdef, flag_vals, flag_detector(plugin_manager()),
        label=params.get("label"), tags=params.get("tags") or [],
        steps_data=run.get("steps"), warn=_warn, registry=Registry(plugin_manager()),
    )
    return params


def _flag_error(e: FlagError, op_name: str) -> GuildError:
    if str(e).startswith("unsupported flag"):
        return GuildError(
            str(e),
            hint=f"Try 'guild run {op_name} --help-op' for a list of flags "
            "or use --force-flags to skip this check.",
        )
    return e


def _preview(header: str, flag_vals: dict, resolved=None) -> str:
    lines = [header]
    for name, val in sorted(flag_vals.items()):
        lines.append(f"  {printable(name)}: {printable(flagslib.encode_value(val))}")
    runs = [run for res in resolved or () for run in res.runs]
    if runs:
        from .runselect import format_preview

        lines.append("  The following runs are selected:")
        lines += ["  " + line for line in format_preview(runs)]
    return "\n".join(lines) + "\n" + "Continue?"


def _dependencies(requires, assigns: dict, flagdefs: dict):
    """An operation's dependencies, and the values given for them on the
    command line (taken out of `assigns`: they choose runs, they are
    not flags for the script)."""
    if not requires:
        return [], {}
    from guild_core import deps as depslib
    from guild_core.registry import Registry

    kinds = set(Registry(plugin_manager()).resolvers())
    deps = depslib.dependencies(requires, kinds)
    values = {}
    for dep in deps:
        # NAME=VALUE, or Guild AI's spellings (operation:train=RUN,
        # file:data.csv=PATH); a flag of the operation keeps its name.
        for name in dep.names:
            fd = flagdefs.get(name)
            if fd is not None and getattr(fd, "arg_skip", False) and name == dep.flag:
                # A restart's flags hold the run id recorded before:
                # the dependency is resolved again, not passed on.
                del flagdefs[name]
                fd = None
            if name in assigns and fd is None and dep.name not in values:
                values[dep.name] = assigns.pop(name)
    return deps, values


def _recorded_dep_values(run) -> dict:
    values = {}
    for name, sources in (run.get("deps") or {}).items():
        for source in (sources or {}).values():
            if isinstance(source, dict) and source.get("value") is not None:
                values[name] = source["value"]
    return values


def _resolve(deps, values: dict, project_dir, flags: dict | None = None):
    """Resolve dependencies before anything is created: an unmet one is
    an error and no run is left behind. `flags` fill in ``${flag}``
    references in their definitions."""
    if not deps:
        return []
    from guild_core import deps as depslib

    deps = depslib.with_flag_refs(deps, flags or {})
    from guild_core import select
    from guild_core.registry import Registry

    from .runselect import extensions

    resolvers = {kind: entry.value for kind, entry in Registry(plugin_manager()).resolvers().items()}
    ctx = depslib.Context(select.all_runs(), Path(project_dir), resolvers, extensions())
    return depslib.resolve_all(deps, values, ctx, resolvers)


def _help_optimizer(pm, name: str) -> str | None:
    """``guild run gp --help-op``: an optimizer's flags."""
    from guild_core.opdef import find_guildfile, load_guildfile
    from guild_core.registry import Registry

    gf = find_guildfile(Path.cwd())
    if gf is not None and name in load_guildfile(gf):
        return None
    entry = Registry(pm).optimizers().get(name)
    if entry is None:
        return None
    lines = [f"Usage: guild run [OPTIONS] --optimizer {entry.name} -Fo FLAG=VALUE...", ""]
    if entry.description:
        lines += [entry.description, ""]
    if entry.aliases:
        lines += [f"Aliases: {', '.join(entry.aliases)}", ""]
    lines.append(f"Default max trials: {entry.default_max_trials}")
    lines.append("")
    return "\n".join(lines + _flags_help(entry.flags, "Flags (set with -Fo NAME=VALUE):"))


def _help_op(opdef) -> str:
    lines = [f"Usage: guild run [OPTIONS] {opdef.name} [FLAG]...", ""]
    if opdef.description:
        lines += [opdef.description, ""]
    lines += ["Use 'guild run --help' for a list of options.", ""]
    lines += _flags_help(opdef.flagdefs, "Flags:")
    steps = opdef.data.get("steps") if opdef.data else None
    if steps and "main" not in opdef.data and "exec" not in opdef.data:
        lines += ["", "Steps:"]
        for i, step in enumerate(steps, 1):
            spec = step.get("run") if isinstance(step, dict) else step
            name = step.get("name") if isinstance(step, dict) else None
            lines.append(f"  {i}. {printable(spec)}" + (f" (as {printable(name)})" if name else ""))
    requires = opdef.data.get("requires") if opdef.data else None
    if requires:
        from guild_core import deps as depslib
        from guild_core.registry import Registry

        deps = depslib.dependencies(requires, set(Registry(plugin_manager()).resolvers()))
        lines += ["", "Dependencies (choose runs with NAME=RUN, or NAME=\"where EXPR\" for many):"]
        width = max(len(d.name) for d in deps)
        for dep in deps:
            many = " (many runs)" if dep.multi else ""
            helptext = str(dep.spec.get("help") or "").strip().split("\n")[0]
            lines.append(f"  {dep.name.ljust(width)}  {dep.uri}{many}" + (f"  {helptext}" if helptext else ""))
    return "\n".join(lines)


def _flags_help(flagdefs, title: str) -> list[str]:
    if not flagdefs:
        return ["This operation has no flags."]
    lines = [title]
    rows = []
    for name, fd in sorted(flagdefs.items()):
        desc = (fd.description or "").strip().split("\n")[0]
        notes = []
        if fd.required:
            notes.append("required")
        elif fd.default is not None:
            notes.append(f"default is {flagslib.encode_value(fd.default)}")
        elif fd.null_label:
            notes.append(f"default is {fd.null_label}")
        desc = f"{desc} ({', '.join(notes)})".strip() if notes else desc
        rows.append((name, desc))
        if fd.choices:
            rows.append(("", "Choices: " + ", ".join(flagslib.encode_value(c) for c in fd.choices)))
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        lines.append(f"  {name.ljust(width)}  {desc}".rstrip())
    return lines


def _restart_batch(batch, flags, yes, force_flags, quiet, batch_args):
    """Regenerate a batch's trials with its own seed and last flags (new
    values override and are remembered), reusing matching trials."""
    from guild_core import opdef as opdeflib
    from guild_core.cli.batch import run_batch

    proto = batch.batch_proto
    opref = proto.opref
    project = Path(opref.project_dir or ".")
    opdef = opdeflib.resolve(opref.op_name, project, flag_detector(plugin_manager()))
    prev_flags = proto.get("flags") or {}
    prev_user = proto.get("user_flags") or {}
    try:
        assigns = flagslib.parse_assigns(flags)
        base = {n: flagslib.encode_value(v) if not isinstance(v, str) else v for n, v in prev_user.items()}
        base.update(assigns)
        flag_vals, user_flags = flagslib.resolve_flag_values(opdef.flagdefs, base, force_flags)
    except FlagError as e:
        raise _flag_error(e, opdef.name) from None
    for name, val in prev_flags.items():
        if name not in user_flags and name not in opdef.flagdefs:
            flag_vals[name] = val
    proto.write_attr("flags", flag_vals)
    proto.write_attr("user_flags", user_flags)
    op = batch.get("op") or {}
    batch_args.optimizer = batch_args.optimizer or op.get("optimizer")
    if batch_args.max_trials is None:
        batch_args.max_trials = batch.get("max_trials")
    batch_args.random_seed = batch.get("random_seed")
    objective = batch.get("objective")
    if objective and not (batch_args.minimize or batch_args.maximize):
        if objective.startswith("-"):
            batch_args.maximize = objective[1:]
        else:
            batch_args.minimize = objective
    if not quiet:
        click.echo(f"Restarting {batch.id}")
    run_batch(opdef, flag_vals, user_flags, batch_args, yes=yes, stage=False, quiet=quiet, run_params=batch.get("run_params") or {}, existing=batch)
