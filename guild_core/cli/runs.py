"""``guild runs``: list runs and show one."""

from __future__ import annotations

import json
import os
import shlex

import click

from guild_core import util
from guild_core.errors import GuildError
from guild_core.run import Run

from .common import printable
from .runselect import filter_options, filtered_runs, selected_run

RUNS_PER_GROUP = 20


def list_options(fn):
    for opt in reversed(
        [
            click.option("-a", "--all", "all_", is_flag=True, help="Show all runs."),
            click.option("-m", "--more", count=True, help="Show 20 more runs (repeatable)."),
            click.option("-d", "--deleted", is_flag=True, help="Show deleted runs."),
            click.option("-A", "--archive", metavar="DIR", help="Show runs in an archive directory."),
            click.option("--json", "as_json", is_flag=True, help="Show runs as JSON."),
            click.option("-n", "--limit", type=click.IntRange(min=1), metavar="N", help="Show at most N runs."),
            click.option("-c", "--comments", is_flag=True, help="Show each run's comments."),
            click.option("-v", "--verbose", is_flag=True, help="Show each run's details (as runs info shows them)."),
            click.option("-s", "--simplified", is_flag=True, help="Show a simplified list: index, operation, status, label."),
        ]
    ):
        fn = opt(fn)
    return filter_options(fn, remote=True)


def _list_view(all_, limit, comments, verbose, simplified, as_json):
    """The list's shape from its options; conflicts are usage errors,
    as in Guild AI."""
    for a, b, given in (
        ("--all", "--limit", all_ and limit), ("--comments", "--verbose", comments and verbose),
        ("--json", "--comments", as_json and comments), ("--json", "--verbose", as_json and verbose),
        ("--simplified", "--verbose", simplified and verbose),
    ):
        if given:
            raise click.UsageError(f"{a} and {b} cannot both be used")
    return {"limit": limit, "comments": comments, "verbose": verbose, "simplified": simplified}


# Subcommands other than list and info load on first use.
SUBCOMMANDS = {
    "delete": ("guild_core.cli.runs_delete", "delete", "Delete runs."),
    "rm": ("guild_core.cli.runs_delete", "delete", "Delete runs (alias of delete)."),
    "restore": ("guild_core.cli.runs_delete", "restore", "Restore deleted runs."),
    "purge": ("guild_core.cli.runs_delete", "purge", "Permanently delete deleted runs."),
    "label": ("guild_core.cli.runs_meta", "label", "Set run labels."),
    "tag": ("guild_core.cli.runs_meta", "tag", "Add or delete run tags."),
    "mark": ("guild_core.cli.runs_meta", "mark", "Mark runs."),
    "comment": ("guild_core.cli.runs_meta", "comment", "Add, list or delete run comments."),
}


def _group_cls():
    from .main import GuildGroup

    return GuildGroup


@click.group(invoke_without_command=True, cls=_group_cls(), lazy=SUBCOMMANDS)
@list_options
@click.pass_context
def runs(ctx, all_, more, deleted, archive, as_json, limit, comments, verbose, simplified, rf):
    """Show or manage runs. With no command, list runs."""
    if ctx.invoked_subcommand is None:
        _list(all_, more, deleted, archive, as_json, rf, _list_view(all_, limit, comments, verbose, simplified, as_json))


@runs.command("list")
@list_options
def list_(all_, more, deleted, archive, as_json, limit, comments, verbose, simplified, rf):
    """List runs, newest first.

    Filter options select runs as for every command that takes runs;
    indexes in the list are positions among the filtered runs.
    --comments shows each run's comments under it, --verbose its
    details, --simplified only index, operation, status and label;
    --limit N shows the first N."""
    _list(all_, more, deleted, archive, as_json, rf, _list_view(all_, limit, comments, verbose, simplified, as_json))


def _list(all_, more, deleted, archive, as_json, rf, view=None):
    view = view or {}
    runs_ = filtered_runs(rf, deleted=deleted, archive=archive)
    if view.get("limit"):
        runs_ = runs_[: view["limit"]]
    if as_json:
        click.echo(json.dumps([_list_json(run) for run in runs_]))
        return
    shown = runs_ if all_ or view.get("limit") else runs_[: (more + 1) * RUNS_PER_GROUP]
    rows = _simplified(shown) if view.get("simplified") else format_list(shown)
    if rows and not (view.get("comments") or view.get("verbose")):
        # One write: a long listing spends as long in click.echo per row.
        click.echo("\n".join(rows))
        rows = []
    for run, line in zip(shown, rows):
        click.echo(line)
        if view.get("comments"):
            from .runs_meta import comment_lines

            for extra in comment_lines(run.get("comments"), indexed=False):
                click.echo(extra)
        elif view.get("verbose"):
            for key, val in info_data(run).items():
                if key in ("tags", "flags", "scalars", "dependencies"):
                    break
                click.echo(f"  {key}: {printable('' if val is None else val)}")
    if len(shown) < len(runs_):
        click.echo(
            f"Showing the first {len(shown)} runs ({len(runs_)} total) - use --all "
            "to show all or -m to show more",
            err=True,
        )


def format_list(runs_: list[Run], indexed: bool = True) -> list[str]:
    """Guild AI's run rows: ``[INDEX:id8]  op  started  status  label``;
    without `indexed`, ``[id8]`` as previews show them. Control
    characters in a cell are escaped (`printable`), so a label cannot
    break a row or reach the terminal as an escape sequence."""
    places: dict[str, str] = {}
    rows = [
        [
            f"[{i}:{run.short_id}]" if indexed else f"[{run.short_id}]",
            printable(op_desc(run, places)),
            util.format_timestamp(run.get("started")),
            printable(run.status),
            printable(run.get("label") or ""),
        ]
        for i, run in enumerate(runs_, 1)
    ]
    return util.table(rows)


def _simplified(runs_: list[Run]) -> list[str]:
    """Guild AI's ``--simplified`` rows: ``[INDEX]  op  status  label``."""
    rows = [
        [f"[{i}]", printable(run.op_name), printable(run.status), printable(run.get("label") or "")]
        for i, run in enumerate(runs_, 1)
    ]
    return util.table(rows)


def op_desc(run: Run, places: dict[str, str] | None = None) -> str:
    """The operation, with its project directory unless it is the cwd,
    and ``[marked]`` for marked runs (Guild AI's list column). `places`
    keeps each project's part for the rows of one listing, which share
    a few projects."""
    desc = run.op_name
    project = run.project_dir
    if project:
        place = places.get(project) if places is not None else None
        if place is None:
            place = "" if os.path.abspath(project) == os.getcwd() else f" ({util.format_dir(project)})"
            if places is not None:
                places[project] = place
        desc += place
    if run.get("marked"):
        desc += " [marked]"
    return desc


def _list_json(run: Run) -> dict:
    data = {
        "id": run.id,
        "run_dir": str(run.path),
        "opref": str(run.opref) if run.opref else "",
        "operation": run.op_name,
    }
    for name in ("exit_status", "cmd", "comments", "marked", "label", "started"):
        data[name] = run.get(name)
    data["status"] = run.status
    data["stopped"] = run.get("stopped")
    data["tags"] = run.get("tags")
    return data


@runs.command("info")
@click.argument("run", required=False)
@click.option("-c", "--comments", is_flag=True, help="Show the run's comments.")
@click.option("-e", "--env", is_flag=True, help="Show the run's environment.")
@click.option("-d", "--deps", is_flag=True, help="Show the run's resolved dependencies.")
@click.option("-m", "--manifest", is_flag=True, help="Show the source code and dependency files copied into the run.")
@click.option("-p", "--plugins", is_flag=True, help="Show the plugins recorded for the run.")
@click.option(
    "-s", "--all-scalars", is_flag=True,
    help="Show first, last, min, max, avg and total of every scalar, system scalars too "
    "(default: the last value of each non-system scalar).",
)
@click.option("--json", "as_json", is_flag=True, help="Show as JSON.")
@click.option("--deleted", is_flag=True, help="Show a deleted run.")
@click.option("-A", "--archive", metavar="DIR", help="Show a run in an archive directory.")
@filter_options(remote=True)
def info(run, comments, env, deps, manifest, plugins, all_scalars, as_json, deleted, archive, rf):
    """Show one run: its attributes, flags and scalars (default: the
    latest run).

    RUN is a run id, a unique id prefix or a 1-based index in the list
    of filtered runs (`guild runs list`); without it, the newest
    filtered run. The filter options narrow the runs first, as for
    every command that takes runs: an expression (-F 'loss < 0.1'),
    operation, label, tag, comment, marked or unmarked, start time
    (-Fs 'last hour'), source code digest, and status (-Sr -Sc -Se -St
    -Sp -Ss, combined as -Set).

    More sections, each asked for by its option and in any combination:
    comments (-c), the environment the run started with (-e), resolved
    dependencies (-d), the manifest of source code and dependency files
    (-m), the recorded plugins (-p). -s replaces each scalar's last value
    with all its summaries; system scalars (`sys/...`) are shown only
    with -s. With --json the same sections appear as keys of one JSON
    object.

    --deleted shows a run in the trash; -A shows a run in an archive
    (a directory or a .zip written by `guild export`); -r a run on a
    remote (`guild remotes`)."""
    target = selected_run(rf, run, deleted=deleted, archive=archive)
    data = info_data(
        target, comments=comments, env=env, deps=deps, manifest=manifest,
        plugins=plugins, all_scalars=all_scalars,
    )
    if as_json:
        click.echo(json.dumps(data))
        return
    for line in format_info(data, all_scalars):
        click.echo(line)


def format_info(data: dict, all_scalars: bool = False) -> list[str]:
    """``runs info`` as text, in Guild AI 0.9's layout. Every value (and
    name) is escaped with `printable`: one line each."""
    p = printable
    lines = []
    for key, val in data.items():
        if key == "tags":
            lines.append("tags:")
            lines.extend(f"  - {p(t)}" for t in val)
        elif key in ("flags", "environment"):
            lines.append(f"{key}:")
            lines.extend(f"  {p(name)}: {p(_encoded(fval))}" for name, fval in sorted(val.items()))
        elif key == "scalars":
            lines.append("scalars:")
            for name, sval in val.items():
                if all_scalars:
                    lines.append(f"  {p(name)}:")
                    for what, (num, step) in sorted(sval.items()):
                        unit = "count" if what in ("avg", "total") else "step"
                        lines.append(f"    {what}: {_scalar_text(num)} ({unit} {step})")
                else:
                    num, step = sval
                    lines.append(f"  {p(name)}: {_scalar_text(num)} (step {step})")
        elif key == "comments":
            lines.append("comments:")
            for comment in val:
                if not isinstance(comment, dict):
                    lines.append(f"  - {p(comment)}")
                    continue
                lines.append("  -")
                for name, cval in sorted(comment.items()):
                    text = str(cval)
                    if "\n" in text:
                        lines.append(f"    {p(name)}: |")
                        lines.extend(f"      {p(part.strip())}" for part in text.split("\n"))
                    else:
                        lines.append(f"    {p(name)}: {p(text)}")
        elif key == "manifest":
            lines.append("manifest:")
            for section, paths in val.items():
                lines.append(f"  {section}:")
                lines.extend(f"    - {p(path)}" for path in paths)
        elif key == "dependencies":
            from guild_core import yamlutil

            lines.append("dependencies:")
            for name, sources in sorted(val.items()):
                lines.append(f"  {p(name)}:")
                block = yamlutil.encode(sources).rstrip("\n")
                lines.extend(f"    {p(line)}" for line in block.split("\n"))
        elif key == "plugins":
            lines.append("plugins:")
            lines.extend(f"  - {p(name)}" for name in val)
        else:
            lines.append(f"{key}: {p('' if val is None else val)}")
    return lines


def _encoded(val) -> str:
    """A flag or environment value as Guild AI shows it: a string that
    would read back as something else quoted (``'20'``, ``'yes'``)."""
    from guild_core.flags import encode_value

    if isinstance(val, str) and "\n" not in val:
        from guild_core import yamlutil

        return yamlutil.encode(val)
    return encode_value(val)


def _scalar_text(val) -> str:
    if isinstance(val, float):
        return f"{val:f}"
    return "nan" if val is None else str(val)


def info_data(
    run: Run,
    comments: bool = False,
    env: bool = False,
    deps: bool = False,
    manifest: bool = False,
    plugins: bool = False,
    all_scalars: bool = False,
) -> dict:
    """``runs info`` fields, with Guild AI 0.9's keys and value shapes;
    each option adds its section, in Guild AI's order."""
    cmd = run.get("cmd") or []
    data = {
        "id": run.id,
        "operation": run.op_name,
        "from": run.project_dir or "",
        "status": run.status,
        "started": util.format_timestamp(run.get("started")),
        "stopped": util.format_timestamp(run.get("stopped")),
        "marked": "yes" if run.get("marked") else "no",
        "label": run.get("label") or "",
        "sourcecode_digest": run.get("sourcecode_digest") or "",
        "vcs_commit": run.get("vcs_commit") or "",
        "run_dir": str(run.path),
        "command": " ".join(shlex.quote(str(a)) for a in cmd),
        "exit_status": run.get("exit_status", ""),
        "pid": run.pid or "",
    }
    if run.get("pruned"):
        # Only for a trial a pruner stopped (docs/pruning.md).
        data["pruned"] = _pruned_info(run)
    data |= {
        "tags": list(run.get("tags") or []),
        "flags": dict(sorted((run.get("flags") or {}).items())),
        "scalars": _all_scalars(run) if all_scalars else _last_scalars(run),
    }
    if comments:
        data["comments"] = [_comment_info(c) for c in run.get("comments") or []]
    if env:
        data["environment"] = dict(sorted((run.get("env") or {}).items()))
    if manifest:
        from guild_core import runfiles

        data["manifest"] = runfiles.Index(run).listing()
    if deps:
        data["dependencies"] = run.get("deps") or {}
    if plugins:
        data["plugins"] = list(run.get("plugins") or [])
    return data


def _pruned_info(run: Run) -> str:
    threshold = run.get("pruned_threshold")
    vs = f", threshold {threshold:g}" if isinstance(threshold, (int, float)) else ""
    return f"at step {run.get('pruned_step')} by {run.get('pruned_rule') or run.get('pruned_by')}{vs}"


def _is_system_scalar(tag: str) -> bool:
    return tag.rpartition("#")[2].startswith("sys/")


def _last_scalars(run: Run) -> dict:
    return {k: [v, s] for k, (v, s) in sorted(run.last_scalars().items()) if not _is_system_scalar(k)}


def _all_scalars(run: Run) -> dict:
    """Every scalar's summaries, as Guild AI's ``-s`` shows them:
    ``[value, step]`` for first, last, min and max, ``[value, count]``
    for avg and total."""
    from guild_core.runvalues import summarize

    out = {}
    for tag, summ in sorted(summarize(run.guild_path()).items()):
        out[tag] = {
            "first": list(summ.first),
            "last": list(summ.last),
            "min": list(summ.min),
            # Guild AI 0.9 gives max the step of min; this is max's own.
            "max": list(summ.max),
            "avg": [summ.total / summ.count, summ.count],
            "total": [summ.total, summ.count],
        }
    return out


def _comment_info(comment) -> dict | str:
    if not isinstance(comment, dict):
        return repr(comment)
    return {
        "user": comment.get("user") or "",
        "host": comment.get("host") or "",
        "time": util.format_timestamp(comment.get("time")),
        "body": str(comment.get("body") or "").strip(),
    }
