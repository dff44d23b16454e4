"""``guild compare``: runs side by side, interactively, as a table, CSV or JSON."""

from __future__ import annotations

import click

from guild_core.errors import GuildError

from .runselect import filter_options, selected_runs


@click.command()
@click.argument("runs", metavar="[RUN...]", nargs=-1)
@click.option("--min", "min_col", metavar="COLUMN", help="Show the lowest values for COLUMN first.")
@click.option("--max", "max_col", metavar="COLUMN", help="Show the highest values for COLUMN first.")
@click.option(
    "-n", "--limit", "--top", "limit", metavar="N", type=click.IntRange(min=1),
    help="Only show the top N runs.",
)
@click.option("-e", "--extra-cols", is_flag=True, help="Show extra columns (source code digest).")
@click.option(
    "-s", "--all-scalars", is_flag=True,
    help="Include all scalars. By default system scalars (sys/*) are omitted.",
)
@click.option(
    "-c", "--cols", "--columns", "cols", metavar="COLUMNS",
    help="Comma-separated columns to show in addition to the default ones.",
)
@click.option(
    "-cc", "--strict-cols", "--strict-columns", "strict_cols", metavar="COLUMNS",
    help="Comma-separated columns to show instead of the default ones (run is always shown).",
)
@click.option(
    "-p", "--skip-op-cols", is_flag=True,
    help="Don't show the runs' own columns (flags, step and scalars).",
)
@click.option("--skip-flags", is_flag=True, help="Don't show flag columns.")
@click.option("--skip-scalars", is_flag=True, help="Don't show scalar columns.")
@click.option("-r", "--skip-core", is_flag=True, help="Don't show core columns.")
@click.option(
    "-u", "--skip-unchanged", is_flag=True,
    help="Don't show columns with values that do not change.",
)
@click.option("-t", "--table", is_flag=True, help="Show comparison data as a table.")
@click.option(
    "--csv", metavar="PATH",
    help="Save comparison data to a CSV file. Use '-' for PATH to print to standard output.",
)
@click.option("--json", "as_json", is_flag=True, help="Print comparison data as JSON.")
@click.option("--include-batch", is_flag=True, help="Include batch runs.")
@click.option("--print-scalars", is_flag=True, help="Show available scalars and exit.")
@click.option("--tool", metavar="TOOL", help="Compare with TOOL (Guild AI's hiplot; not available yet).")
@filter_options(remote="long")
def compare(runs, table, csv, as_json, print_scalars, tool, rf, **kw):
    """Compare run flags, scalars and attributes.

    --tool hiplot (Guild AI's HiPlot viewer) belongs to the coming
    view and says so; other tools are unknown.

    Shows one row per run: the core columns run, operation, started,
    time, status and label, then each run's flags, a step column and
    the last value of each scalar.

    On a terminal, with none of --table, --csv and --json, the table
    opens interactively: move with the arrow keys or h, j, k, l, sort
    by the current column with s (ascending) and S (descending), mark a
    run with m, refresh with r, see every key with ?, quit with q.
    Otherwise (output to a file or a pipe, or -t) the table is printed.

    \b
    Column specs (-c, -cc, --min, --max), comma-separated:
      =NAME              a flag
      .NAME              a run attribute (.label, .status, .exit_status...)
      NAME               the last value of a scalar
      QUAL NAME          QUAL: first, last, min, max, avg, total, count
      [QUAL] NAME step   the step of that value (first, last, min, max)
      COL as HEADING     another heading (quote it if it has spaces)

    --min and --max take a column heading as shown, or a column spec.

    With no RUN, all filtered runs are compared (newest first). Batch
    runs are left out unless --include-batch.

    See docs/compare.md for details and examples.
    """
    from guild_core import compare as cmp

    _check_incompatible(table=table, csv=csv, json=as_json)
    if tool is not None:
        if tool == "hiplot":
            raise GuildError("compare tool 'hiplot' is not available yet: it comes with guild view")
        raise GuildError(f"unsupported compare tool '{tool}' (Guild AI's is hiplot)")
    if print_scalars:
        _print_scalars(selected_runs(rf, runs))
        return
    opts = cmp.Options(**kw)
    if not (table or csv or as_json) and _on_terminal():
        _interactive(rf, runs, opts)
        return
    data = cmp.build(selected_runs(rf, runs), opts)
    if csv:
        _write_csv(csv, cmp.csv_text(data, opts.skip_unchanged), len(data.runs))
    elif as_json:
        import json

        click.echo(json.dumps(cmp.json_data(data, opts.skip_unchanged)))
    else:
        from .common import printable

        for line in cmp.table_lines(data, opts.skip_unchanged, escape=printable):
            click.echo(line)


def _on_terminal() -> bool:
    """Whether the interactive table can be shown: standard output and
    input are a terminal (keys are read from standard input), and one
    that can draw (not TERM=dumb, as in an editor's shell)."""
    import os
    import sys

    if os.environ.get("TERM", "dumb") == "dumb":
        return False
    try:
        return sys.stdout.isatty() and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _interactive(rf, runs, opts) -> None:
    from guild_core import compare as cmp

    from . import compare_tui
    from .common import printable

    def load():
        # Selected again on each refresh, as Guild AI does.
        table = cmp.build(selected_runs(rf, runs), opts)
        return cmp.shown(table, opts.skip_unchanged, escape=printable)

    status = compare_tui.show(load)
    if status:
        click.get_current_context().exit(status)


def _check_incompatible(**opts):
    given = [name for name, val in opts.items() if val]
    if len(given) > 1:
        raise GuildError(f"--{given[0]} and --{given[1]} cannot both be specified")


def _write_csv(path: str, text: str, nrows: int) -> None:
    if path == "-":
        # color=True: click would otherwise strip escape sequences from
        # the values when stdout is not a terminal; CSV keeps them.
        click.echo(text, nl=False, color=True)
        return
    import os

    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", newline="") as f:
            f.write(text)
    except OSError as e:
        raise GuildError(f"error writing {path}: {e.strerror or e}") from None
    click.echo(f"Wrote {nrows} row(s) to {path}", err=True)


def _print_scalars(runs_) -> None:
    from guild_core.runvalues import RunValues

    from .common import printable

    for run in runs_:
        click.echo(f"[{run.short_id}] {printable(run.op_name)}")
        for tag, summ in sorted(RunValues(run).scalars().items()):
            val, step = summ.last
            click.echo(f"  {printable(tag)}: {val:.6f} (step {step})")
