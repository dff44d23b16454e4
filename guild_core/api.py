"""guild from Python: runs as plain values, for notebooks and scripts.

    from guild_core import api

    api.runs(operation="train", status="completed")   # [RunInfo, ...]
    api.runs_df(filter="loss < 0.5")                   # a pandas DataFrame
    api.compare()                                      # guild compare's table
    api.run("train.py", lr=0.01)                       # RunInfo of the new run

Named ``api`` after Guild AI's ``guild api`` commands, the command line's
own programmatic interface: ``guild api runs`` and ``guild api compare``
print JSON built here (`runs_data`, `compare_data`, `ops_data`), so the
Python functions and the commands cannot drift apart. (Guild AI's
notebook module is ``guild.ipy``; this one serves scripts as well.)

Runs are selected by the command line's own code: the keyword arguments
become a `select.RunFilter` and RUN specs, applied by
`cli.runselect.selected_runs` as for ``guild runs -F ... -Fo ... -S...``.
A bad filter raises `GuildError`, whose message is the line ``guild``
would print.

Importing this module is cheap: pandas is imported by `runs_df` and
`compare` only (``pip install 'guild[pandas]'``), click only when runs
are selected.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .errors import GuildError

if TYPE_CHECKING:
    import pandas

    from .run import Run

__all__ = ["RunInfo", "runs", "runs_df", "compare", "run", "run_info"]


@dataclass(frozen=True)
class RunInfo:
    """One run as plain values. `scalars` is each scalar's last value
    (at its highest step, as compare shows it), `scalar_steps` that
    step; `attrs` every attribute file of the run."""

    id: str
    short_id: str
    operation: str
    status: str
    started: datetime.datetime | None
    stopped: datetime.datetime | None
    label: str | None
    tags: tuple[str, ...]
    flags: dict[str, Any]
    scalars: dict[str, float]
    scalar_steps: dict[str, int]
    path: Path
    attrs: dict[str, Any] = field(repr=False)


def run_info(run: "Run") -> RunInfo:
    from .runvalues import RunValues

    summaries = RunValues(run).scalars()
    flags = run.get("flags")
    return RunInfo(
        id=run.id,
        short_id=run.short_id,
        operation=run.op_name,
        status=run.status,
        started=_datetime(run.get("started")),
        stopped=_datetime(run.get("stopped")),
        label=run.get("label"),
        tags=tuple(run.get("tags") or ()),
        flags=dict(flags) if isinstance(flags, dict) else {},
        scalars={tag: s.last[0] for tag, s in summaries.items() if s.last},
        scalar_steps={tag: s.last[1] for tag, s in summaries.items() if s.last},
        path=run.path,
        attrs={name: run.get(name) for name in run.attr_names()},
    )


def _datetime(micros: Any) -> datetime.datetime | None:
    if not isinstance(micros, int) or isinstance(micros, bool):
        return None
    return datetime.datetime.fromtimestamp(micros / 1e6)


# -- selection -------------------------------------------------------


def _strs(val: str | Iterable[str] | None) -> tuple[str, ...]:
    if val is None:
        return ()
    if isinstance(val, str):
        return (val,)
    return tuple(str(v) for v in val)


def _run_filter(filter, operation, status, label, tag, marked):
    from . import select

    statuses = _strs(status)
    for name in statuses:
        if name not in select.STATUSES:
            raise GuildError(
                f"unknown status '{name}'", f"Use one of: {', '.join(select.STATUSES)}."
            )
    return select.RunFilter(
        expr=filter,
        operations=_strs(operation),
        labels=_strs(label),
        tags=_strs(tag),
        marked=marked is True,
        unmarked=marked is False,
        status_in=frozenset(statuses),
    )


def selected(
    filter: str | None = None,
    operation: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    label: str | Iterable[str] | None = None,
    tag: str | Iterable[str] | None = None,
    marked: bool | None = None,
    deleted: bool = False,
    include_batch: bool = False,
    runs: str | Iterable[str] | None = None,
    rf=None,
) -> list["Run"]:
    """The `Run`s the arguments select, newest first: the filter
    options (or `rf`, a ready `RunFilter`), then RUN specs (`runs`: ids,
    prefixes, indexes, ranges, as ``guild runs`` numbers them). Batch
    runs are left out unless `include_batch` or `deleted`, as Guild
    AI's ``guild api runs`` does."""
    from .cli.runselect import selected_runs

    if rf is None:
        rf = _run_filter(filter, operation, status, label, tag, marked)
    found = selected_runs(rf, _strs(runs), deleted=deleted)
    if include_batch or deleted:
        return found
    return [r for r in found if not r.has_proto]


def runs(
    filter: str | None = None,
    operation: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    label: str | Iterable[str] | None = None,
    tag: str | Iterable[str] | None = None,
    marked: bool | None = None,
    deleted: bool = False,
    include_batch: bool = False,
    runs: str | Iterable[str] | None = None,
) -> list[RunInfo]:
    """The selected runs, newest first, as `RunInfo`s.

    `filter` is a filter expression (``-F``), `operation`, `label` and
    `tag` one value or several (``-Fo``, ``-Fl``, ``-Ft``: any matches),
    `status` one status or several (``-S``), `marked` True or False
    (``-Fm``, ``-Fn``), `runs` RUN specs."""
    return [
        run_info(r)
        for r in selected(filter, operation, status, label, tag, marked, deleted, include_batch, runs)
    ]


# -- pandas ----------------------------------------------------------


def _pandas():
    try:
        import pandas
    except ImportError:
        raise GuildError(
            "pandas is not installed", "Install it with: pip install 'guild[pandas]'"
        ) from None
    return pandas


def runs_df(*args, all_scalars: bool = False, **kw) -> "pandas.DataFrame":
    """The runs `runs` selects (same arguments), one row each: ``id``,
    ``operation``, ``started``, ``status``, ``label``, then a column per
    flag and per scalar (its last value; ``sys/*`` scalars only with
    `all_scalars`). A flag or scalar whose name is already a column's
    is named ``flag:NAME`` or ``scalar:NAME``."""
    pd = _pandas()
    infos = runs(*args, **kw)
    core = ["id", "operation", "started", "status", "label"]
    columns: dict[tuple[str, str], str] = {}
    taken = set(core)

    def column(kind: str, name: str) -> str:
        key = (kind, name)
        if key not in columns:
            col = name if name not in taken else f"{kind}:{name}"
            columns[key] = col
            taken.add(col)
        return columns[key]

    rows = []
    for info in infos:
        row = {
            "id": info.id, "operation": info.operation, "started": info.started,
            "status": info.status, "label": info.label,
        }
        for name in sorted(info.flags, key=str):
            row[column("flag", str(name))] = info.flags[name]
        for tag in sorted(info.scalars):
            if all_scalars or not tag.startswith("sys/"):
                row[column("scalar", tag)] = info.scalars[tag]
        rows.append(row)
    order = core + list(columns.values())
    df = pd.DataFrame(rows, columns=order, dtype=object)
    return df.infer_objects()


def compare(*args, **kw) -> "pandas.DataFrame":
    """``guild compare --csv``'s table as a DataFrame: the same columns
    (``run`` is the short id) and values, one row per run. Takes the
    selection arguments of `runs` and `guild_core.compare.Options`'
    names (``cols``, ``strict_cols``, ``min_col``, ``max_col``,
    ``limit``, ``skip_unchanged``, ``all_scalars``, ...). Batch runs
    are left out unless ``include_batch``, as in ``guild compare``."""
    pd = _pandas()
    header, rows = compare_table(*args, **kw)
    df = pd.DataFrame(rows, columns=header, dtype=object)
    return df.infer_objects()


_SELECT_ARGS = (
    "filter", "operation", "status", "label", "tag", "marked", "deleted", "include_batch", "runs", "rf",
)


def compare_table(*args, **kw) -> tuple[list[str], list[list[Any]]]:
    """`compare`'s header and raw rows, without pandas."""
    from . import compare as cmp

    select_kw = {name: kw.pop(name) for name in _SELECT_ARGS if name in kw}
    include_batch = select_kw.pop("include_batch", False)
    opts = cmp.Options(include_batch=include_batch, **kw)
    # Batches are left to compare.build, which leaves them out itself.
    found = selected(*args, include_batch=True, **select_kw)
    table = cmp.build(found, opts)
    if not table.runs:
        return table.header, []
    header, rows = table.header, table.rows
    if opts.skip_unchanged:
        header, rows = cmp.drop_unchanged(header, rows)
    return list(header), [list(r) for r in rows]


# -- starting runs ---------------------------------------------------


def run(op: str, *, cwd: str | os.PathLike | None = None, label: str | None = None, **flags) -> RunInfo:
    """Run operation `op` with `flags` as ``guild run OP NAME=VAL ... -y``
    does (it is that command, in a subprocess), in `cwd` (default: the
    current directory), and return the new run. Its output goes to
    ``sys.stdout`` as it comes. A failure raises GuildError with the
    command's error line; a run that ran and failed is returned (its
    `status` says ``error``)."""
    import subprocess
    import sys

    from . import flags as flaglib
    from . import home

    args = [sys.executable, "-m", "guild_core.cli.main", "run", op]
    args += [f"{name}={flaglib.encode_value(val)}" for name, val in flags.items()]
    if label is not None:
        args += ["--label", label]
    args.append("-y")
    runs_dir = home.runs_dir()
    before = _run_dirs(runs_dir)
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, errors="replace",
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        sys.stdout.write(line)
    sys.stdout.flush()
    status = proc.wait()
    new = _new_run(runs_dir, before)
    if new is None:
        errors = [ln.strip() for ln in lines if ln.startswith("guild: ")]
        if errors:
            raise GuildError(errors[-1][len("guild: "):])
        raise GuildError(f"guild run {op} exited with status {status} and made no run")
    return run_info(new)


def _run_dirs(runs_dir: Path) -> set[str]:
    try:
        return {n for n in os.listdir(runs_dir) if not n.startswith(".")}
    except OSError:
        return set()


def _new_run(runs_dir: Path, before: set[str]):
    """The run the command made: of the runs new since `before`, the
    first created (a batch before its trials)."""
    from .run import Run

    made = [Run(n, runs_dir / n) for n in _run_dirs(runs_dir) - before]
    made = [r for r in made if r.guild_path().is_dir()]
    if not made:
        return None
    return min(made, key=lambda r: (r.get("initialized") or 0, r.id))


# -- guild api JSON --------------------------------------------------


def runs_data(found: list["Run"], api_version: int = 2) -> list[dict[str, Any]]:
    """``guild api runs``' JSON: one object per run, in Guild AI 0.9's
    shape for `api_version` 1 or 2."""
    return [_run_data(r, api_version) for r in found]


def _run_data(run: "Run", api_version: int) -> dict[str, Any]:
    from . import util
    from .runvalues import RunValues, run_duration

    started, stopped = run.get("started"), run.get("stopped")
    status = run.status
    opref = run.opref
    data: dict[str, Any] = {
        "id": run.id,
        "shortId": run.short_id,
        "dir": str(run.path),
        "operation": run.op_name,
        "label": run.get("label") or "",
        "tags": list(run.get("tags") or []),
        "comments": run.get("comments") or [],
        "status": status,
        "exitStatus": run.get("exit_status", ""),
        "command": _command_text(run.get("cmd")),
        "otherAttrs": {name: run.get(name) for name in _other_attr_names(run)},
        "flags": run.get("flags") or {},
        "env": run.get("env") or {},
        "deps": _deps_data(run),
        "files": _files_data(run, api_version),
        "sourcecode": _sourcecode_data(run),
        "projectDir": run.project_dir,
        "opRef": None if opref is None else {
            "pkgType": opref.type, "pkgName": opref.location, "pkgVersion": opref.version,
            "modelName": opref.model, "opName": opref.op,
        },
        "marked": bool(run.get("marked")),
    }
    scalars = []
    # By tag, as Guild AI's index lists them.
    for tag, s in sorted(RunValues(run).scalars().items()):
        scalars.append({
            "run": run.id, "prefix": ".guild", "tag": tag,
            "first_val": s.first[0], "first_step": s.first[1],
            "last_val": s.last[0], "last_step": s.last[1],
            "min_val": s.min[0], "min_step": s.min[1],
            "max_val": s.max[0], "max_step": s.max[1],
            "avg_val": s.total / s.count if s.count else None,
            "total": s.total, "count": s.count,
        })
    if api_version == 1:
        data["tags"] = ", ".join(data["tags"])
        data["started"] = util.format_timestamp(started)
        data["stopped"] = util.format_timestamp(stopped)
        data["time"] = run_duration(status, started, stopped) or ""
    else:
        data["started"] = started
        data["stopped"] = stopped
        scalars = [{_camel(k): v for k, v in s.items()} for s in scalars]
    data["scalars"] = scalars
    return data


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _command_text(cmd: Any) -> str:
    if not cmd:
        return ""
    return " ".join(f'"{a}"' if a == "" or " " in a else a for a in map(str, cmd))


# Attributes the runs JSON shows in fields of their own (or never),
# the rest go to otherAttrs: Guild AI 0.9's list.
_CORE_ATTRS = frozenset((
    "cmd", "comments", "compare", "deps", "env", "exit_status", "flags", "host", "id",
    "initialized", "label", "marked", "objective", "op", "pip_freeze", "platform", "plugins",
    "random_seed", "run_params", "sourcecode_digest", "started", "stopped", "tags",
    "user", "user_flags", "vcs_commit", "resolved_deps", "opdef",
))


def _other_attr_names(run: "Run") -> list[str]:
    return [n for n in run.attr_names() if not n.startswith("_") and n not in _CORE_ATTRS]


def _deps_data(run: "Run") -> list[dict[str, Any]]:
    """The runs this run's operation dependencies came from, each with
    the paths it took from them, sorted by operation. (Guild AI 0.9
    means to list these but reads its own ``deps`` attribute in an
    older shape, and so lists none.)"""
    from . import home
    from .run import Run

    deps = run.get("deps") or {}
    runs_dir = home.runs_dir()
    found: dict[str, tuple[Run, list[str]]] = {}
    for sources in deps.values():
        for uri, source in sources.items():
            if not (str(uri).startswith("operation:") and isinstance(source, dict)):
                continue
            run_id = source.get("config")
            if not isinstance(run_id, str) or not run_id or "/" in run_id or run_id.startswith("."):
                continue
            if run_id not in found:
                dep_run = Run(run_id, runs_dir / run_id)
                if not dep_run.guild_path().is_dir():
                    continue  # deleted since: left out, as Guild AI does
                found[run_id] = (dep_run, [])
            paths = source.get("paths")
            if isinstance(paths, list):
                found[run_id][1].extend(str(p) for p in paths)
    out = [
        {"run": r.short_id, "operation": r.op_name, "paths": paths}
        for r, paths in found.values()
    ]
    return sorted(out, key=lambda d: d["operation"])


def _files_data(run: "Run", api_version: int) -> list[dict[str, Any]]:
    from . import home

    root = str(run.path)
    runs_dir = os.path.realpath(home.runs_dir())
    out = []
    for top, dirs, files in os.walk(root):
        if top == root and ".guild" in dirs:
            dirs.remove(".guild")
        for name in dirs + files:
            path = os.path.join(top, name)
            is_link = os.path.islink(path)
            if not (is_link or os.path.isfile(path)):
                continue
            try:
                st = os.stat(path)
                size, mtime = st.st_size, int(st.st_mtime * 1000)
            except OSError:
                size = mtime = None
            op, from_run = None, None
            if is_link:
                op, from_run = _link_source(os.path.realpath(path), runs_dir)
            entry = {
                "path": path[len(root) + 1:], "size": size, "mtime": mtime,
                "operation": op, "run": from_run,
            }
            if api_version == 1:
                entry.update(_file_type(path, is_link, runs_dir))
            out.append(entry)
    return sorted(out, key=lambda e: _natural_key(e["path"]))


def _natural_key(text: str) -> list:
    import re

    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text)]


def _link_source(target: str, runs_dir: str) -> tuple[str | None, str | None]:
    from .run import Run

    if not target.startswith(runs_dir + os.sep):
        return None, None
    run_id = target[len(runs_dir) + 1:].split(os.sep, 1)[0]
    other = Run(run_id, Path(runs_dir, run_id))
    if not other.guild_path().is_dir():
        return f"{run_id} (deleted)", None
    return other.op_name, other.short_id


# API version 1's file kinds: (name pattern, type, icon, tooltip, viewer).
_FILE_KINDS = (
    (r"\.tfevents\.", "Event log", "file-chart", "File", None),
    (r"\.(jpg|jpeg|gif|png|tiff)$", "Image", "file-image", "Image", "image"),
    (r"\.mid", "Audio", "file-music", "Audio", "midi"),
    (r"\.(wav|mp3)", "Audio", "file-music", "Audio", None),
    (r"\.(csv|tsv)", "Table", "file-delimited", "Delimited", "table"),
)


def _file_type(path: str, is_link: bool, runs_dir: str) -> dict[str, Any]:
    import re

    lower = path.lower()
    for pattern, type_, icon, tooltip, viewer in _FILE_KINDS:
        if re.search(pattern, lower):
            break
    else:
        if _is_text(path):
            type_, icon, tooltip, viewer = "Text file", "file-document", "Text file", "text"
        else:
            type_, icon, tooltip, viewer = "File", "file", "File", None
    if is_link:
        target = os.path.realpath(path)
        is_dir = os.path.isdir(target)
        if target.startswith(runs_dir + os.sep):
            type_ = "Link to operation output"
        elif "/cache/" in target:
            type_ = f"Link to resource {'directory' if is_dir else 'file'}"
        else:
            type_ = "Link"
        icon, tooltip = ("folder-move" if is_dir else "file-send"), "Link"
    return {"type": type_, "icon": icon, "iconTooltip": tooltip, "viewer": viewer}


def _is_text(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # A character cut at the end of the sample is still text.
        return e.start >= len(head) - 3
    return True


def _sourcecode_data(run: "Run") -> dict[str, Any]:
    from . import runfiles

    op = run.get("op")
    sourcecode = op.get("sourcecode") if isinstance(op, dict) else None
    dest = sourcecode.get("dest") if isinstance(sourcecode, dict) else None
    dest_dir = os.path.normpath(os.path.join(run.path, dest)) if dest else str(run.path)
    files = [e.path for e in runfiles.manifest_entries(run) if e.kind == runfiles.SOURCECODE]
    return {"root": os.path.relpath(dest_dir, run.path), "files": sorted(files)}


def compare_data(*args, **kw) -> list[list[Any]]:
    """``guild api compare``'s JSON: the header row, then one row per
    run, as `compare_table` with the full run id in place of the short
    one (column ``id``)."""
    from . import compare as cmp

    header, rows = compare_table(*args, cols=".id", **kw)
    if not rows:
        return []
    i = len(header) - 1 - header[::-1].index("id")
    reorder = lambda row: [row[i]] + row[1:i] + row[i + 1:]
    return [reorder(header)] + [[cmp.json_value(v) for v in reorder(row)] for row in rows]


def ops_data(cwd: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """``guild api ops``' JSON: each guild.yml operation of the project
    in `cwd` (default: the current directory), by model and name, its
    flags as ``guild run`` resolves them."""
    from . import opdef as opdeflib

    root = Path(cwd) if cwd is not None else Path.cwd()
    if opdeflib.find_guildfile(root) is None:
        return []
    return [help_op_data(name, root) for name, _desc in opdeflib.list_operations(root, private=True)]


def help_op_data(opspec: str, cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """``guild api help-op``'s JSON: operation `opspec` (a guild.yml
    operation or a script, as ``guild run`` finds it) and its flags."""
    from . import opdef as opdeflib
    from .cli.common import flag_detector, plugin_manager

    root = Path(cwd) if cwd is not None else Path.cwd()
    od = opdeflib.resolve(opspec, root, flag_detector(plugin_manager()))
    gf = od.guildfile
    raw_flags = {}
    if gf is not None:
        op = opdeflib.load_guildfile(gf).get(od.name) or {}
        raw_flags = op.get("flags") if isinstance(op.get("flags"), dict) else {}
    return {
        "opref": {
            "pkgType": od.opref.type, "pkgName": od.opref.location,
            "pkgVersion": od.opref.version, "modelName": od.opref.model,
            "opName": od.opref.op,
        },
        "name": od.opref.op,
        "fullname": od.opref.op_name,
        "description": od.description or "",
        "guildfile": {
            "dir": str((gf.parent if gf is not None else Path(od.project_dir)).absolute()),
            "src": str(gf.absolute()) if gf is not None else None,
        },
        "flags": {
            name: _flag_data(fd, raw_flags.get(name))
            for name, fd in sorted(od.flagdefs.items())
        },
    }


def _flag_data(fd, raw: Any) -> dict[str, Any]:
    from . import flags as flaglib

    # Choice descriptions are guild.yml's only; FlagDef keeps values.
    raw_choices = raw.get("choices") if isinstance(raw, dict) else None
    described = {
        repr(c.get("value")): str(c.get("description") or "")
        for c in (raw_choices if isinstance(raw_choices, list) else [])
        if isinstance(c, dict)
    }
    alias_of = {}
    for alias, val in (fd.choice_aliases or {}).items():
        alias_of.setdefault(repr(val), alias)
    choices = [
        {"value": v, "alias": alias_of.get(repr(v)), "description": described.get(repr(v), "")}
        for v in (fd.choices or [])
    ]
    return {
        "default": fd.default,
        "defaultAssign": f"{fd.name}={flaglib.encode_value(fd.default)}",
        "description": fd.description or "",
        "choices": choices,
        "type": fd.type,
    }
