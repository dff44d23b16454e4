"""``guild view``: the runs in a local web application (the server and
its JSON API: guild_core/view, docs/view.md)."""

from __future__ import annotations

import signal
import sys

import click

from guild_core.errors import GuildError

from .runselect import filter_options


@click.command(context_settings={"help_option_names": ["--help"]})
@click.argument("runs", metavar="[RUN...]", nargs=-1)
@click.option("-h", "--host", metavar="HOST", default="127.0.0.1", show_default=True,
              help="Name of host interface to listen on.")
@click.option("-p", "--port", metavar="PORT", type=click.IntRange(0, 65535), default=0,
              help="Port to listen on (default: a free port).")
@click.option("--include-batch", is_flag=True, help="Include batch runs in the compare table.")
@click.option("-n", "--no-open", is_flag=True, help="Don't open Guild View in a browser.")
@click.option("--logging", is_flag=True, help="Log requests.")
@filter_options
def view(runs, host, port, include_batch, no_open, logging, rf):
    """Visualize runs in a local web application.

    Serves the runs and a JSON API over them (docs/view.md) on HOST
    (127.0.0.1 unless told otherwise: other machines cannot reach it)
    and PORT, and opens it in a browser unless --no-open. Ctrl-C stops
    it.

    The filter options and RUN arguments choose the runs it shows, as
    for every command that takes runs; the page narrows them further.
    Requests that change runs (label, tags, mark, delete, restore) need
    the token the served page holds."""
    from guild_core import select
    from guild_core.view import data as datalib
    from guild_core.view import server as serverlib

    from .runselect import extensions

    # A bad filter or time range is one line now, not an error on every
    # request.
    select.filter_runs([], rf, extensions() if rf.expr else None)
    data = datalib.Data(rf, runs, include_batch)
    try:
        server = serverlib.ViewServer(host, port, data, log_requests=logging)
    except OSError as e:
        raise GuildError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    if not no_open:
        _open_browser(server.url)
    click.echo(f"Running Guild View at {server.url} (Type Ctrl-C to quit)")
    sys.stdout.flush()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    click.echo("")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        if webbrowser.open(url):
            return
    except Exception:  # noqa: BLE001  no browser is no error
        pass
    click.echo("Unable to open browser window for Guild View")
