"""``guild runs``: list runs and show one."""

from __future__ import annotations

import json
import os
import shlex

import click

from guild_core import util
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
        ]
    ):
        fn = opt(fn)
    return filter_options(fn)


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
def runs(ctx, all_, more, deleted, archive, as_json, rf):
    """Show or manage runs. With no command, list runs."""
    if ctx.invoked_subcommand is None:
        _list(all_, more, deleted, archive, as_json, rf)


@runs.command("list")
@list_options
def list_(all_, more, deleted, archive, as_json, rf):
    """List runs, newest first.

    Filter options select runs as for every command that takes runs;
    indexes in the list are positions among the filtered runs."""
    _list(all_, more, deleted, archive, as_json, rf)


def _list(all_, more, deleted, archive, as_json, rf):
    runs_ = filtered_runs(rf, deleted=deleted, archive=archive)
    if as_json:
        click.echo(json.dumps([_list_json(run) for run in runs_]))
        return
    shown = runs_ if all_ else runs_[: (more + 1) * RUNS_PER_GROUP]
    for line in format_list(shown):
        click.echo(line)
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
    rows = [
        [
            f"[{i}:{run.short_id}]" if indexed else f"[{run.short_id}]",
            printable(op_desc(run)),
            util.format_timestamp(run.get("started")),
            printable(run.status),
            printable(run.get("label") or ""),
        ]
        for i, run in enumerate(runs_, 1)
    ]
    return util.table(rows)


def op_desc(run: Run) -> str:
    """The operation, with its project directory unless it is the cwd,
    and ``[marked]`` for marked runs (Guild AI's list column)."""
    desc = run.op_name
    project = run.project_dir
    if project and os.path.abspath(project) != os.getcwd():
        desc += f" ({util.format_dir(project)})"
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
@click.option("-d", "--deleted", is_flag=True, help="Show a deleted run.")
@click.option("-A", "--archive", metavar="DIR", help="Show a run in an archive directory.")
@click.option("--json", "as_json", is_flag=True, help="Show as JSON.")
@filter_options
def info(run, deleted, archive, as_json, rf):
    """Show information about a run (default: the latest)."""
    target = selected_run(rf, run, deleted=deleted, archive=archive)
    data = info_data(target)
    if as_json:
        click.echo(json.dumps(data))
        return
    # Every value (and name) is escaped with `printable`: one line each.
    p = printable
    for key, val in data.items():
        if key == "tags":
            click.echo("tags:" + "".join(f"\n  - {p(t)}" for t in val))
        elif key == "flags":
            click.echo("flags:")
            from guild_core.flags import encode_value

            for name, fval in val.items():
                click.echo(f"  {p(name)}: {p(encode_value(fval))}")
        elif key == "scalars":
            click.echo("scalars:")
            for name, (sval, step) in val.items():
                click.echo(f"  {p(name)}: {sval:f} (step {step})")
        elif key == "dependencies":
            click.echo("dependencies:")
            for name, sources in val.items():
                click.echo(f"  {p(name)}:")
                for source in sources.values():
                    config = source.get("config")
                    runs = config if isinstance(config, list) else [config]
                    click.echo(f"    uri: {p(source.get('uri'))}")
                    if any(isinstance(r, str) for r in runs):
                        # Run dependencies; a file, url or module has none.
                        click.echo("    runs:" + "".join(f"\n    - {p(r)}" for r in runs if isinstance(r, str)))
                    click.echo("    paths:" + "".join(f"\n    - {p(x)}" for x in source.get("paths") or []))
        else:
            click.echo(f"{key}: {p('' if val is None else val)}")


def info_data(run: Run) -> dict:
    """``runs info`` fields, with Guild AI 0.9's keys and value shapes."""
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
        "tags": list(run.get("tags") or []),
        "flags": dict(sorted((run.get("flags") or {}).items())),
        "scalars": {k: [v, s] for k, (v, s) in sorted(run.last_scalars().items())},
    }
    deps = run.get("deps")
    if deps:
        data["dependencies"] = deps
    return data
