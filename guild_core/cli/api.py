"""``guild api``: runs, the compare table and operations as JSON, in
Guild AI 0.9's shapes. The data comes from `guild_core.api`, the Python
API; this module only parses options and prints."""

from __future__ import annotations

import json

import click

from .runselect import filter_options


def format_option(fn):
    return click.option("-f", "--format", "fmt", is_flag=True, help="Format the JSON output.")(fn)


def _out(data, fmt: bool) -> None:
    # As Guild AI: compact, or indented with keys sorted.
    text = json.dumps(data, indent=2, sort_keys=True) if fmt else json.dumps(data)
    click.echo(text)


@click.group()
def api():
    """CLI based API calls: JSON for other programs.

    The same data in Python: 'from guild_core import api' (docs/api.md).
    """


@api.command("runs")
@click.argument("runs", metavar="[RUN...]", nargs=-1)
@format_option
@click.option(
    "-v", "--api-version", type=click.Choice(["1", "2"]), default="2", show_default=True,
    help="API version.",
)
@click.option("-d", "--deleted", is_flag=True, help="Show deleted runs.")
@click.option("--include-batch", is_flag=True, help="Include batch runs.")
@filter_options
def runs_(runs, fmt, api_version, deleted, include_batch, rf):
    """Show runs as JSON.

    Version 2 (the default) gives times as microseconds since the
    epoch, tags as a list and scalar fields in camel case; version 1
    gives times as text, a 'time' field, tags joined by commas, snake
    case scalar fields and file types."""
    from guild_core import api as apilib

    found = apilib.selected(rf=rf, runs=runs, deleted=deleted, include_batch=include_batch)
    _out(apilib.runs_data(found, int(api_version)), fmt)


@api.command("compare")
@click.argument("runs", metavar="[RUN...]", nargs=-1)
@format_option
@click.option("--include-batch", is_flag=True, help="Include batch runs.")
@filter_options
def compare(runs, fmt, include_batch, rf):
    """Show the comparison matrix as JSON.

    A list of rows: the header first, then one row per run with the
    values of 'guild compare' unformatted, the full run id in column
    'id'. No runs, an empty list."""
    from guild_core import api as apilib

    _out(apilib.compare_data(rf=rf, runs=runs, include_batch=include_batch), fmt)


@api.command("ops")
@format_option
def ops(fmt):
    """Show the project's operations as JSON."""
    from guild_core import api as apilib

    _out(apilib.ops_data(), fmt)


@api.command("help-op")
@click.argument("opspec", metavar="OPSPEC")
@format_option
def help_op(opspec, fmt):
    """Show an operation and its flags as JSON.

    OPSPEC is an operation of the project's guild.yml or a script, as
    'guild run' takes it."""
    from guild_core import api as apilib

    _out(apilib.help_op_data(opspec), fmt)
