"""``guild select``: print the id (or an attribute) of selected runs."""

from __future__ import annotations

import click

from guild_core.errors import GuildError

from .runselect import filter_options


@click.command()
@click.argument("runs", metavar="[RUN...]", nargs=-1)
@click.option("-A", "--all", "all_", is_flag=True, help="Select all matching runs, not just the latest.")
@click.option(
    "-min", "--min", "min_col", metavar="COLSPEC",
    help="Select the run with the lowest value for the specified COLSPEC.",
)
@click.option(
    "-max", "--max", "max_col", metavar="COLSPEC",
    help="Select the run with the highest value for the specified COLSPEC.",
)
@click.option("-s", "--short-id", is_flag=True, help="Use short ID.")
@click.option("-a", "--attr", metavar="ATTR", help="Show specified run attribute rather than run ID.")
@click.option("-p", "--path", "--dir", "path", is_flag=True, help="Show run path.")
@filter_options(remote=True)
def select(runs, all_, min_col, max_col, short_id, attr, path, rf):
    """Select a run and show its ID.

    For use in other commands, for example to restart the latest
    'train' run: 'guild run --restart $(guild select -Fo train)'.

    With no RUN, the latest matching run is selected. With more than
    one RUN, or with --all, every selected run is shown, one per line.

    --min and --max select the run with the lowest or highest value of
    a column spec, as in 'guild compare': a scalar ('loss',
    'max acc'), a flag ('=lr') or an attribute ('.label'). Runs
    without a value are left out. Filters and RUN arguments apply
    first.
    """
    if short_id and attr:
        raise GuildError("--short-id and --attr cannot both be specified")
    if min_col and max_col:
        raise GuildError("--min and --max cannot both be specified")
    if path and (attr or short_id):
        other = "--attr" if attr else "--short-id"
        raise GuildError(f"--path and {other} cannot both be specified")
    from guild_core import select as selectlib

    from .runselect import filtered_runs

    filtered = filtered_runs(rf)
    if not filtered:
        raise GuildError("no matching runs")
    col = min_col or max_col
    if col:
        from guild_core import compare

        pool = selectlib.select(filtered, list(runs)) if runs else filtered
        best = compare.select_by(pool, col, highest=bool(max_col))
        if best is None:
            raise GuildError(f"no matching runs with a value for '{col}'")
        chosen = [best]
    elif all_ or len(runs) > 1:
        chosen = selectlib.select(filtered, list(runs)) if runs else filtered
    else:
        chosen = [selectlib.select_one(filtered, runs[0] if runs else None)]
    for run in chosen:
        click.echo(_shown(run, attr, short_id, path))


def _shown(run, attr, short_id, path) -> str:
    """What is printed for `run`, control characters escaped (a
    label's newline would read as two runs, an escape sequence would
    reach the terminal)."""
    from .common import printable

    if attr:
        return format_attr(run, attr)
    if short_id:
        return run.short_id
    if path:
        return printable(run.path)
    return run.id


def format_attr(run, name: str) -> str:
    """Guild AI's select --attr: a formatted run field, else the raw
    attribute as YAML; control characters escaped (in YAML, a value's
    own; the YAML keeps its lines)."""
    from .common import printable

    formatted = _formatted(run)
    if name in formatted:
        fn = formatted[name]
        return printable(fn())
    if not run.has_attr(name):
        raise GuildError(f"no such run attribute '{name}'")
    val = run.get(name)
    import yaml

    encoded = yaml.safe_dump(val, default_flow_style=False, indent=2).strip()
    if encoded.endswith("\n..."):
        encoded = encoded[:-4]
    # PyYAML already writes a string's control characters as escapes;
    # this is for the text PyYAML leaves as it is.
    return "\n".join(printable(line) for line in encoded.split("\n"))


def _formatted(run) -> dict:
    import shlex

    from guild_core import runvalues, util

    def opref(attr):
        return lambda: getattr(run.opref, attr) if run.opref else ""

    def command():
        cmd = run.get("cmd") or []
        return " ".join(shlex.quote(str(a)) if (str(a) == "" or " " in str(a)) else str(a) for a in cmd)

    def location():
        return util.format_dir(run.opref.location) if run.opref else ""

    def exit_status():
        val = run.get("exit_status")
        return "" if val is None else str(val)

    return {
        "command": command,
        "duration": lambda: runvalues.run_duration(run.status, run.get("started"), run.get("stopped")) or "",
        "exit_status": exit_status,
        "from": location,
        "id": lambda: run.id,
        "index": lambda: f"[{run.short_id}]",
        "label": lambda: run.get("label") or "",
        "marked": lambda: "yes" if run.get("marked") else "no",
        "model": opref("model"),
        "op_name": opref("op"),
        "operation": lambda: run.op_name,
        "pid": lambda: str(run.pid or ""),
        "pkg_name": location,
        "run_dir": lambda: util.format_dir(str(run.path)),
        "short_id": lambda: run.short_id,
        "sourcecode_digest": lambda: run.get("sourcecode_digest") or "",
        "started": lambda: util.format_timestamp(run.get("started")),
        "status": lambda: run.status,
        "stopped": lambda: util.format_timestamp(run.get("stopped")),
        "vcs_commit": lambda: run.get("vcs_commit") or "",
    }
