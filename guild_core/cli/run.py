"""``guild run``: start an operation, a staged run, or a restart."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from guild_core import flags as flagslib
from guild_core.errors import FlagError, GuildError
from guild_core.flagdefs import FlagDef
from guild_core.cli.common import confirm, flag_detector, flags_launcher, plugin_manager, printable


@click.command(context_settings={"ignore_unknown_options": False, "help_option_names": ["--help"]})
@click.argument("opspec", required=False)
@click.argument("flags", nargs=-1)
@click.option("-l", "--label", metavar="LABEL", help="Set a label for the run.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="TAG", help="Tag the run (may be used more than once).")
@click.option("-c", "--comment", metavar="COMMENT", help="Add COMMENT to the run.")
@click.option("-ec", "--edit-comment", is_flag=True, help="Type the run's comment in an editor ($VISUAL or $EDITOR).")
@click.option("-e", "--edit-flags", is_flag=True, help="Review and change the flags in an editor before running.")
@click.option("-d", "--run-dir", metavar="DIR", help="Run in DIR instead of the run store (the run is not listed).")
@click.option("--stage-dir", metavar="DIR", help="Stage the run in DIR instead of the run store.")
@click.option("--stage", is_flag=True, help="Stage the run to start later with --start.")
@click.option("--start", "--restart", "restart", metavar="RUN", help="Start a staged run or restart an existing one.")
@click.option("--proto", metavar="RUN", help="Run a new run with the operation, flags and source code of RUN.")
@click.option("--force-sourcecode", is_flag=True, help="With --restart or --proto, copy the project's source code as it is now.")
@click.option("--gpus", metavar="DEVICES", help="Limit the run to GPUs DEVICES, a comma-separated list of ids (CUDA_VISIBLE_DEVICES).")
@click.option("--no-gpus", is_flag=True, help="Hide every GPU from the run.")
@click.option("-bl", "--batch-label", metavar="LABEL", help="Label of the batch run (batches only).")
@click.option("-bt", "--batch-tag", "batch_tags", multiple=True, metavar="TAG", help="Tag the batch run (batches only; repeatable).")
@click.option("-bc", "--batch-comment", metavar="COMMENT", help="Add COMMENT to the batch run.")
@click.option("-ebc", "--edit-batch-comment", is_flag=True, help="Type the batch run's comment in an editor.")
@click.option("-o", "--optimizer", metavar="NAME", help="Optimize flags with NAME (random, gp, ...).")
@click.option("-O", "--optimize", is_flag=True, help="Optimize with the operation's default optimizer.")
@click.option("-N", "--minimize", metavar="SCALAR", help="Scalar to minimize (default: loss).")
@click.option("-X", "--maximize", metavar="SCALAR", help="Scalar to maximize.")
@click.option("-Fo", "--opt-flag", "opt_flags", multiple=True, metavar="NAME=VALUE", help="An optimizer flag (repeatable).")
@click.option("--pruner", metavar="NAME", help="Stop losing batch trials early with pruner NAME (median, asha).")
@click.option("-Fp", "--pruner-flag", "pruner_flags", multiple=True, metavar="NAME=VALUE", help="A pruner flag (repeatable).")
@click.option("--rerun-pruned", is_flag=True, help="With --needed on a batch restart, run pruned trials again too.")
@click.option("-m", "--max-trials", "--trials", "max_trials", type=int, metavar="N", help="Run at most N trials in a batch.")
@click.option("--random-seed", type=int, metavar="N", help="Seed for batch sampling.")
@click.option("--debug-sourcecode", metavar="PATH", help="Import the run's Python modules from PATH, not its source code copy.")
@click.option("--stage-trials", is_flag=True, help="Create batch trials as staged runs.")
@click.option("-r", "--remote", metavar="REMOTE", help="Run on REMOTE, a remote that runs runs (ssh).")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt before running.")
@click.option("-f", "--force-flags", is_flag=True, help="Accept flags the operation does not define.")
@click.option("--force-deps", is_flag=True, help="Run even when a dependency cannot be resolved (with a warning).")
@click.option("--stop-after", type=float, metavar="N", help="Stop the run after N minutes (it ends terminated).")
@click.option("--fail-on-trial-error", is_flag=True, help="Stop a batch at the first failed trial.")
@click.option("--needed", is_flag=True, help="Run only when no completed or running run has the same operation and flags; on a batch restart, skip completed trials.")
@click.option("-b", "--background", is_flag=True, help="Run in the background.")
@click.option("--pidfile", metavar="PIDFILE", help="Run in the background and write its pid to PIDFILE.")
@click.option("-n", "--no-wait", is_flag=True, help="Do not wait for a remote run (with --remote).")
@click.option("--save-trials", metavar="PATH", help="Write the trials a batch would run to PATH (.csv, .json, .yml).")
@click.option("--keep-run", is_flag=True, help="Keep the run even when the operation is delete-on-success.")
@click.option("--keep-batch", is_flag=True, help="Keep the batch run (batch runs are always kept here).")
@click.option("-D", "--dep", "extra_deps", multiple=True, metavar="PATH", help="Copy PATH into the run as a dependency (repeatable).")
@click.option("--break", "break_", metavar="LOCATION", help="Start the Python script under pdb with a breakpoint at LOCATION (LINE or FILE:LINE).")
@click.option("--break-on-error", is_flag=True, help="Enter the Python debugger where the script fails.")
@click.option("-q", "--quiet", is_flag=True, help="Do not show messages from guild.")
@click.option("--print-cmd", is_flag=True, help="Show the command the operation would run and exit.")
@click.option("--print-env", is_flag=True, help="Show the environment the operation would run with and exit.")
@click.option("--print-trials", is_flag=True, help="Show the trials a batch would run and exit.")
@click.option("--help-model", is_flag=True, help="Show the model's help and exit.")
@click.option("-h", "--help-op", is_flag=True, help="Show the operation's help and flags and exit.")
@click.option("--test-output-scalars", metavar="OUTPUT", help="Show what the output-scalars patterns find in OUTPUT (a file, or - for standard input) and exit.")
@click.option("--test-sourcecode", is_flag=True, help="Show which source code files would be copied, and why, and exit.")
@click.option("--test-flags", is_flag=True, help="Show the operation's flag definitions and exit.")
@click.option("--init-trials", is_flag=True, help="Create batch trials as pending runs and run none.")
@click.option("--workers", type=int, metavar="N", help="Run up to N batch trials at once (with --gpus, one GPU each).")
@click.option("--dask", "dask", metavar="[ADDRESS]", is_flag=False, flag_value="", default=None,
              help="Run batch trials on Dask: a local cluster of --workers processes, or the scheduler at ADDRESS (tcp://HOST:PORT; default $GUILD_DASK_SCHEDULER).")
@click.option("--dask-resources", "dask_resources", multiple=True, metavar="NAME=N",
              help="A Dask worker resource each trial needs (repeatable, with --dask).")
def run(opspec, flags, label, tags, comment, edit_comment, edit_flags, run_dir, stage_dir, stage, restart, proto,
        force_sourcecode, gpus, no_gpus, batch_label, batch_tags, batch_comment, edit_batch_comment,
        debug_sourcecode, remote, yes, force_flags, force_deps, stop_after, background, pidfile, no_wait,
        keep_run, keep_batch, extra_deps, break_, break_on_error, quiet, print_cmd, print_env, help_model,
        help_op, test_output_scalars, test_sourcecode, test_flags, **batch_opts):
    """Run an operation.

    OPSPEC is an operation from guild.yml or a script path (train.py).
    Set flags with NAME=VALUE arguments; value lists (x=[1,2]), sequences
    (range[1:5]), search ranges (uniform[0:1]) and @FILE batch files run
    a batch of trials.
    """
    if no_wait and not remote:
        raise GuildError("--no-wait needs --remote")
    on_remote = _remote_runner(remote) if remote else None
    if on_remote is not None:
        if restart or proto or background or pidfile or run_dir or stage_dir or stage:
            raise GuildError("--remote starts a new run there: it cannot be used with --restart/--start, --proto, --background, --pidfile, --run-dir, --stage-dir or --stage")
        stage = True
    if gpus is not None and no_gpus:
        raise GuildError("--gpus and --no-gpus cannot both be used")
    if run_dir and stage_dir:
        raise GuildError("--run-dir and --stage-dir cannot both be used")
    if stop_after is not None and not stop_after > 0:
        raise GuildError(f"invalid --stop-after {stop_after:g}: give a number of minutes greater than 0")
    extra = RunExtras(
        comment=_comment(comment, edit_comment),
        batch_label=batch_label, batch_tags=list(batch_tags),
        batch_comment=_comment(batch_comment, edit_batch_comment),
        gpus=_gpus(gpus, no_gpus), stop_after=stop_after, keep_run=keep_run,
        run_dir=run_dir or stage_dir, force_deps=force_deps, extra_deps=list(extra_deps),
        debug_sourcecode=debug_sourcecode, break_at=break_, break_on_error=break_on_error,
        edit_flags=edit_flags, force_sourcecode=force_sourcecode,
    )
    if stage_dir:
        stage = True
    if proto and restart:
        raise GuildError("--proto and --restart cannot both be used")
    if opspec and ("=" in opspec or opspec.startswith("@")) and not Path(opspec).exists():
        flags = (opspec,) + flags
        opspec = None
    # Plain values until a batch is certain: the batch modules stay off
    # a single run's start-up.
    batch_opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in batch_opts.items()}
    flags = _parallel_opts(batch_opts, extra, flags)
    batch_opts["batch_files"] = [f[1:] for f in flags if f.startswith("@")]
    flags = tuple(f for f in flags if not f.startswith("@"))
    if restart or proto:
        _restart(restart or proto, list(flags), yes, label, tags, background, pidfile, print_cmd, force_flags, quiet, batch_opts,
                 extra=extra, proto=bool(proto))
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
    if help_model:
        click.echo(_help_model(opspec))
        return
    opdef = opdeflib.resolve(opspec, Path.cwd(), flag_detector(pm))
    if help_op:
        click.echo(_help_op(opdef))
        return
    if test_sourcecode:
        from guild_core import sourcecode as sourcecodelib

        click.echo("\n".join(sourcecodelib.test_sourcecode_for(opdef, Path.cwd())))
        return
    if test_flags:
        click.echo(_test_flags(opdef))
        return
    if test_output_scalars:
        _test_output_scalars(opdef, test_output_scalars)
        return
    try:
        assigns = flagslib.parse_assigns(list(flags))
        deps, dep_values = _dependencies(opdef.data.get("requires"), assigns, opdef.flagdefs)
        flag_vals, user_flags = flagslib.resolve_flag_values(opdef.flagdefs, assigns, force_flags)
        if extra.edit_flags:
            edited = _edit_flags(flag_vals, opdef.flagdefs, force_flags)
            if edited is not None:
                flag_vals, user_flags = edited
    except FlagError as e:
        raise _flag_error(e, opdef.name) from None
    deps += _extra_deps(extra.extra_deps)
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
            if on_remote is not None:
                raise GuildError(f"cannot run pipeline {opdef.name} on remote '{remote}' yet: run it there")
            if _wants_batch(batch_opts) or _is_batch(flag_vals, user_flags, opdef.flagdefs):
                raise GuildError(f"cannot run pipeline {opdef.name} as a batch: give each flag one value")
            _run_pipeline(opdef, flag_vals, user_flags, run_params, batch_opts, print_cmd, pidfile)
            return
        _warn(f"operation '{opdef.name}' has both {'main' if 'main' in opdef.data else 'exec'} and steps: steps ignored")
    if _wants_batch(batch_opts) or _is_batch(flag_vals, user_flags, opdef.flagdefs):
        from guild_core.cli.batch import BatchArgs, run_batch

        if on_remote is not None:
            raise GuildError(f"cannot run a batch on remote '{remote}' yet: give each flag one value")

        # One selection for every trial, made before the batch exists.
        resolved = _resolve(deps, dep_values, opdef.project_dir, flag_vals, extra.force_deps)
        run_batch(
            opdef, flag_vals, user_flags, BatchArgs(**batch_opts), yes=yes, stage=stage, quiet=quiet,
            run_params=run_params, deps=resolved, options=extra.run_options(),
            batch_attrs=_batch_attrs(extra),
        )
        return
    if batch_opts.get("pruner") or batch_opts.get("pruner_flags"):
        raise GuildError(
            "--pruner stops a batch's trials early, and this is a single run",
            hint="Give a flag a list of values (x=[1,2]), a search range or an optimizer.",
        )
    if batch_opts.get("executor") or (batch_opts.get("workers") or 1) > 1:
        raise GuildError(
            "--workers and --dask run a batch's trials, and this is a single run",
            hint="Give a flag a list of values (x=[1,2]), a search range or an optimizer.",
        )
    # With no flag values to deliver, the script runs as it is: a launcher
    # would only add its own start-up.
    has_values = any(v is not None for v in flag_vals.values())
    launcher = flags_launcher(pm, opdef.flags_dest) if has_values else None
    if print_cmd:
        op = runner.op_data(opdef, launcher, script_in_run=True)
        click.echo(" ".join(shlex.quote(a) for a in runner.command(op, flag_vals)))
        return
    if print_env:
        for name, val in sorted(runner.preview_env(opdef, launcher, flag_vals, extra.run_options()).items()):
            click.echo(f"{name}={printable(val)}")
        return
    if batch_opts.get("needed") and _skip_needed(opdef, flag_vals):
        return
    resolved = _resolve(deps, dep_values, opdef.project_dir, flag_vals, extra.force_deps)
    action = f"run {opdef.name} on {remote}" if on_remote is not None else f"{'stage' if stage else 'run'} {opdef.name}"
    if not yes and not confirm(_preview(f"You are about to {action}", flag_vals, resolved)):
        # As Guild AI: declining is not an error.
        return
    new_run = runner.create_run(
        opdef, flag_vals, user_flags, launcher,
        label=label, tags=list(tags), run_params=run_params, staged=stage, deps=resolved,
        options=extra.run_options(), run_dir=extra.run_dir,
    )
    if extra.run_dir and not quiet:
        click.echo(f"Run directory is '{new_run.path}' (results will not be visible to Guild)", err=True)
    if on_remote is not None:
        _start_remote(on_remote, new_run, opdef.name, quiet)
        return
    if stage:
        if not quiet:
            click.echo(f"{opdef.name} staged as {new_run.id}")
            click.echo(f"To start the operation, use 'guild run --start {new_run.id}'")
        return
    _start(new_run, opdef.name, background, pidfile, quiet)


def _remote_runner(name: str):
    """Remote `name`, when its type can start runs."""
    from guild_core import remotes

    remote = remotes.get(name)
    if not callable(getattr(remote, "start", None)):
        raise GuildError(f"remote '{name}' cannot start runs: only a remote that runs them (ssh) can")
    return remote


def _start_remote(remote, new_run, op_name: str, quiet: bool) -> None:
    """Start a run staged here on `remote`; the staged copy here goes
    once the remote has it (the run lives there: `guild pull` brings it
    back)."""
    import shutil

    try:
        remote.start(new_run.path)
    except BaseException:
        shutil.rmtree(new_run.path, ignore_errors=True)
        raise
    shutil.rmtree(new_run.path, ignore_errors=True)
    if not quiet:
        click.echo(f"{op_name} started on {remote.name} as {new_run.id}")
        click.echo(f"To watch its output, use 'guild watch -r {remote.name} {new_run.id[:8]}'")


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
        return  # declining is not an error, as in Guild AI
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


@dataclass
class RunExtras:
    """`guild run` options that shape the run beyond its flags."""

    comment: str | None = None
    batch_label: str | None = None
    batch_tags: list[str] = field(default_factory=list)
    batch_comment: str | None = None
    gpus: str | None = None
    stop_after: float | None = None
    keep_run: bool = False
    run_dir: str | None = None
    force_deps: bool = False
    extra_deps: list[str] = field(default_factory=list)
    debug_sourcecode: str | None = None
    break_at: str | None = None
    break_on_error: bool = False
    edit_flags: bool = False
    force_sourcecode: bool = False

    def run_options(self):
        """What `runner` applies to a run (see `runner.apply_options`)."""
        from guild_core import runner

        return runner.RunOptions(
            comment=self.comment, gpus=self.gpus, stop_after=self.stop_after,
            keep_run=self.keep_run, debug_sourcecode=self.debug_sourcecode,
            break_at=self.break_at, break_on_error=self.break_on_error,
        )


def _comment(text: str | None, edit: bool) -> str | None:
    if not edit:
        return text
    edited = _edit(text or "", ".GUILD_COMMENT")
    return edited.strip() or None if edited is not None else text


def _edit(text: str, extension: str) -> str | None:
    """`text` edited in $VISUAL or $EDITOR (None: left unchanged)."""
    try:
        return click.edit(text, extension=extension)
    except click.ClickException as e:
        raise GuildError(f"cannot start the editor: {e.format_message()}") from None


_GPUS_P = re.compile(r"^\d+(,\d+)*$")


def _gpus(gpus: str | None, no_gpus: bool) -> str | None:
    """CUDA_VISIBLE_DEVICES for --gpus / --no-gpus."""
    if no_gpus:
        return ""
    if gpus is None:
        return None
    value = gpus.replace(" ", "")
    if not _GPUS_P.match(value):
        raise GuildError(f"invalid --gpus {gpus!r}: expected GPU ids separated by commas (0,1)")
    return value


def _edit_flags(flag_vals: dict, flagdefs: dict, force_flags: bool):
    """-e: the flags as YAML in an editor; the edited values, typed."""
    import yaml

    text = "".join(f"{n}: {flagslib.encode_value(v)}\n" for n, v in sorted(flag_vals.items()))
    edited = _edit(text, ".yml")
    if edited is None or edited == text:
        return None
    try:
        data = yaml.safe_load(edited) or {}
    except yaml.YAMLError as e:
        raise GuildError(f"edited flags are not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise GuildError("edited flags must be NAME: VALUE lines")
    assigns = {str(n): (v if isinstance(v, str) else flagslib.encode_value(v)) for n, v in data.items() if v is not None}
    return flagslib.resolve_flag_values(flagdefs, assigns, force_flags)


def _parallel_opts(batch_opts, extra: "RunExtras", flags: tuple) -> tuple:
    """Turn ``--workers``, ``--dask`` and ``--dask-resources`` into the
    batch options; returns `flags`, with a flag ``--dask`` took for its
    address given back."""
    workers = batch_opts.get("workers")
    if workers is not None and workers < 1:
        raise GuildError(f"invalid --workers {workers}: give a number of trials to run at once, 1 or more")
    address = batch_opts.pop("dask")
    raw_resources = batch_opts.pop("dask_resources") or []
    if address is not None and ("=" in address or address.startswith("@")):
        # `--dask x=[1,2]`: a flag, not an address.
        flags = (address,) + tuple(flags)
        address = ""
    if address is not None:
        batch_opts["executor"] = "dask"
        batch_opts["executor_address"] = address or None
    elif raw_resources:
        raise GuildError("--dask-resources needs --dask")
    resources = {}
    for item in raw_resources:
        name, sep, amount = item.partition("=")
        try:
            resources[name.strip()] = float(amount) if sep else 1.0
        except ValueError:
            raise GuildError(f"invalid --dask-resources {item!r}: expected NAME=N, as gpu=1") from None
        if not name.strip() or resources[name.strip()] <= 0:
            raise GuildError(f"invalid --dask-resources {item!r}: expected NAME=N, as gpu=1")
    batch_opts["resources"] = resources
    if (address is not None or (workers or 1) > 1) and extra.gpus:
        # Parallel trials share the GPUs out: one each.
        batch_opts["gpu_slots"] = extra.gpus.split(",")
        extra.gpus = None
    return flags


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


def _restart(spec, flags, yes, label, tags, background, pidfile, print_cmd, force_flags, quiet, batch_opts,
             extra: RunExtras | None = None, proto: bool = False):
    """Restart run `spec`; with `proto` (--proto), run a copy of it
    instead, made only once confirmed."""
    from guild_core import runner, select
    from guild_core.opdef import _typed

    extra = extra or RunExtras()
    run = select.select_one(select.all_runs(), spec)
    if proto:
        if run.batch_proto is not None:
            raise GuildError(f"cannot use batch run {run.id} as a prototype: use one of its trials")
    elif run.status == "running":
        raise GuildError(f"run {run.id} is still running", hint="Stop it first with 'guild stop'.")
    elif _being_started(run):
        raise GuildError(f"run {run.id} is being started by another process (a queue or guild run --start)")
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
    header = f"You are about to run {run.op_name} (using {run.id} as a prototype)" if proto else f"You are about to start {run.id} ({run.op_name})"
    if not yes and not confirm(_preview(header, flag_vals, resolved)):
        return  # declining is not an error, as in Guild AI
    if proto:
        run = runner.copy_for_proto(run, run_dir=extra.run_dir)
        user_flags = {**(run.get("user_flags") or {}), **new_user_flags}
        runner.update_flags(run, flag_vals, user_flags, label)
        assigns, label = {}, None
    claimed = False
    if not proto and run.guild_path("STAGED").exists():
        # A staged run starts once: the claim a queue makes too.
        from guild_core import queue

        if not queue.claim(run):
            raise GuildError(f"run {run.id} was started by another process (a queue or guild run --start)")
        claimed = True
    try:
        _prepare_restart(run, extra, adopted, flag_vals, assigns, label, new_user_flags, resolved, tags, pipeline_params)
    except BaseException:
        if claimed:
            queue.release(run)
        raise
    _start(run, run.op_name, background, pidfile, quiet)


def _being_started(run) -> bool:
    """Whether another process claimed `run` to start it (its PENDING
    names a live process). An ownerless PENDING is looked at again a
    moment later: a claim renames STAGED to PENDING, then names itself."""
    import time

    for attempt in range(2):
        if run.status != "pending":
            return False
        try:
            if run.guild_path("PENDING").read_text().strip():
                return True
        except OSError:
            return False
        if attempt == 0:
            time.sleep(0.1)
    return False


def _prepare_restart(run, extra, adopted, flag_vals, assigns, label, new_user_flags, resolved, tags, pipeline_params):
    from guild_core import runner

    if extra.force_sourcecode:
        _refresh_sourcecode(run)
    runner.apply_options(run, extra.run_options())
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


def _refresh_sourcecode(run) -> None:
    """--force-sourcecode: the run's source code copied again from its
    project, as it is now."""
    from guild_core import opdef as opdeflib
    from guild_core import sourcecode as sourcecodelib

    opref = run.opref
    if opref is None or not opref.project_dir or not Path(opref.project_dir).is_dir():
        raise GuildError(f"cannot copy source code for run {run.id}: its project is gone")
    opdef = opdeflib.resolve(opref.op_name, Path(opref.project_dir), flag_detector(plugin_manager()))
    files = sourcecodelib.files_for(opdef, sourcecodelib.warn_stderr)
    digest = sourcecodelib.copy_files(opdef.project_dir, opdef.sourcecode, files, run.path)
    if opdef.sourcecode.digest:
        run.write_attr("sourcecode_digest", digest)


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


def _resolve(deps, values: dict, project_dir, flags: dict | None = None, force: bool = False):
    """Resolve dependencies before anything is created: an unmet one is
    an error and no run is left behind (with `force`, --force-deps, a
    warning, and the run goes without it). `flags` fill in ``${flag}``
    references in their definitions."""
    if not deps:
        return []
    if force:
        resolved = []
        for dep in deps:
            try:
                resolved += _resolve([dep], values, project_dir, flags)
            except GuildError as e:
                _warn(f"{e} (continuing: --force-deps)")
        return resolved
    from guild_core import deps as depslib

    deps = depslib.with_flag_refs(deps, flags or {})
    from guild_core import select
    from guild_core.registry import Registry

    from .runselect import extensions

    resolvers = {kind: entry.value for kind, entry in Registry(plugin_manager()).resolvers().items()}
    ctx = depslib.Context(select.all_runs(), Path(project_dir), resolvers, extensions())
    return depslib.resolve_all(deps, values, ctx, resolvers)


def _extra_deps(paths: list[str]) -> list:
    """-D PATH: each a file dependency, copied into the run."""
    if not paths:
        return []
    from guild_core import deps as depslib
    from guild_core.registry import Registry

    kinds = set(Registry(plugin_manager()).resolvers())
    for path in paths:
        if not Path(path).exists():
            raise GuildError(f"cannot find dependency {path}")
    return depslib.dependencies([{"file": str(Path(p).absolute())} for p in paths], kinds)


def _batch_attrs(extra: RunExtras) -> dict:
    from guild_core import util

    attrs = {}
    if extra.batch_label:
        attrs["label"] = extra.batch_label
    if extra.batch_tags:
        attrs["tags"] = list(extra.batch_tags)
    if extra.batch_comment:
        attrs["comments"] = [{
            "body": extra.batch_comment, "user": util.username(),
            "host": util.hostname(), "time": util.now_micros(),
        }]
    return attrs


def _skip_needed(opdef, flag_vals) -> bool:
    """--needed: a completed or running run of the operation with these
    flags means nothing runs (Guild AI's message, exit 0)."""
    from guild_core import select, steps
    from guild_core.util import format_timestamp

    matches = steps.matching_runs(opdef, flag_vals, select.all_runs())
    if not matches:
        return False
    click.echo("Skipping run because the following runs match this operation (--needed specified):")
    for run in matches:
        started = format_timestamp(run.get("started"))
        click.echo(printable(f"  [{run.short_id}]  {run.op_name}  {started}  {run.status}  {run.get('label') or ''}".rstrip()))
    return True


def _help_model(opspec: str) -> str:
    """--help-model: the model's description and operations."""
    from guild_core.opdef import find_guildfile, load_guildfile

    gf = find_guildfile(Path.cwd())
    if gf is None:
        raise GuildError("there is no guild.yml here: --help-model needs a model")
    model = opspec.split(":", 1)[0] if ":" in opspec else ""
    opdefs = load_guildfile(gf)
    ops = {
        name: od for name, od in opdefs.items()
        if (name.split(":", 1)[0] if ":" in name else "") == model
    }
    if not ops:
        raise GuildError(f"cannot find model '{model}' in {gf.name}")
    shown = f"{model}:OPERATION" if model else "OPERATION"
    lines = [f"Usage: guild run [OPTIONS] {shown} [FLAG]...", ""]
    lines += [f"Use 'guild run {shown} --help-op' for help on a particular operation.", "", "Operations:"]
    width = max(len(n.split(":")[-1]) for n in ops)
    for name, od in sorted(ops.items()):
        desc = str((od.get("description") if isinstance(od, dict) else "") or "").split("\n")[0]
        lines.append(f"  {name.split(':')[-1].ljust(width)}  {printable(desc)}".rstrip())
    return "\n".join(lines)


def _test_flags(opdef) -> str:
    """--test-flags: where flags go and each flag's definition."""
    import yaml

    data = opdef.data or {}
    lines = [f"flags-dest: {opdef.flags_dest}", f"flags-import: {flagslib.encode_value(data.get('flags-import', 'no'))}", "flags:"]
    if not opdef.flagdefs:
        lines[-1] = "flags: {}"
    for name, fd in sorted(opdef.flagdefs.items()):
        lines.append(f"  {printable(name)}:")
        for key, val in fd.to_dict().items():
            shown = yaml.safe_dump(val, default_flow_style=True).strip().removesuffix("...").strip() if val is not None else ""
            lines.append(f"    {key}: {printable(shown)}".rstrip())
    return "\n".join(lines)


def _test_output_scalars(opdef, source: str) -> None:
    """--test-output-scalars: each line of `source` (a file, or - for
    standard input) and what the operation's patterns find in it."""
    from guild_core import scalars as scalarslib

    config = (opdef.data or {}).get("output-scalars")
    patterns = scalarslib.compile_patterns(config)
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(errors="replace")
        except OSError as e:
            raise GuildError(f"cannot read {source}: {e.strerror}") from None
    for line in text.splitlines():
        click.echo(printable(line))
        for key, pattern in patterns:
            found = [m.groups() or (m.group(0),) for m in pattern.finditer(line)]
            shown = repr(pattern.pattern)
            if not found:
                click.echo(f"  {printable(shown)}: <no matches>")
                continue
            values = scalarslib.OutputScalars(config).line(line)
            got = ", ".join(f"{k}={v:g}" for k, v, _s in values)
            click.echo(f"  {printable(shown)}: {printable(found)} ({printable(got)})")


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
    _restart_pruner(batch, batch_args)
    objective = batch.get("objective")
    if objective and not (batch_args.minimize or batch_args.maximize):
        if objective.startswith("-"):
            batch_args.maximize = objective[1:]
        else:
            batch_args.minimize = objective
    if not quiet:
        click.echo(f"Restarting {batch.id}")
    run_batch(opdef, flag_vals, user_flags, batch_args, yes=yes, stage=False, quiet=quiet, run_params=batch.get("run_params") or {}, existing=batch)


def _restart_pruner(batch, batch_args) -> None:
    """A restarted batch keeps its pruner and the pruner's flags; flags
    given now are applied over them."""
    recorded = batch.get("pruner")
    if not isinstance(recorded, dict) or not recorded.get("name"):
        return
    if batch_args.pruner and batch_args.pruner != recorded["name"]:
        return
    batch_args.pruner = recorded["name"]
    kept = [f"{n}={flagslib.encode_value(v)}" for n, v in (recorded.get("flags") or {}).items()]
    kept += [f"{n}={recorded[n]}" for n in ("notice", "grace") if n in recorded]
    batch_args.pruner_flags = kept + list(batch_args.pruner_flags)
