"""The run-selection options every run-taking command shares.

``@filter_options`` adds the filter and status options and hands the
command one ``rf: RunFilter``; `selected_runs` and `selected_run` apply
it and the RUN arguments through `guild_core.select`, so every command
selects runs the same way.
"""

from __future__ import annotations

import contextvars
import functools
from pathlib import Path

import click

from guild_core import select
from guild_core.run import Run

_STATUS_OPTS = [
    ("r", "running", "Filter runs that are still running."),
    ("c", "completed", "Filter completed runs."),
    ("e", "error", "Filter runs that exited with an error."),
    ("t", "terminated", "Filter runs terminated by the user."),
    ("p", "pending", "Filter pending runs."),
    ("s", "staged", "Filter staged runs."),
]

_FILTER_PARAMS = (
    "filter_expr",
    "filter_ops",
    "filter_labels",
    "filter_unlabeled",
    "filter_tags",
    "filter_comments",
    "filter_marked",
    "filter_unmarked",
    "filter_started",
    "filter_digest",
    "status_chars",
) + tuple(f"status_{name}" for _, name, _ in _STATUS_OPTS)


def _check_status_chars(ctx, param, value):
    if value:
        for char in value:
            if char not in "rcetps":
                raise click.BadParameter(
                    f"unrecognized status char '{char}' (use any of r c e t p s)",
                    ctx=ctx,
                    param_hint="'-S'",
                )
    return value


def filter_options(fn=None, *, status_chars: bool = True, remote: bool = False):
    """Add -F/-S options; the command receives them as ``rf``. Without
    `status_chars`, bare ``-S`` is left to the command (``guild merge``
    has Guild AI's ``-S/--skip-sourcecode``; ``-Sc`` and the other
    status options stay). With `remote`, ``-r/--remote NAME`` too: the
    command's runs are then the remote's (`current_remote`); "long" for
    ``--remote`` alone, "meta" for a command that changes runs'
    attributes, which are then sent to the remote."""
    if fn is None:
        return functools.partial(filter_options, status_chars=status_chars, remote=remote)
    opts = [
        click.option("-F", "--filter", "filter_expr", metavar="EXPR", help="Filter runs using a filter expression."),
        click.option("-Fo", "--operation", "filter_ops", metavar="VAL", multiple=True, help="Filter runs with operations matching VAL."),
        click.option("-Fl", "--label", "filter_labels", metavar="VAL", multiple=True, help="Filter runs with labels matching VAL ('-' for unlabeled)."),
        click.option("-Fu", "--unlabeled", "filter_unlabeled", is_flag=True, help="Filter runs without labels."),
        click.option("-Ft", "--tag", "filter_tags", metavar="TAG", multiple=True, help="Filter runs with TAG."),
        click.option("-Fc", "--comment", "filter_comments", metavar="VAL", multiple=True, help="Filter runs with comments matching VAL."),
        click.option("-Fm", "--marked", "filter_marked", is_flag=True, help="Filter marked runs."),
        click.option("-Fn", "--unmarked", "filter_unmarked", is_flag=True, help="Filter unmarked runs."),
        click.option("-Fs", "--started", "filter_started", metavar="RANGE", help="Filter runs started within RANGE."),
        click.option("-Fd", "--digest", "filter_digest", metavar="VAL", help="Filter runs with a matching source code digest."),
    ]
    for char, name, help_ in _STATUS_OPTS:
        opts.append(
            click.option(f"-S{char}", f"--{name}/--not-{name}", f"status_{name}", default=None, help=help_)
        )
    if status_chars:
        # `-Set` is `-S et`: several status letters at once.
        opts.append(click.option("-S", "status_chars", hidden=True, callback=_check_status_chars))

    if remote:
        # remote="long": the command has its own -r (compare: --skip-core).
        names = ("--remote",) if remote == "long" else ("-r", "--remote")
        opts.append(click.option(*names, "on_remote", metavar="REMOTE", help="Runs on REMOTE (see 'guild remotes')."))

    @functools.wraps(fn)
    def wrapper(*args, **kw):
        kw["rf"] = run_filter({name: kw.pop(name, None) for name in _FILTER_PARAMS})
        name = kw.pop("on_remote", None) if remote else None
        if not name:
            return fn(*args, **kw)
        return _on_remote(name, fn, args, kw, writes=remote == "meta")

    for opt in reversed(opts):
        wrapper = opt(wrapper)
    return wrapper


# The remote a command's runs come from (-r NAME), while it runs.
_remote: contextvars.ContextVar = contextvars.ContextVar("remote", default=None)


def current_remote():
    """The `Remote` the running command's runs come from, or None."""
    return _remote.get()


def _on_remote(name: str, fn, args, kw, writes: bool):
    """Run a command over a remote's runs (its local mirror); then, for
    a command that `writes` them, send the remote what it changed of
    their attributes (a label, tags, a mark, comments)."""
    from guild_core import remotes

    remote = remotes.get(name)
    token = _remote.set(remote)
    _viewed.clear()
    try:
        result = fn(*args, **kw)
        if writes:
            listed = {**remotes.last_listing(remote, deleted=True), **remotes.last_listing(remote)}
            remotes.push_meta_changes(remote, list(_viewed.values()), listed)
        return result
    finally:
        _remote.reset(token)
        _viewed.clear()


# The mirrored runs a command was given.
_viewed: dict[str, Run] = {}


def run_filter(params: dict) -> select.RunFilter:
    status_in = set()
    status_not_in = set()
    chars = params.get("status_chars") or ""
    for char, name, _ in _STATUS_OPTS:
        val = params.get(f"status_{name}")
        if val is True or char in chars:
            status_in.add(name)
        elif val is False:
            status_not_in.add(name)
    return select.RunFilter(
        expr=params.get("filter_expr"),
        operations=tuple(params.get("filter_ops") or ()),
        labels=tuple(params.get("filter_labels") or ()),
        unlabeled=bool(params.get("filter_unlabeled")),
        tags=tuple(params.get("filter_tags") or ()),
        comments=tuple(params.get("filter_comments") or ()),
        marked=bool(params.get("filter_marked")),
        unmarked=bool(params.get("filter_unmarked")),
        started=params.get("filter_started"),
        digest=params.get("filter_digest"),
        status_in=frozenset(status_in),
        status_not_in=frozenset(status_not_in),
    )


def extensions():
    """The filter language's plugin extensions."""
    from guild_core.filterexpr import Extensions
    from guild_core.registry import Registry

    from .common import plugin_manager

    values, ops = Registry(plugin_manager()).filter_extensions()
    return Extensions(
        {name: entry.value for name, entry in values.items()},
        {name: entry.value for name, entry in ops.items()},
        {name: entry.check for name, entry in ops.items() if entry.check},
    )


def filtered_runs(
    rf: select.RunFilter,
    deleted: bool = False,
    archive: str | Path | None = None,
) -> list[Run]:
    remote = current_remote()
    if remote is not None:
        from guild_core import remotes

        if archive is not None:
            from guild_core.errors import GuildError

            raise GuildError("--remote and --archive cannot both be used")
        runs = remotes.view(remote, deleted)
        for run in runs:
            _viewed.setdefault(run.id, run)
        return select.filter_runs(runs, rf, extensions() if rf.expr else None)
    if archive is not None and str(archive).lower().endswith(".zip"):
        archive = _extracted_zip(Path(archive))
    runs = select.all_runs(deleted=deleted, archive=archive)
    return select.filter_runs(runs, rf, extensions() if rf.expr else None)


def _extracted_zip(path: Path) -> Path:
    """A zip archive's runs, extracted for reading and removed at exit."""
    import atexit
    import shutil
    import tempfile

    from guild_core import archive
    from guild_core.errors import GuildError

    if not path.is_file():
        raise GuildError(f"archive '{path}' does not exist")
    tmp = Path(tempfile.mkdtemp(prefix="guild-archive-"))
    atexit.register(shutil.rmtree, tmp, True)
    archive.extract(path, tmp)
    return tmp


def selected_runs(
    rf: select.RunFilter,
    specs: tuple[str, ...] | list[str],
    deleted: bool = False,
    archive: str | Path | None = None,
) -> list[Run]:
    """Filtered runs, narrowed by RUN specs (none: all of them)."""
    runs = filtered_runs(rf, deleted, archive)
    if not specs:
        return runs
    return select.select(runs, list(specs))


def with_files(run: Run) -> Run:
    """`run`, all its files at hand: a remote's run (-r) is brought into
    its mirror whole first (cat, ls and diff read more than metadata)."""
    remote = current_remote()
    if remote is not None:
        from guild_core import remotes

        remotes.fetch(remote, run, deleted=run.path.parent.parent.name == "trash")
    return run


def selected_remote_runs(remote, rf: select.RunFilter, specs, deleted: bool = False) -> list[Run]:
    """`selected_runs` among `remote`'s runs (its local mirror)."""
    token = _remote.set(remote)
    try:
        return selected_runs(rf, specs, deleted)
    finally:
        _remote.reset(token)


def selected_run(
    rf: select.RunFilter,
    spec: str | None,
    deleted: bool = False,
    archive: str | Path | None = None,
) -> Run:
    """One run: `spec`, or the newest that passes the filter."""
    return select.select_one(filtered_runs(rf, deleted, archive), spec)


def still_selected(rf: select.RunFilter, exempt=frozenset()):
    """``still(run)`` for a fresh view of a selected run just before a
    command changes it: not running (unless in `exempt`, runs the
    command itself stopped), and still passing the filter. A run that
    started, or finished, since it was selected is left alone."""
    ext = extensions() if rf.expr else None

    def still(run: Run) -> bool:
        if run.id in exempt:
            return True
        if run.status == "running":
            return False
        return bool(select.filter_runs([run], rf, ext))

    return still


def report_outcome(out) -> None:
    """One line for each run a race took from a command (`store.Outcome`)."""
    for run in out.gone:
        click.echo(f"WARNING: run {run.short_id} is gone: another command deleted or moved it", err=True)
    for run in out.changed:
        click.echo(
            f"WARNING: run {run.short_id} changed since it was selected "
            f"(now {Run(run.id, run.path).status}); it is left as it is",
            err=True,
        )


def format_preview(runs: list[Run]) -> list[str]:
    """Guild AI's preview rows, indented: ``[id8]  op  started  status  label``."""
    from .runs import format_list

    return ["  " + line for line in format_list(runs, indexed=False)]


def confirm_runs(runs: list[Run], preview: str, prompt: str, yes: bool, default: bool = True) -> None:
    """Show the runs and ask; answering no exits 1 and changes nothing."""
    if yes:
        return
    from .common import confirm

    click.echo(preview, err=True)
    for line in format_preview(runs):
        click.echo(line, err=True)
    if not confirm(prompt.format(count=len(runs)), default):
        raise SystemExit(1)
