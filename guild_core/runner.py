"""Creating runs and running their processes.

A run is created whole or not at all: its directory is assembled under a
hidden temporary name in ``runs/`` and renamed into place. Everything
needed to start it later (command template, flags, environment, output
scalar rules) is in its attributes, so a staged run, a background run
and a restart all start the same way: `start(run)`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import faults, home, procs, util
from .errors import GuildError, RunGone
from .flags import encode_value, format_label
from .opdef import OpDef
from .run import Run, new_run_id
from . import sourcecode as sourcecodelib

FLAG_ARGS = "__flag_args__"
STOP_TIMEOUT = 10.0


# ---------------------------------------------------------------------
# Commands and environment
# ---------------------------------------------------------------------


def op_data(opdef: OpDef, launcher: str | None, script_in_run: bool) -> dict[str, Any]:
    """The ``op`` attribute, in Guild AI's shape: the command template
    that `command` renders with flag values."""
    args = _cmd_args(opdef, launcher, script_in_run)
    cmd_flags = {}
    for name, fd in opdef.flagdefs.items():
        entry = {}
        if fd.arg_name:
            entry["arg-name"] = fd.arg_name
        if fd.arg_switch is not None:
            entry["arg-switch"] = fd.arg_switch
        if fd.arg_split is not None:
            entry["arg-split"] = fd.arg_split
        if fd.arg_skip:
            entry["arg-skip"] = True
        cmd_flags[name] = entry
    env = {name: val for name, val in opdef.env.items() if not is_secret_name(name)}
    env["FLAGS_DEST"] = opdef.flags_dest
    env["PROJECT_DIR"] = str(opdef.project_dir)
    secrets = sorted(name for name in opdef.env if is_secret_name(name))
    data = {
        "op-cmd": {"cmd-args": args, "cmd-env": env, "cmd-flags": cmd_flags},
        "flags-dest": opdef.flags_dest,
        "output-scalars": opdef.output_scalars,
        "sourcecode": {"dest": opdef.sourcecode.dest},
        "label-template": opdef.label,
        "deps": [],
        # Ours, beside Guild AI's "deps" (left empty, so Guild AI reads the
        # attribute as it expects): what a restart resolves again.
        "requires": opdef.data.get("requires") or [],
        "flag-null-labels": {},
        "flags-extra": {},
        "delete-on-success": bool(opdef.data.get("delete-on-success")),
        "python-requires": opdef.data.get("python-requires"),
    }
    # Ours, beside Guild AI's keys: extra import paths.
    python_path = opdef.data.get("python-path")
    paths = []
    if python_path:
        paths = [python_path] if isinstance(python_path, str) else list(python_path)
        paths = [os.path.join(str(opdef.project_dir), str(p)) for p in paths]
    main_dir = _main_path(opdef)
    if main_dir:
        paths.insert(0, main_dir)
    dest = opdef.sourcecode.dest
    if opdef.exec is None and dest not in (".", "", None):
        # The source snapshot's place in the run is where its modules
        # import from, as Guild AI puts it on the path.
        paths.insert(0, dest)
    if paths:
        data["python-path"] = paths
    if secrets:
        # Names only: the values stay in guild.yml (see `secret_env`).
        data["secret-env"] = secrets
    return data


_SECRET_WORDS = ("PASSWORD", "PASSWD")
_SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_KEY")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret:
    ``*PASSWORD*``, ``*_TOKEN``, ``*_SECRET``, ``*_KEY`` (any case)."""
    upper = name.upper()
    return (
        any(word in upper for word in _SECRET_WORDS)
        or upper.endswith(_SECRET_SUFFIXES)
        or upper in ("TOKEN", "SECRET", "KEY")
    )


def secret_env(run: Run, op: dict[str, Any]) -> dict[str, str]:
    """The secret environment of a run's operation, read from its
    guild.yml as the run starts: secrets are never written into a run.
    A variable already in guild's own environment is left to it."""
    names = [n for n in op.get("secret-env") or [] if n not in os.environ]
    opref = run.opref
    if not names or opref is None or opref.type != "guildfile":
        return {}
    from .opdef import load_guildfile

    try:
        ops = load_guildfile(Path(opref.location))
    except GuildError as e:
        sys.stderr.write(f"WARNING: cannot read secrets for run {run.short_id}: {e}\n")
        return {}
    env = (ops.get(opref.op_name) or {}).get("env") or {}
    out = {}
    for name in names:
        if name in env:
            # null reads as empty, as for the other env values
            out[name] = "" if env[name] is None else str(env[name])
        else:
            sys.stderr.write(
                f"WARNING: {name} is not set for run {run.short_id}: "
                f"{opref.location} no longer defines it\n"
            )
    return out


def _main_path(opdef: OpDef) -> str | None:
    """The directory part of ``main: DIR/module``, relative to the run
    directory, where the source snapshot puts it."""
    if opdef.exec is not None or not opdef.main:
        return None
    first = shlex.split(opdef.main)[0]
    return first.rsplit("/", 1)[0] if "/" in first else None


def _cmd_args(opdef: OpDef, launcher: str | None, script_in_run: bool) -> list[str]:
    if opdef.exec is not None:
        args = shlex.split(opdef.exec)
        return [FLAG_ARGS if a == "${flag_args}" else a for a in args]
    main_args = shlex.split(opdef.main) if opdef.main is not None else []
    if main_args and not launcher:
        # Guild AI's `main: src/pkg.main`: module pkg.main, imported from
        # the run's src/ (see `_main_path`).
        module = main_args[0].rsplit("/", 1)[-1]
        return ["${python_exe}", "-um", module, *main_args[1:], FLAG_ARGS]
    assert opdef.script is not None
    if script_in_run:
        script = opdef.script.relative_to(opdef.project_dir).as_posix()
    else:
        script = str(opdef.script)
    if launcher:
        # The launcher runs the module's file, so it can set its globals.
        return ["${python_exe}", "-um", launcher, script, *main_args[1:], FLAG_ARGS]
    return ["${python_exe}", "-u", script, FLAG_ARGS]


def command(op: dict[str, Any], flags: dict[str, Any]) -> list[str]:
    """Render the command template with flag values."""
    op_cmd = op.get("op-cmd") or {}
    cmd_flags = op_cmd.get("cmd-flags") or {}
    # Arguments a script's parser reads are encoded as Guild AI encodes
    # them; a flags launcher reads guild's own encoding.
    encode = _argparse_value if (op.get("flags-dest") or "args") == "args" else encode_value
    out: list[str] = []
    for arg in op_cmd.get("cmd-args") or []:
        if arg == FLAG_ARGS:
            out.extend(flag_args(flags, cmd_flags, encode))
        else:
            out.append(_subst(arg, flags))
    return out


GUILD_AI_OP_MAIN = "guild.op_main"


def guild_ai_op(op: dict[str, Any], launcher_for: Callable[[str], str | None]) -> dict[str, Any] | None:
    """The ``op`` of a run Guild AI 0.9 made, rewritten to start as guild
    starts its own, or None when `op` needs no change.

    Guild AI runs a Python ``main`` through its own module
    (``${python_exe} -um guild.op_main MODULE ARGS __flag_args__``),
    which is not installed beside guild. guild runs the module itself
    (``-um MODULE``), or through the launcher of the run's flags-dest.
    The result is a plain command template, so Guild AI can still
    restart the run."""
    op_cmd = op.get("op-cmd") or {}
    args = list(op_cmd.get("cmd-args") or [])
    if GUILD_AI_OP_MAIN not in args:
        return None
    i = args.index(GUILD_AI_OP_MAIN)
    if i < 1 or args[i - 1] != "-um" or i + 1 >= len(args):
        return None
    head, module, rest = args[: i - 1], args[i + 1], args[i + 2 :]
    if "--" in rest and rest.index("--") + 1 < len(rest) and rest[rest.index("--") + 1] == FLAG_ARGS:
        # op_main's separator between the module's own arguments and
        # the flags; the module itself would take it as an argument.
        rest.remove("--")
    dest = op.get("flags-dest") or "args"
    launcher = launcher_for(dest) if dest != "args" else None
    if launcher:
        new_args = [*head, "-um", launcher, module.replace(".", "/") + ".py", *rest]
    else:
        new_args = [*head, "-um", module, *rest]
    env = {k: v for k, v in (op_cmd.get("cmd-env") or {}).items() if k != "GUILD_PLUGINS"}
    return {**op, "op-cmd": {**op_cmd, "cmd-args": new_args, "cmd-env": env}}


def _argparse_value(val: Any) -> str:
    """A value as Guild AI passes it to an argparse script: a boolean as
    ``1`` or an empty string (argparse's ``type=bool`` takes any other
    string for true), a list as its items separated by spaces, a string
    as it is, other values as Python writes them."""
    if val is True:
        return "1"
    if val is False:
        return ""
    if isinstance(val, str):
        return val
    if isinstance(val, list):
        return " ".join(shlex.quote(encode_value(v)) for v in val)
    if isinstance(val, dict):
        import pprint

        return pprint.pformat(val)
    return repr(val) if isinstance(val, float) else str(val)


def flag_args(flags: dict[str, Any], cmd_flags: dict[str, Any], encode: Callable[[Any], str] = encode_value) -> list[str]:
    args: list[str] = []
    for name in sorted(flags):
        val = flags[name]
        conf = cmd_flags.get(name) or {}
        if val is None or conf.get("arg-skip"):
            continue
        opt = "--" + (conf.get("arg-name") or name)
        if conf.get("arg-switch") is not None:
            if val == conf["arg-switch"]:
                args.append(opt)
            continue
        split = conf.get("arg-split")
        if split is not None and split is not False:
            parts = _split_value(val, split)
            if encode is _argparse_value:
                args.extend([opt, *parts])
            else:
                # A launcher takes one value: the parts as a list, as
                # Guild AI gives a split value to a script's globals.
                from .flags import decode_auto

                args.extend([opt, encode_value([decode_auto(p) for p in parts])])
            continue
        args.extend([opt, encode(val)])
    return args


def _split_value(val: Any, split: Any) -> list[str]:
    """Guild AI's ``arg-split``: one value as several arguments, split
    on whitespace (``yes``, shell quoting kept) or on a separator; a
    list value is its items."""
    if isinstance(val, list):
        return [encode_value(v) for v in val]
    encoded = encode_value(val)
    if split is True or split == "shlex":
        return shlex.split(encoded)
    return [part for part in encoded.split(str(split)) if part]


_REF_P = re.compile(r"\$\{([^}]+)\}")


def _subst(arg: str, flags: dict[str, Any]) -> str:
    def repl(m):
        name = m.group(1)
        if name == "python_exe":
            return sys.executable
        if name == "flag_args":
            return " ".join(shlex.quote(a) for a in flag_args(flags, {}))
        if name in flags:
            return encode_value(flags[name])
        return m.group(0)

    return _REF_P.sub(repl, arg)


def flag_env(flags: dict[str, Any]) -> dict[str, str]:
    return {
        "FLAG_" + re.sub(r"[^A-Za-z0-9_]", "_", name).upper(): encode_value(val)
        for name, val in flags.items()
        if val is not None
    }


def run_env(run: Run, op: dict[str, Any], flags: dict[str, Any]) -> dict[str, str]:
    """Environment recorded in the ``env`` attribute (what guild adds)."""
    env = dict((op.get("op-cmd") or {}).get("cmd-env") or {})
    env.update(flag_env(flags))
    env.update(
        {
            "RUN_DIR": str(run.path),
            "RUN_ID": run.id,
            "GUILD_HOME": str(home.guild_home()),
            "GUILD_SOURCECODE": (op.get("sourcecode") or {}).get("dest", "."),
        }
    )
    pythonpath = ["."] + list(op.get("python-path") or [])
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return env


def _run_label(label: str | None, template: str | None, flags: dict[str, Any]) -> str:
    """``-l LABEL`` is itself a template (``lr=${lr}``); without it, the
    operation's label template or the flag label."""
    if label is not None:
        return format_label(label, flags) if label else ""
    return format_label(template, flags)


# ---------------------------------------------------------------------
# Creating runs
# ---------------------------------------------------------------------


@contextlib.contextmanager
def whole_run_dir(final_dir: Path | None = None):
    """``(run_id, tmp, final)``: a new run directory is assembled at `tmp`,
    a hidden name under ``runs/`` (beside `final_dir` when given: ``guild
    run --run-dir``), and renamed to `final` when the block succeeds; on
    any failure it is removed, so no half run is ever listed."""
    run_id = new_run_id()
    if final_dir is not None:
        final = Path(final_dir).absolute()
        if final.exists() and (not final.is_dir() or any(final.iterdir())):
            raise GuildError(f"cannot use {final_dir} as the run directory: it exists and is not empty")
        if final.is_dir():
            final.rmdir()
        runs_root = final.parent
    else:
        runs_root = home.runs_dir()
        final = runs_root / run_id
    runs_root.mkdir(parents=True, exist_ok=True)
    tmp = runs_root / home.hidden_name(home.TMP_PREFIX, run_id)
    try:
        yield run_id, tmp, final
        faults.point("runner.create.assembled")
        os.rename(tmp, final)
        faults.point("runner.create.renamed")
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def create_run(
    opdef: OpDef,
    flags: dict[str, Any],
    user_flags: dict[str, Any],
    launcher: str | None,
    *,
    label: str | None = None,
    tags: list[str] | None = None,
    run_params: dict[str, Any] | None = None,
    staged: bool = False,
    warn: Callable[[str], None] = sourcecodelib.warn_stderr,
    deps: list | None = None,
    attrs: dict[str, Any] | None = None,
    options: "RunOptions | None" = None,
    run_dir: str | None = None,
) -> Run:
    """Create a run directory, whole, under ``runs/`` (or at `run_dir`);
    `deps` (resolved dependencies) are installed in it and recorded;
    `attrs` are more attributes to write (a pipeline's ``steps``);
    `options` are ``guild run``'s (see `RunOptions`). The operation's
    own ``tags:`` come first, then `tags`."""
    tags = _op_tags(opdef) + [t for t in tags or [] if t not in _op_tags(opdef)]
    with whole_run_dir(Path(run_dir) if run_dir else None) as (run_id, tmp, final):
        tmp_run = assemble(
            tmp, Run(run_id, final), opdef, flags, user_flags, launcher,
            label=label, tags=tags, run_params=run_params, warn=warn,
        )
        if deps:
            from . import deps as depslib

            tmp_run.write_attr("deps", depslib.install(deps, tmp), atomic=False)
            # Installing records the dependencies' flags: read them anew.
            for name in ("flags", "op", "label"):
                tmp_run._cache.pop("attr:" + name, None)
        for name, val in (attrs or {}).items():
            tmp_run.write_attr(name, val, atomic=False)
        if options is not None:
            apply_options(tmp_run, options, atomic=False)
        if staged:
            tmp_run.write_attr("started", util.now_micros(), atomic=False)
            _write_staged_env(tmp_run, tmp_run.get("env"))
            (tmp_run.guild_path("STAGED")).touch()
        else:
            # Until its process starts, a run is pending, not "error";
            # if this process dies first, it reads "error".
            tmp_run.mark_pending(procs.current())
    run = Run(run_id, final)
    # What was just written need not be read back (and YAML-decoded)
    # to start the run.
    run._cache.update(tmp_run._cache)
    return run


@dataclass
class RunOptions:
    """`guild run` options recorded with a run: a comment, the GPUs it
    sees, a time limit, debugging. `apply_options` writes them; `start`
    reads them from the run (so a staged run keeps them)."""

    comment: str | None = None
    # CUDA_VISIBLE_DEVICES: "0,1", or "" for no GPU (--no-gpus).
    gpus: str | None = None
    stop_after: float | None = None  # minutes
    keep_run: bool = False
    debug_sourcecode: str | None = None
    break_at: str | None = None
    break_on_error: bool = False


def apply_options(run: Run, options: RunOptions, atomic: bool = True) -> None:
    """Record `options` in the run's attributes: ``comments``, ``env``
    and ``run_params`` (`stop_after`, `keep_run`, `break`)."""
    if options.comment:
        comments = list(run.get("comments") or [])
        comments.append({
            "body": options.comment, "user": util.username(),
            "host": util.hostname(), "time": util.now_micros(),
        })
        run.write_attr("comments", comments, atomic=atomic)
    env = dict(run.get("env") or {})
    if options.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = options.gpus
    if options.debug_sourcecode:
        # Modules import from PATH first, the project's working copy.
        path = str(Path(options.debug_sourcecode).absolute())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
    if env != (run.get("env") or {}):
        run.write_attr("env", env, atomic=atomic)
    params = dict(run.get("run_params") or {})
    changed = False
    for name, val in (
        ("stop_after", options.stop_after), ("keep_run", options.keep_run or None),
        ("break", options.break_at), ("break_on_error", options.break_on_error or None),
    ):
        if val is not None:
            params[name] = val
            changed = True
    if changed:
        run.write_attr("run_params", params, atomic=atomic)


def copy_for_proto(proto: Run, run_dir: str | None = None) -> Run:
    """A new run made from `proto` (``guild run --proto RUN``): its
    operation, flags and source code (the files its manifest lists),
    none of its results; whole or not at all. Dependencies are resolved
    again by the restart that follows."""
    import shutil

    manifest = proto.guild_path("manifest")
    keep = set()
    if manifest.exists():
        for line in manifest.read_text(errors="replace").splitlines():
            try:
                parts = shlex.split(line)
            except ValueError:
                continue
            if len(parts) >= 2 and parts[0] == "s":
                keep.add(parts[1])
    with whole_run_dir(Path(run_dir) if run_dir else None) as (run_id, tmp, final):
        tmp_run = Run(run_id, tmp)
        tmp_run.guild_path("attrs").mkdir(parents=True)
        for rel in sorted(keep):
            src = proto.path / rel
            if src.is_file() and not src.is_symlink():
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        if manifest.exists():
            shutil.copy2(manifest, tmp_run.guild_path("manifest"))
        for name in ("op", "flags", "user_flags", "cmd", "label", "tags", "sourcecode_digest", "vcs_commit", "deps", "compare"):
            val = proto.get(name)
            if val is not None:
                tmp_run.write_attr(name, val, atomic=False)
        tmp_run.write_attr("id", run_id, atomic=False)
        tmp_run.write_attr("initialized", util.now_micros(), atomic=False)
        op = proto.get("op") or {}
        tmp_run.write_attr("env", run_env(Run(run_id, final), op, proto.get("flags") or {}), atomic=False)
        tmp_run.write_attr("host", util.hostname(), atomic=False)
        tmp_run.write_attr("user", util.username(), atomic=False)
        tmp_run.write_attr("platform", _platform(), atomic=False)
        tmp_run.write_attr("random_seed", int.from_bytes(os.urandom(4), "big"), atomic=False)
        tmp_run.write_attr("run_params", {**(proto.get("run_params") or {}), "proto": proto.id}, atomic=False)
        if proto.opref is not None:
            tmp_run.write_opref(proto.opref)
        tmp_run.mark_pending(procs.current())
    return Run(run_id, final)


def preview_env(opdef: OpDef, launcher: str | None, flags: dict[str, Any], options: RunOptions | None = None) -> dict[str, str]:
    """The environment guild adds for a run of `opdef` with `flags`
    (``--print-env``): as `run_env` records it, for a run not yet made."""
    op = op_data(opdef, launcher, script_in_run=True)
    placeholder = Run("RUN_ID", home.runs_dir() / "RUN_ID")
    env = run_env(placeholder, op, flags)
    env["RUN_DIR"] = "(the run directory)"
    env["RUN_ID"] = "(the run id)"
    env["PROJECT_DIR"] = str(opdef.project_dir)
    if options is not None and options.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = options.gpus
    return env


def _op_tags(opdef: OpDef) -> list[str]:
    tags = (opdef.data or {}).get("tags") or []
    return [tags] if isinstance(tags, str) else [str(t) for t in tags]


def assemble(
    path: Path,
    run: Run,
    opdef: OpDef,
    flags: dict[str, Any],
    user_flags: dict[str, Any],
    launcher: str | None,
    *,
    label: str | None = None,
    tags: list[str] | None = None,
    run_params: dict[str, Any] | None = None,
    warn: Callable[[str], None] = sourcecodelib.warn_stderr,
) -> Run:
    """Write a run's files into `path`, for `run` (which names the final
    directory the attributes refer to). Returns the run at `path`."""
    tmp_run = Run(run.id, path)
    tmp_run.guild_path("attrs").mkdir(parents=True)
    files = sourcecodelib.files_for(opdef, warn)
    script_in_run = bool(
        opdef.script
        and opdef.sourcecode.dest in (".", "")
        and _rel(opdef.script, opdef.project_dir) in files
    )
    op = op_data(opdef, launcher, script_in_run)
    digest = sourcecodelib.copy_files(opdef.project_dir, opdef.sourcecode, files, path)

    def write(name, val):
        tmp_run.write_attr(name, val, atomic=False)

    write("id", run.id)
    write("initialized", util.now_micros())
    write("op", op)
    write("flags", flags)
    write("user_flags", user_flags)
    write("cmd", command(op, flags))
    write("env", run_env(run, op, flags))
    run_label = _run_label(label, opdef.label, flags)
    if run_label:
        write("label", run_label)
    if tags:
        write("tags", list(tags))
    if opdef.sourcecode.digest:
        write("sourcecode_digest", digest)
    commit = sourcecodelib.vcs_commit(opdef.project_dir)
    if commit:
        write("vcs_commit", commit)
    write("random_seed", int.from_bytes(os.urandom(4), "big"))
    write("host", util.hostname())
    write("user", util.username())
    write("platform", _platform())
    write("run_params", run_params or {})
    write("deps", {})
    compare = opdef.data.get("compare")
    if compare:
        # The default compare columns of the operation's runs, as Guild AI
        # records them.
        write("compare", [compare] if isinstance(compare, str) else [str(c) for c in compare])
    if opdef.data.get("pip-freeze"):
        write("pip_freeze", _pip_freeze(warn))
    tmp_run.write_opref(opdef.opref)
    return tmp_run


def _pip_freeze(warn: Callable[[str], None]) -> list[str]:
    """``pip freeze`` of guild's Python, for ``pip-freeze: yes``."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        warn(f"cannot record pip freeze: {e}")
        return []
    if proc.returncode != 0:
        warn(f"cannot record pip freeze: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
        return []
    return [line for line in proc.stdout.splitlines() if line.strip()]


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return ""


def _write_staged_env(run: Run, env: dict[str, str]) -> None:
    lines = [f"export {name}={shlex.quote(val)}" for name, val in sorted(env.items())]
    util.atomic_write(run.guild_path("ENV"), "\n".join(lines) + "\n")


def _platform() -> dict[str, Any]:
    # platform.architecture() and uname().processor start subprocesses;
    # a run's start-up cannot afford them.
    uname = os.uname() if hasattr(os, "uname") else None
    bits = f"{struct.calcsize('P') * 8}bit"
    return {
        "architecture": f"{bits} ELF" if sys.platform.startswith("linux") else bits,
        "cpus": os.cpu_count(),
        "processor": "",
        "python_version": sys.version,
        "uname": " ".join(uname) if uname else platform.platform(),
    }


def update_flags(run: Run, flags: dict[str, Any], user_flags: dict[str, Any], label: str | None) -> None:
    """New flag values for a restart: rewrite flags, command and env."""
    op = run.get("op") or {}
    run.write_attr("flags", flags)
    run.write_attr("user_flags", user_flags)
    run.write_attr("cmd", command(op, flags))
    run.write_attr("env", run_env(run, op, flags))
    run.write_attr("label", _run_label(label, op.get("label-template"), flags))


# ---------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------


class Interrupted:
    """Signals guild received while supervising a run."""

    def __init__(self):
        self.signum: int | None = None
        self.since: float | None = None
        self.proc: subprocess.Popen | None = None

    def receive(self, signum: int) -> None:
        self.signum = signum
        if signum != signal.SIGINT:
            # SIGTERM/SIGHUP came to guild alone: pass them on at once.
            self._send(signum)
        elif self.since is None:
            self.since = time.monotonic()
            threading.Thread(target=self._escalate, daemon=True).start()

    def _send(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.send_signal(signum)
            except OSError:
                pass

    def _escalate(self) -> None:
        # A terminal's Ctrl-C reaches the script too; a SIGINT sent to
        # guild alone does not, so pass it on if the script is still up.
        # Then give it time to stop, and insist.
        for delay, signum in ((0.5, signal.SIGINT), (STOP_TIMEOUT, signal.SIGTERM), (STOP_TIMEOUT, signal.SIGKILL)):
            time.sleep(delay)
            if self.proc is not None and self.proc.poll() is not None:
                return
            self._send(signum)


# Room kept on the run's file system to record its end: a script that
# fills the disk must still leave its run with an exit status.
_RESERVE = ".reserve"
_RESERVE_BYTES = 64 * 1024


class _Recorder:
    """Records output lines (``.guild/output``, its index, scalars). A
    failed write (a full disk) stops the recording, with one line to
    say so, never the pumps: they keep draining the script's pipes, or
    it would block on a full pipe forever."""

    def __init__(self, run: Run, scalars, writer):
        self.run = run
        self.scalars = scalars
        self.writer = writer
        self.lock = threading.Lock()
        self.failed = False
        self.output = self.index = None
        try:
            self.output = open(run.guild_path("output"), "ab")
            self.index = open(run.guild_path("output.index"), "ab")
        except OSError as e:
            self._fail(e)

    def line(self, line: bytes, stream_id: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        with self.lock:
            if self.failed:
                return
            try:
                faults.point("runner.output.write")
                self.output.write(line)
                self.index.write(now_ms.to_bytes(8, "big") + bytes([stream_id]))
                self.output.flush()
                self.index.flush()
                for key, val, step in self.scalars.line(line.decode("utf-8", "replace")):
                    self.writer.add_scalar(key, val, step)
            except OSError as e:
                self._fail(e)

    def _fail(self, e: OSError) -> None:
        self.failed = True
        sys.stderr.write(
            f"guild: cannot record the output of run {self.run.short_id}: "
            f"{e.strerror or e}; the run goes on unrecorded\n"
        )

    def close(self) -> None:
        for f in (self.output, self.index, self.writer):
            if f is None:
                continue
            try:
                f.close()
            except OSError:
                pass  # a full disk: what was flushed is kept


def start(
    run: Run,
    *,
    echo: bool = True,
    on_started: Callable[[Run], None] | None = None,
    on_stopped: Callable[[Run], None] | None = None,
    tee: Callable[[bytes, int], None] | None = None,
    interrupted: "Interrupted | None" = None,
    base_env: dict[str, str | None] | None = None,
    new_session: bool = False,
) -> int:
    """Run the run's process to its end and record everything.

    Output is shown live (unless `echo` is false) and recorded live;
    with `tee`, each output line goes to ``tee(line, stream_id)``
    instead of the terminal (parallel trials, prefixed). A caller that
    supervises several runs passes its own `interrupted` and forwards
    signals to it: handlers are installed only in the main thread.
    `base_env` corrects this process's environment before the run's own
    is applied (a value of None removes the name): a Dask worker's
    nanny sets OMP_NUM_THREADS and friends, which a trial must not
    inherit. With `new_session` the script leads its own process group,
    so a supervisor that dies leaves a group that can be stopped whole.
    Returns the exit status recorded (negative for a signal).
    """
    from . import scalars as scalarslib
    from . import tfevents

    cmd = _here(run.get("cmd") or [])
    if not cmd:
        raise GuildError(f"run {run.id} has no command")
    op = run.get("op") or {}
    params = run.get("run_params") or {}
    debugging = bool(params.get("break") or params.get("break_on_error"))
    if debugging:
        cmd = debug_command(cmd, params.get("break"), bool(params.get("break_on_error")))
        # A flags launcher lets the script's exception reach pdb.
        env_debug = {"GUILD_DEBUG_SCRIPT": "1"}
    else:
        env_debug = {}
    env = dict(os.environ)
    for name, val in (base_env or {}).items():
        if val is None:
            env.pop(name, None)
        else:
            env[name] = val
    env.update({k: str(v) for k, v in (run.get("env") or {}).items()})
    env.update(secret_env(run, op))
    env.update(env_debug)
    # Where a pruner's notice appears before it stops the run (a script
    # may save a checkpoint when it does); not recorded in `env`: it
    # names this run's own directory wherever it runs.
    env["GUILD_PRUNE_FILE"] = str(run.guild_path("PRUNED"))
    me = procs.current()
    run.mark_pending(me)
    run.clear_markers("STAGED", "ENV")
    run.record_start()
    _reserve(run)
    try:
        scalars = scalarslib.OutputScalars(op.get("output-scalars"))
    except GuildError:
        scalars = scalarslib.OutputScalars()
    recorder = _Recorder(run, scalars, tfevents.EventWriter(run.guild_path()))
    # Handlers go in before the process starts: a signal at any moment
    # after this is recorded, never a traceback that leaves no exit status.
    # Signals to this process are this run's only when its handlers are
    # installed here, in the main thread, for it alone.
    own_signals = interrupted is None and threading.current_thread() is threading.main_thread()
    if interrupted is None:
        interrupted = Interrupted()
        restore = _handle_signals(interrupted)
    else:
        restore = lambda: None  # noqa: E731 - the caller forwards signals
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=run.path,
            env=env,
            start_new_session=new_session and not debugging,
            stdin=None if debugging else subprocess.DEVNULL,
            stdout=None if debugging else subprocess.PIPE,
            stderr=None if debugging else subprocess.PIPE,
        )
    except OSError as e:
        restore()
        recorder.close()
        run.clear_markers("PENDING")
        _record_end(run, 127)
        raise GuildError(f"cannot start {cmd[0]}: {e.strerror}") from None
    interrupted.proc = proc
    if interrupted.signum is not None and interrupted.signum != signal.SIGINT:
        proc.send_signal(interrupted.signum)
    # The script is the run's process; this guild process records its
    # end, so the run reads running until that end is recorded.
    child = procs.owner_of(proc.pid) or procs.Owner(proc.pid, "")
    try:
        run.record_processes(child, me, supervisor_signals=own_signals)
        run.clear_markers("PENDING")
    except OSError as e:
        sys.stderr.write(f"guild: cannot record run {run.short_id}'s process: {e}\n")
    faults.point("runner.start.locked")
    if on_started:
        on_started(run)

    def pump(stream, stream_id: int, term):
        for line in iter(stream.readline, b""):
            recorder.line(line, stream_id)
            if tee is not None:
                tee(line, stream_id)
            elif term is not None:
                try:
                    term.write(line)
                    term.flush()
                except (OSError, ValueError):
                    pass
        stream.close()

    term_out = sys.stdout.buffer if echo else None
    term_err = sys.stderr.buffer if echo else None
    threads = [
        threading.Thread(target=pump, args=(stream, i, term), daemon=True)
        for i, (stream, term) in enumerate(((proc.stdout, term_out), (proc.stderr, term_err)))
        if stream is not None
    ]
    for t in threads:
        t.start()
    timer = None
    if params.get("stop_after"):
        # --stop-after N: the run ends terminated, as guild stop ends it.
        timer = threading.Timer(float(params["stop_after"]) * 60, interrupted.receive, args=(signal.SIGTERM,))
        timer.daemon = True
        timer.start()
    try:
        returncode = _wait(proc, interrupted)
        for t in threads:
            t.join()
    finally:
        if timer is not None:
            timer.cancel()
        restore()
        recorder.close()
    exit_status = returncode
    if interrupted.signum is not None and returncode >= 0:
        # The script caught the signal and exited on its own: the user
        # still stopped it.
        exit_status = -interrupted.signum
    faults.point("runner.end.before-record")
    _record_end(run, exit_status)
    if on_stopped:
        on_stopped(run)
    if exit_status == 0 and op.get("delete-on-success") and not params.get("keep_run"):
        _delete_interim(run)
    return exit_status


def _here(cmd: list) -> list:
    """`cmd` as this machine can run it: a run staged on another machine
    (`guild run -r`) names that machine's Python, which need not exist
    here; this guild's Python runs it instead."""
    if cmd and isinstance(cmd[0], str) and os.path.isabs(cmd[0]) and not os.path.exists(cmd[0]):
        if os.path.basename(cmd[0]).startswith("python"):
            return [sys.executable, *cmd[1:]]
    return cmd


def debug_command(cmd: list[str], break_at: str | None, on_error: bool) -> list[str]:
    """A Python run's command under pdb: stopped at `break_at` (``LINE``
    or ``FILE:LINE``; a bare line is in the main script), and with
    `on_error` the debugger opens where the script fails. Raises
    `GuildError` for a command that does not run Python."""
    exe = Path(cmd[0]).name if cmd else ""
    if not exe.startswith("python"):
        raise GuildError("--break and --break-on-error need an operation that runs Python")
    args = [a for a in cmd[1:]]
    opts = [a for a in args if a == "-u"]
    rest = [a for a in args if a != "-u"]
    if rest[:1] == ["-um"]:
        rest = ["-m"] + rest[1:]
    pdb = [cmd[0], *opts, "-m", "pdb"]
    if break_at:
        pdb += ["-c", f"break {break_at}"]
    pdb += ["-c", "continue"]
    return pdb + rest


def _delete_interim(run: Run) -> None:
    """``delete-on-success: yes``: a run that succeeded goes to the
    trash (restorable), as Guild AI deletes interim runs."""
    from . import store

    sys.stderr.write(f"Deleting interim run {run.id} ('{run.op_name}' is configured for deletion on success)\n")
    try:
        store.delete([run])
    except GuildError as e:
        sys.stderr.write(f"guild: cannot delete run {run.short_id}: {e}\n")


def _reserve(run: Run) -> None:
    try:
        with open(run.guild_path(_RESERVE), "wb") as f:
            f.write(bytes(_RESERVE_BYTES))
    except OSError:
        # Already full: the end may still fit where this did not.
        run.clear_markers(_RESERVE)


def _record_end(run: Run, exit_status: int) -> None:
    """Record the end, with the reserve freed first to make room."""
    run.clear_markers(_RESERVE)
    try:
        run.record_end(exit_status)
    except RunGone:
        sys.stderr.write(
            f"guild: run {run.short_id} was deleted or moved while it ran; "
            "its end is not recorded\n"
        )
    except OSError as e:
        sys.stderr.write(f"guild: cannot record the end of run {run.short_id}: {e.strerror or e}\n")


def _wait(proc: subprocess.Popen, interrupted: Interrupted) -> int:
    # A blocking wait: signal handlers run during it (PEP 475 retries the
    # wait), and polling with a timeout would add up to tens of ms.
    return proc.wait()


def _handle_signals(interrupted: Interrupted):
    """Record SIGINT, SIGTERM and SIGHUP instead of dying on them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, lambda n, _f: interrupted.receive(n))
        except (OSError, ValueError):
            pass

    def restore():
        for signum, prev in previous.items():
            signal.signal(signum, prev)

    return restore


def start_background(run: Run, pidfile: str | None = None) -> int:
    """Start the run in a detached process; return its pid. Returns
    once that process has taken the run over: until then this process
    is its starter, and a run whose starter is gone reads as error."""
    ready_r, ready_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guild_core.background", str(run.path), str(ready_w)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=run.path,
            pass_fds=(ready_w,),
        )
    finally:
        os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        ready.read()  # EOF: claimed, or the process died
    if pidfile:
        util.atomic_write(Path(pidfile).absolute(), f"{proc.pid}\n")
    return proc.pid


def stop(run: Run, timeout: float = STOP_TIMEOUT, wait: bool = True) -> bool:
    """Stop a running run. Returns True if it was running.

    SIGTERM goes to the guild process supervising the run, which passes
    it on and records the run as terminated (or, with no supervisor
    left, to the run's process). Unless `wait` is false, the run's
    process gets SIGKILL if it is still up after `timeout`. Only
    processes that provably are the run's are signalled (`procs`); when
    no guild process is left to record the end, it is recorded here, so
    the run never reads as running forever."""
    proc = run.run_process()
    supervisor = run.supervisor()
    by_group = supervisor is not None and proc is not None and run.stopped_by_group()
    target = proc if by_group else (supervisor or proc)
    if target is None or not (procs.send_group(target, signal.SIGTERM) if by_group else procs.send(target, signal.SIGTERM)):
        return False
    if not wait:
        return True
    deadline = time.time() + timeout
    while procs.alive(proc) and time.time() < deadline:
        time.sleep(0.05)
    if procs.alive(proc):
        (procs.send_group if by_group else procs.send)(proc, signal.SIGKILL)
    # The supervisor writes the exit status; wait for it briefly, then
    # write it ourselves if it is gone.
    deadline = time.time() + 2.0 + (timeout if supervisor else 0)
    while time.time() < deadline:
        fresh = Run(run.id, run.path)
        if fresh.get("exit_status") is not None:
            return True
        if not procs.alive(supervisor) and not procs.alive(proc):
            break
        time.sleep(0.05)
    fresh = Run(run.id, run.path)
    if fresh.get("exit_status") is None and not fresh.supervisor():
        try:
            fresh.record_end(-int(signal.SIGTERM))
        except RunGone:
            pass
    return True
