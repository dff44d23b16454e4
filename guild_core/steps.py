"""Pipelines: guild.yml operations made of ``steps:``.

A pipeline is a run of its own, whose command is this module
(``python -um guild_core.steps``, as Guild AI's is its ``steps_main``).
Started like any run (`runner.start`: foreground, background, staged,
restarted), it reads the ``steps`` attribute (the raw ``steps:`` list),
and runs each step as an ordinary run of the step's operation, in this
process, through the path ``guild run OP`` takes (`opdef.resolve`,
`flags.resolve_flag_values`, `runner.create_run`, `runner.start`). The
pipeline directory links each step run by the step's name. A step that
fails stops the pipeline with the step's exit status; a failed check,
with status 3.

`plan` checks every step (its operation, its flags, its checks) before
anything is created, so ``guild run PIPELINE`` refuses a bad step with
one line and leaves no run behind.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import shlex
import signal
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from . import flags as flagslib
from .errors import FlagError, GuildError
from .run import Run

MODULE = "guild_core.steps"
CHECK_FAILED = 3

# Step attributes this project runs, Guild AI's names.
STEP_KEYS = {
    "run", "name", "flags", "needed", "expect", "checks", "isolate-runs",
    "label", "tags", "force-flags",
}
# A batch step's attributes (Guild AI's names) and the `BatchOptions`
# field each sets; `batch-label` and `batch-tags` are the batch run's.
BATCH_KEYS = {
    "max-trials": "max_trials", "optimizer": "optimizer", "optimize": "optimize",
    "opt-flags": "opt_flags", "random-seed": "random_seed", "minimize": "minimize",
    "maximize": "maximize", "fail-on-trial-error": "fail_on_trial_error",
    "batch-label": None, "batch-tags": None,
}
# Guild AI's step attributes for remote runs and debugging: refused, as
# a step here runs locally and unattended.
UNSUPPORTED_KEYS = {
    "remote", "gpus", "no-gpus", "stop-after", "break", "break-on-error",
    "additional-deps", "opspec",
}
# Run options a step's run string may hold: (takes a value, key).
_RUN_OPTIONS = {
    "--needed": (False, "needed"),
    "--force-flags": (False, "force-flags"),
    "-l": (True, "label"),
    "--label": (True, "label"),
    "--tag": (True, "tags"),
    "-t": (True, "tags"),
    "-y": (False, None),
    "--yes": (False, None),
    "-o": (True, "optimizer"),
    "--optimizer": (True, "optimizer"),
    "-O": (False, "optimize"),
    "--optimize": (False, "optimize"),
    "-m": (True, "max-trials"),
    "--max-trials": (True, "max-trials"),
    "--trials": (True, "max-trials"),
    "-Fo": (True, "opt-flags"),
    "--opt-flag": (True, "opt-flags"),
    "-N": (True, "minimize"),
    "--minimize": (True, "minimize"),
    "-X": (True, "maximize"),
    "--maximize": (True, "maximize"),
    "--random-seed": (True, "random-seed"),
    "-bl": (True, "batch-label"),
    "--batch-label": (True, "batch-label"),
    "-bt": (True, "batch-tags"),
    "--batch-tag": (True, "batch-tags"),
    "--fail-on-trial-error": (False, "fail-on-trial-error"),
}
_REPEATED = {"tags", "opt-flags", "batch-tags"}

# Other `guild run` options Guild AI 0.9 reads in a step and ignores (it
# warns): skipped here with a warning, with the value of those that take
# one. Options that only preview or stage a batch are refused: in an
# unattended pipeline they would quietly run nothing.
_IGNORED_VALUE_OPTIONS = {
    "-c", "--comment", "-d", "--run-dir", "--stage-dir", "--proto",
    "--debug-sourcecode", "--gpus", "-r", "--remote", "--stop-after",
    "-D", "--dep", "--pidfile", "--start", "--restart", "--test-output-scalars",
    "-bc", "--batch-comment",
}
_REFUSED_OPTIONS = {"--save-trials", "--print-trials", "--init-trials", "--stage-trials"}

_REF_P = re.compile(r"\$\{([^}]+)\}")


def is_pipeline(opdef) -> bool:
    """An operation defined by ``steps:`` (Guild AI ignores steps when
    main or exec is given too)."""
    data = opdef.data or {}
    return bool(data.get("steps")) and "main" not in data and "exec" not in data


# ---------------------------------------------------------------------
# Step definitions
# ---------------------------------------------------------------------


@dataclass
class Check:
    """A step check: ``output: PATTERN`` or ``file: GLOB`` (with
    ``contains: PATTERN``, ``compare-to: PATH``)."""

    kind: str
    target: str
    contains: str | None = None
    compare_to: str | None = None


class CheckFailed(Exception):
    pass


@dataclass
class Step:
    name: str
    opspec: str
    flags: dict[str, str]
    needed: bool = False
    force_flags: bool = False
    isolate_runs: bool = True
    label: str | None = None
    tags: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    run_spec: str = ""
    # Batch options (`BATCH_KEYS`), batch files (`@FILE`), and the batch
    # run's label and tags: set only for a batch step.
    batch: dict[str, Any] = field(default_factory=dict)
    batch_files: list[str] = field(default_factory=list)
    batch_label: str | None = None
    batch_tags: list[str] = field(default_factory=list)

    def batch_options(self):
        """The step's `BatchOptions` (all unset for a step that gives
        none)."""
        from .scheduler import BatchOptions

        return BatchOptions(needed=self.needed, batch_files=list(self.batch_files), **self.batch)

    def describe(self) -> str:
        """The step as Guild AI shows it: its operation and options."""
        parts = [self.opspec]
        if self.label:
            parts += ["--label", self.label]
        for tag in self.tags:
            parts += ["--tag", tag]
        if self.needed:
            parts.append("--needed")
        if self.batch_label:
            parts += ["--batch-label", self.batch_label]
        for tag in self.batch_tags:
            parts += ["--batch-tag", tag]
        b = self.batch
        if b.get("max_trials"):
            parts += ["--max-trials", str(b["max_trials"])]
        for name in ("minimize", "maximize", "optimizer", "random_seed"):
            if b.get(name) is not None:
                parts += ["--" + name.replace("_", "-"), str(b[name])]
        for assign in b.get("opt_flags") or ():
            parts += ["--opt-flag", assign]
        if b.get("optimize"):
            parts.append("--optimize")
        if b.get("fail_on_trial_error"):
            parts.append("--fail-on-trial-error")
        parts += ["@" + f for f in self.batch_files]
        parts += [f"{n}={_quote(v)}" for n, v in sorted(self.flags.items())]
        return " ".join(parts)


def _quote(val: str) -> str:
    return shlex.quote(val) if val != "" else "''"


def parse_steps(
    data: Any,
    pipeline: str,
    flags: dict[str, Any],
    model: str = "",
    label: str | None = None,
    tags: list[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Step]:
    """The steps of a pipeline, normalized, with ``${flag}`` references
    replaced by the pipeline's flag values `flags`. `label` and `tags`
    (the pipeline's own, given with ``-l`` and ``--tag``) go to each step
    that sets none. Raises `GuildError` naming the step."""
    if not isinstance(data, list):
        raise GuildError(f"invalid steps of {pipeline}: expected a list, got {_kind(data)}")
    return [
        _parse_step(item, i, pipeline, flags, model, label, tags or [], warn)
        for i, item in enumerate(data, 1)
    ]


def _parse_step(data, index, pipeline, parent_flags, model, label, tags, warn) -> Step:
    where = f"step {index} of {pipeline}"
    if isinstance(data, str):
        data = {"run": data}
    elif not isinstance(data, dict):
        raise GuildError(f"invalid {where}: expected an operation or a mapping with 'run', got {data!r}")
    for key in data:
        if key in UNSUPPORTED_KEYS:
            raise GuildError(f"invalid {where}: '{key}' is not supported in a step (a step runs here, unattended)")
        if key not in STEP_KEYS and key not in BATCH_KEYS and warn:
            warn(f"{where}: unknown attribute '{key}' (ignored)")
    spec = data.get("run")
    if not isinstance(spec, str) or not spec.strip():
        raise GuildError(f"invalid {where}: 'run' must name an operation (got {spec!r})")
    try:
        args = shlex.split(spec)
    except ValueError as e:
        raise GuildError(f"invalid {where}: {str(e).lower()} in {spec!r}") from None
    opspec, opts, assigns, batch_files = _parse_run_args(args, where, spec)
    data = dict(data)
    for key, val in opts.items():
        if key in _REPEATED:
            data[key] = list(_as_list(data.get(key))) + val
        else:
            data.setdefault(key, val)
    if model and ":" not in opspec:
        opspec = f"{model}:{opspec}"
    name = data.get("name")
    if name is not None and not isinstance(name, (str, int)):
        raise GuildError(f"invalid {where}: name must be a string")
    name = str(name) if name is not None else args[0]
    flags = dict(assigns)
    flags.update(_mapping_flags(data.get("flags"), where))
    # Pipeline flags named for the step (`train:lr`, `STEP:lr`), given
    # with --force-flags, reach it as its own.
    prefixed: dict[str, str] = {}
    for prefix in (f"{opspec}:", f"{name}:", f"{args[0]}:"):
        for full, val in parent_flags.items():
            if full.startswith(prefix) and val is not None:
                prefixed.setdefault(full[len(prefix):], flagslib.encode_value(val))
    flags.update(prefixed)
    resolved = {}
    for fname, val in flags.items():
        val = _resolve_refs(val, parent_flags, f"{where}: flag '{fname}'")
        if val is not None:
            resolved[fname] = val
    step_label = data.get("label")
    step_label = label if step_label is None else step_label
    step_tags = [str(t) for t in _as_list(data.get("tags"))] or list(tags)
    return Step(
        name=name,
        opspec=opspec,
        flags=resolved,
        needed=_flag(data, "needed", False, where),
        force_flags=_flag(data, "force-flags", False, where),
        isolate_runs=_flag(data, "isolate-runs", True, where),
        label=_resolve_refs(str(step_label), parent_flags, f"{where}: label", strict=False) if step_label is not None else None,
        tags=[_resolve_refs(t, parent_flags, f"{where}: tag", strict=False) or "" for t in step_tags],
        checks=_parse_checks(data, where),
        run_spec=spec,
        batch=_batch_options(data, where, parent_flags),
        batch_files=batch_files,
        batch_label=_resolve_refs(str(data["batch-label"]), parent_flags, f"{where}: batch-label", strict=False) if data.get("batch-label") is not None else None,
        batch_tags=[_resolve_refs(str(t), parent_flags, f"{where}: batch tag", strict=False) or "" for t in _as_list(data.get("batch-tags"))],
    )


def _batch_options(data: dict, where: str, parent_flags: dict[str, Any]) -> dict[str, Any]:
    """`BatchOptions` fields from a step's batch attributes."""
    out: dict[str, Any] = {}
    for key, field_name in BATCH_KEYS.items():
        val = data.get(key)
        if field_name is None or val is None:
            continue
        if field_name in ("optimize", "fail_on_trial_error"):
            out[field_name] = _flag(data, key, False, where)
        elif field_name == "opt_flags":
            out[field_name] = [
                _resolve_refs(str(a), parent_flags, f"{where}: opt-flag") or ""
                for a in (_opt_flag_list(val, where))
            ]
        elif field_name in ("max_trials", "random_seed"):
            val = _resolve_refs(str(val), parent_flags, f"{where}: {key}")
            try:
                out[field_name] = int(val)
            except (TypeError, ValueError):
                raise GuildError(f"invalid {where}: {key} must be an integer (got {val!r})") from None
        else:
            out[field_name] = _resolve_refs(str(val), parent_flags, f"{where}: {key}")
    return out


def _opt_flag_list(val: Any, where: str) -> list[str]:
    if isinstance(val, dict):
        return [f"{n}={v if isinstance(v, str) else flagslib.encode_value(v)}" for n, v in val.items()]
    return [str(a) for a in _as_list(val)]


def _parse_run_args(args: list[str], where: str, spec: str):
    opspec = args[0]
    if opspec.startswith("-") or "=" in opspec:
        raise GuildError(f"invalid {where}: {spec!r} must start with an operation name")
    opts: dict[str, Any] = {}
    assigns: dict[str, str] = {}
    batch_files: list[str] = []
    i = 1
    while i < len(args):
        arg = args[i]
        if arg.startswith("@") and len(arg) > 1:
            batch_files.append(arg[1:])
        elif arg.startswith("-"):
            name, eq, inline = arg.partition("=")
            option = _RUN_OPTIONS.get(name)
            if option is None:
                if name in _REFUSED_OPTIONS:
                    raise GuildError(f"invalid {where}: option {name} is not supported in a step ({spec!r}: a pipeline runs its steps unattended)")
                _warn_ignored(where, name)
                if name in _IGNORED_VALUE_OPTIONS and not eq:
                    i += 1
                i += 1
                continue
            takes_value, key = option
            if takes_value:
                if eq:
                    val = inline
                elif i + 1 < len(args):
                    i += 1
                    val = args[i]
                else:
                    raise GuildError(f"invalid {where}: option {name} requires a value ({spec!r})")
                if key in _REPEATED:
                    opts.setdefault(key, []).append(val)
                else:
                    opts[key] = val
            elif key:
                opts[key] = True
        elif "=" in arg and not arg.startswith("="):
            fname, _, val = arg.partition("=")
            assigns[fname] = val
        else:
            raise GuildError(f"invalid {where}: invalid argument {arg!r} in {spec!r} (expected NAME=VALUE)")
        i += 1
    return opspec, opts, assigns, batch_files


def _warn_ignored(where: str, name: str) -> None:
    import sys

    sys.stderr.write(f"WARNING: {where}: option {name} is ignored in a step\n")


def _mapping_flags(data: Any, where: str) -> dict[str, str]:
    if data is None:
        return {}
    if isinstance(data, list):
        try:
            return flagslib.parse_assigns([str(a) for a in data])
        except FlagError as e:
            raise GuildError(f"invalid {where}: {e}") from None
    if not isinstance(data, dict):
        raise GuildError(f"invalid {where}: flags must be a mapping or a list of NAME=VALUE")
    out = {}
    for name, val in data.items():
        if isinstance(val, dict):
            val = val.get("default")
        if val is None:
            continue
        out[str(name)] = val if isinstance(val, str) else flagslib.encode_value(val)
    return out


def _resolve_refs(val: str, flags: dict[str, Any], what: str, strict: bool = True) -> str | None:
    """``${name}`` replaced by the pipeline flag's value; a value that is
    only a reference to a flag with no value is None (the step uses its
    own default). Not `strict` (labels), other references are left for
    the step's own label template (``${default_label}``)."""
    refs = _REF_P.findall(val)
    if not refs:
        return val
    for ref in refs:
        if ref not in flags and strict:
            raise GuildError(f"invalid {what}: '${{{ref}}}' names no flag of the pipeline")
    whole = _REF_P.fullmatch(val)
    if whole and whole.group(1) in flags and flags[whole.group(1)] is None:
        return None

    def repl(m):
        if m.group(1) not in flags:
            return m.group(0)
        val = flags[m.group(1)]
        return "" if val is None else flagslib.encode_value(val)

    return _REF_P.sub(repl, val)


def _flag(data: dict, key: str, default: bool, where: str) -> bool:
    val = data.get(key, default)
    if val is None:
        return default
    if isinstance(val, str) and val.lower() in ("yes", "true", "no", "false"):
        return val.lower() in ("yes", "true")
    if not isinstance(val, bool):
        raise GuildError(f"invalid {where}: {key} must be yes or no (got {val!r})")
    return val


def _as_list(val: Any) -> list:
    if val is None:
        return []
    return list(val) if isinstance(val, (list, tuple)) else [val]


def _parse_checks(data: dict, where: str) -> list[Check]:
    items = []
    for key in ("expect", "checks"):
        items += _as_list(data.get(key))
    checks = []
    for item in items:
        if not isinstance(item, dict) or not ("output" in item or "file" in item):
            raise GuildError(f"invalid {where}: a check must be a mapping with 'output' or 'file' (got {item!r})")
        kind = "output" if "output" in item else "file"
        target = item[kind]
        contains = item.get("contains") if kind == "file" else None
        for pattern in (target if kind == "output" else None, contains):
            if pattern is None:
                continue
            try:
                re.compile(str(pattern))
            except re.error as e:
                raise GuildError(f"invalid {where}: invalid regular expression {str(pattern)!r}: {e}") from None
        compare_to = item.get("compare-to") if kind == "file" else None
        checks.append(Check(
            kind, str(target),
            None if contains is None else str(contains),
            None if compare_to is None else str(compare_to),
        ))
    return checks


def _kind(val: Any) -> str:
    return "a mapping" if isinstance(val, dict) else f"{type(val).__name__} {val!r}"


# ---------------------------------------------------------------------
# Planning: every step checked before anything runs
# ---------------------------------------------------------------------


@dataclass
class Planned:
    step: Step
    opdef: Any
    flags: dict[str, Any]
    user_flags: dict[str, Any]
    steps: list["Planned"] | None = None  # a step that is itself a pipeline
    batch: Any = None  # `BatchOptions` of a batch step


def plan(
    opdef,
    flag_vals: dict[str, Any],
    detect,
    *,
    label: str | None = None,
    tags: list[str] | None = None,
    steps_data: Any = None,
    warn: Callable[[str], None] | None = None,
    registry=None,
    _stack: tuple[str, ...] = (),
) -> list[Planned]:
    """Each step of the pipeline `opdef` with its operation and typed
    flags; steps that are pipelines are planned too. With `registry`,
    a batch step's optimizer and batch files are checked too. Raises
    `GuildError` for the first bad step."""
    from . import opdef as opdeflib

    stack = _stack + (opdef.name,)
    data = opdef.data.get("steps") if steps_data is None else steps_data
    steps = parse_steps(data, opdef.name, flag_vals, opdef.opref.model, label, tags, warn)
    project = opdef.project_dir
    out = []
    for i, step in enumerate(steps, 1):
        where = f"step {i} of {opdef.name} ({step.name})"
        try:
            step_opdef = opdeflib.resolve(step.opspec, project, detect)
        except GuildError as e:
            raise GuildError(f"{where}: {e}", hint=e.hint) from None
        if step_opdef.name in stack:
            raise GuildError(f"{where}: {step_opdef.name} runs itself (a pipeline cannot be its own step)")
        try:
            assigns = dict(step.flags)
            for dep_name in _dep_names(step_opdef):
                if dep_name not in step_opdef.flagdefs:
                    assigns.pop(dep_name, None)
            vals, user = flagslib.resolve_flag_values(step_opdef.flagdefs, assigns, step.force_flags)
        except FlagError as e:
            hint = None
            if str(e).startswith("unsupported flag"):
                hint = f"Try 'guild run {step_opdef.name} --help-op' for a list of flags."
            raise GuildError(f"{where}: {e}", hint=hint or e.hint) from None
        from . import scheduler

        batch = None
        options = step.batch_options()
        if options.wants_batch() or step.batch or scheduler.is_batch(vals, user, step_opdef.flagdefs):
            batch = options
            # Batch files are named from the project, as they are where
            # the pipeline was started.
            batch.batch_files = [str(Path(project, f)) for f in batch.batch_files]
            if registry is not None:
                try:
                    scheduler.plan(step_opdef, vals, user, batch, registry)
                except GuildError as e:
                    raise GuildError(f"{where}: {e}", hint=e.hint) from None
        nested = None
        if is_pipeline(step_opdef):
            if batch is not None:
                raise GuildError(f"{where}: pipeline {step_opdef.name} cannot run as a batch: give each flag one value")
            nested = plan(step_opdef, vals, detect, label=step.label, tags=step.tags, warn=warn, registry=registry, _stack=stack)
        out.append(Planned(step, step_opdef, vals, user, nested, batch))
    return out


def _dep_names(opdef) -> list[str]:
    requires = (opdef.data or {}).get("requires")
    if not requires:
        return []
    from . import deps as depslib

    try:
        deps = depslib.dependencies(requires, None)
    except GuildError:
        return []
    # A dependency answers to its name and to Guild AI's spellings
    # (`operation:prepare`), where the deps module knows them.
    return [n for d in deps for n in getattr(d, "names", [d.name])]


def step_values(planned: Planned) -> dict[str, str]:
    """Dependency values a step gives (``prepare=RUN``): its assignments
    that name a dependency, not a flag."""
    names = set(_dep_names(planned.opdef)) - set(planned.opdef.flagdefs)
    return {n: v for n, v in planned.step.flags.items() if n in names}


def describe(planned: list[Planned], indent: str = "  ") -> list[str]:
    """Preview lines: each step and its flags."""
    lines = []
    for p in planned:
        lines.append(f"{indent}{p.step.name}: {p.step.describe()}")
        if p.steps:
            lines += describe(p.steps, indent + "  ")
    return lines


# ---------------------------------------------------------------------
# Creating the pipeline run
# ---------------------------------------------------------------------


def pipeline_opdef(opdef):
    """The operation as its run records it: this module as the command,
    no source code (the steps copy their own)."""
    from .sourcecode import SourceSpec

    return replace(
        opdef,
        exec=f"${{python_exe}} -um {MODULE}",
        main=None,
        script=None,
        sourcecode=SourceSpec(enabled=False),
    )


def create(opdef, flag_vals, user_flags, *, label=None, tags=None, run_params=None, staged=False) -> Run:
    """Create the pipeline run, with its ``steps`` attribute (the raw
    list, as Guild AI records it)."""
    from . import runner

    return runner.create_run(
        pipeline_opdef(opdef), flag_vals, user_flags, None,
        label=label, tags=tags, run_params=run_params, staged=staged,
        attrs={"steps": opdef.data.get("steps")},
    )


def command(opdef) -> list[str]:
    """The pipeline's command, for ``--print-cmd``."""
    from . import runner

    op = runner.op_data(pipeline_opdef(opdef), None, script_in_run=False)
    return runner.command(op, {})


# ---------------------------------------------------------------------
# Running the steps (the pipeline run's process)
# ---------------------------------------------------------------------


def link_name(name: str) -> str:
    return re.sub(r"[ :/\\]", "-", name)


def link_step(pipeline: Run, name: str, step_run: Run) -> str:
    """Link the step run in the pipeline directory as NAME, NAME_2, ..."""
    base = link_name(name)
    link = base
    n = 2
    while os.path.lexists(pipeline.path / link):
        link = f"{base}_{n}"
        n += 1
    os.symlink(os.path.join("..", step_run.id), pipeline.path / link)
    return link


def step_runs(pipeline: Run) -> list[Run]:
    """The runs the pipeline directory links to (its steps so far)."""
    from . import home

    runs_dir = home.runs_dir().resolve()
    out = []
    try:
        names = sorted(os.listdir(pipeline.path))
    except OSError:
        return out
    for name in names:
        path = pipeline.path / name
        if not path.is_symlink():
            continue
        target = path.resolve()
        if target.parent == runs_dir and target.is_dir():
            out.append(Run(target.name, target))
    return out


def matching_runs(opdef, flags: dict[str, Any], runs: list[Run]) -> list[Run]:
    """Runs of the same operation with the same flags that did not fail
    (Guild AI's ``--needed``): completed, running or terminated."""
    ref = opdef.opref
    out = []
    for run in runs:
        r = run.opref
        if r is None or (r.type, r.location, r.model, r.op) != (ref.type, ref.location, ref.model, ref.op):
            continue
        if run.guild_path("proto").is_dir() or run.get("flags") != flags:
            continue
        if run.status in ("completed", "running", "terminated"):
            out.append(run)
    return out


def check_run(check: Check, run: Run, say) -> None:
    """Raise `CheckFailed` when the run does not pass `check`."""
    if check.kind == "output":
        say(f"Checking run {run.id} output for {check.target!r}")
        out = _read(run.guild_path("output"))
        if not re.search(check.target, out):
            raise CheckFailed(f"could not find pattern {check.target!r} in run {run.id} output")
        return
    say(f"Checking run {run.id} files {check.target!r}")
    matches = sorted(glob.glob(os.path.join(glob.escape(str(run.path)), check.target)))
    if not matches:
        raise CheckFailed(f"no files matching {check.target} in run {run.id}")
    for path in matches:
        rel = os.path.relpath(path, run.path)
        if check.compare_to:
            expected = run.path / _REF_P.sub(lambda m: os.environ.get(m.group(1), m.group(0)), check.compare_to)
            say(f"Comparing run {run.id} file {rel} to {expected}")
            diff = list(difflib.unified_diff(
                _read(expected).splitlines(), _read(Path(path)).splitlines(), str(expected), path, lineterm="",
            ))
            if diff:
                say("\n".join(diff))
                raise CheckFailed("unexpected file contents - see above for details")
        if check.contains is not None:
            say(f"Checking run {run.id} file {rel} for {check.contains!r}")
            if not re.search(check.contains, _read(Path(path))):
                raise CheckFailed(f"could not find pattern {check.contains!r} in run {run.id} file {rel}")


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        raise CheckFailed(f"cannot read {path}") from None


class StepFailed(Exception):
    def __init__(self, status: int):
        self.status = status


class Driver:
    """Runs a pipeline's steps, in order, each as its own run.

    `resolve_deps(planned, runs)` resolves a step's dependencies among
    `runs`; `start(run)` runs a step run and returns its exit status.
    """

    def __init__(self, pipeline: Run, planned: list[Planned], *, needed: bool, launcher, resolve_deps, start, registry=None, out=None, quiet=False):
        self.quiet = quiet
        # Optimizers and batch-file formats, for batch steps.
        self.registry = registry
        self.pipeline = pipeline
        self.planned = planned
        self.needed = needed
        self.launcher = launcher
        self.resolve_deps = resolve_deps
        self.start = start
        self.out = out or sys.stderr

    def say(self, line: str) -> None:
        if self.quiet and not line.startswith(("guild:", "ERROR:")):
            return
        self.out.write(line + "\n")
        self.out.flush()

    def run(self) -> int:
        """Run every step; returns 0, or the status of the step that
        stopped the pipeline (3 for a failed check)."""
        from . import runner, select

        for p in self.planned:
            step = p.step
            self.say(f"Running {step.name}: {step.describe()}")
            if (self.needed or step.needed) and p.batch is None:
                matches = matching_runs(p.opdef, p.flags, select.all_runs())
                if matches:
                    self._skip(p, matches)
                    continue
            candidates = step_runs(self.pipeline) if step.isolate_runs else select.all_runs()
            try:
                deps = self.resolve_deps(p, candidates)
            except GuildError as e:
                self.say(f"guild: {e}")
                return 1
            is_pipe = p.steps is not None
            opdef = pipeline_opdef(p.opdef) if is_pipe else p.opdef
            launcher = None if is_pipe or not any(v is not None for v in p.flags.values()) else self.launcher(p.opdef)
            run_params = {
                "opspec": step.opspec,
                "flags": [f"{n}={v}" for n, v in sorted(step.flags.items())],
                "label": step.label,
                "tags": list(step.tags),
                "needed": step.needed,
                "force_flags": step.force_flags,
            }
            if p.batch is not None:
                run, status = self._run_batch(p, deps, run_params)
            else:
                run = runner.create_run(
                    opdef, p.flags, p.user_flags, launcher,
                    label=step.label, tags=step.tags or None, run_params=run_params, deps=deps,
                    attrs={"steps": p.opdef.data.get("steps")} if is_pipe else None,
                )
                link_step(self.pipeline, step.name, run)
                status = self.start(run)
            if status is None:
                continue  # skipped: --needed found it done
            if status != 0:
                return status
            failed = self._check(p, run)
            if failed:
                return CHECK_FAILED
        return 0

    def _run_batch(self, p: Planned, deps, run_params) -> tuple[Run, int | None]:
        """Run a batch step through the batch scheduler, as ``guild run``
        runs a batch: the step's link names the batch run. With
        ``--needed``, a batch that ran the same trials already is the
        step's run (status None: nothing ran)."""
        from . import runner, scheduler

        step = p.step
        plan = scheduler.plan(p.opdef, p.flags, p.user_flags, p.batch, self.registry)
        if self.needed or step.needed:
            from . import select

            matches = scheduler.matching_batches(plan, select.all_runs())
            if matches:
                self._skip(p, matches)
                return matches[0], None
        run_params = {**run_params, "batch_label": step.batch_label, "batch_tags": list(step.batch_tags)}
        attrs = {}
        if step.batch_label:
            attrs["label"] = step.batch_label
        if step.batch_tags:
            attrs["tags"] = list(step.batch_tags)
        batch = scheduler.create(plan, self.launcher(p.opdef), run_params, attrs=attrs)
        link_step(self.pipeline, step.name, batch)

        def make_trial(flags, user_flags, staged):
            launcher = self.launcher(p.opdef) if flags else None
            return runner.create_run(
                p.opdef, flags, user_flags, launcher, staged=staged, deps=deps,
                label=step.label, tags=step.tags or None,
            )

        return batch, scheduler.drive(batch, plan, make_trial, self.start, out=self.out)

    def _skip(self, p: Planned, matches: list[Run]) -> None:
        from .util import format_timestamp

        self.say("Skipping because the following runs match this operation (--needed specified):")
        for run in matches:
            started = format_timestamp(run.get("started"))
            self.say(f"  [{run.short_id}]  {run.op_name}  {started}  {run.status}  {run.get('label') or ''}".rstrip())
        link_step(self.pipeline, p.step.name, matches[0])
        if p.step.checks:
            self.say(f"Skipping checks for {p.step.name}")

    def _check(self, p: Planned, run: Run) -> bool:
        checks = p.step.checks
        if not checks:
            return False
        passed = failed = 0
        for check in checks:
            try:
                check_run(check, run, self.say)
            except CheckFailed as e:
                self.say(f"ERROR: check failed: {e}")
                failed += 1
            else:
                passed += 1
        self.say(f"{passed} of {passed + failed} checks passed")
        if failed:
            self.say(f"ERROR: {failed} check(s) failed - see above for details")
            self.say("guild: stopping because a check failed")
        return bool(failed)


def main() -> int:
    """The pipeline run's process: ``python -um guild_core.steps`` in the
    run directory (``RUN_DIR`` names it)."""
    from . import plugins
    from . import opdef as opdeflib
    from . import runner
    from .registry import Registry

    run = Run.for_dir(os.environ.get("RUN_DIR") or os.getcwd())
    opref = run.opref
    if opref is None or opref.type != "guildfile":
        sys.stderr.write(f"guild: run {run.short_id} is not a pipeline of a guild.yml\n")
        return 1
    pm = plugins.get_plugin_manager()
    detect = plugins.flag_detector(pm)
    params = run.get("run_params") or {}

    def warn(msg):
        sys.stderr.write(f"WARNING: {msg}\n")

    try:
        pipe_opdef = opdeflib.resolve(opref.op_name, Path(opref.project_dir), detect)
        planned = plan(
            pipe_opdef, run.get("flags") or {}, detect,
            label=params.get("label"), tags=params.get("tags") or [],
            # guild run warned of unknown step keys already.
            steps_data=run.get("steps"), warn=None,
        )
    except GuildError as e:
        sys.stderr.write(f"guild: {e}\n")
        if e.hint:
            sys.stderr.write(e.hint + "\n")
        return 1
    if not planned:
        warn(f"no steps defined for run {run.id}")
        return 0

    def launcher(opdef):
        return plugins.flags_launcher(pm, opdef.flags_dest)

    def start(step_run):
        return runner.start(
            step_run,
            on_started=lambda r: plugins.call_lifecycle(pm, "guild_run_starting", run=r),
            on_stopped=lambda r: plugins.call_lifecycle(pm, "guild_run_stopped", run=r),
        )

    driver = Driver(
        run, planned, needed=bool(params.get("needed")), launcher=launcher,
        resolve_deps=lambda p, runs: _resolve_deps(pm, p, runs), start=start,
        registry=Registry(pm), quiet=bool(params.get("quiet")),
    )
    # SIGTERM between steps ends the pipeline as a step's end would.
    signal.signal(signal.SIGTERM, lambda n, _f: _stopped(n))
    try:
        status = driver.run()
    except KeyboardInterrupt:
        status = -int(signal.SIGINT)
    except GuildError as e:
        sys.stderr.write(f"guild: {e}\n")
        return 1
    if status < 0:
        _stopped(-status)
    return status


def _stopped(signum: int) -> None:
    """End this process by the signal that stopped a step, so the
    pipeline reads terminated as its step does."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _resolve_deps(pm, planned: Planned, runs: list[Run]):
    """A step's dependencies, resolved among `runs` (the pipeline's own
    step runs when the step isolates runs, as Guild AI does)."""
    requires = (planned.opdef.data or {}).get("requires")
    if not requires:
        return []
    from . import deps as depslib
    from .filterexpr import Extensions
    from .registry import Registry

    reg = Registry(pm)
    resolvers = {kind: entry.value for kind, entry in reg.resolvers().items()}
    values, ops = reg.filter_extensions()
    ext = Extensions(
        {n: e.value for n, e in values.items()},
        {n: e.value for n, e in ops.items()},
        {n: e.check for n, e in ops.items() if e.check},
    )
    deps = depslib.dependencies(requires, set(resolvers))
    ctx = depslib.Context(runs, planned.opdef.project_dir, resolvers, ext)
    return depslib.resolve_all(deps, step_values(planned), ctx, resolvers)


if __name__ == "__main__":
    sys.exit(main())
