"""``guild merge``: copy a run's files into a project directory."""

from __future__ import annotations

import os

import click

from guild_core.errors import GuildError

from .common import confirm, printable
from .runselect import filter_options, format_preview, selected_run

# Guild AI's exit status for a declined prompt.
ABORTED = 4


@click.command()
@click.argument("run", required=False)
@filter_options(status_chars=False)
@click.option("-t", "--target-dir", metavar="DIR", help="Copy into DIR (default: the run's project, which must be the current directory).")
@click.option("-s", "--sourcecode", is_flag=True, help="Copy only the run's source code (implies --skip-deps; not with --skip-sourcecode).")
@click.option("-a", "--all", "all_", is_flag=True, help="Copy the files the run generated too (with --skip-sourcecode, --skip-deps and --exclude: all but those).")
@click.option("-S", "--skip-sourcecode", is_flag=True, help="Do not copy the run's source code.")
@click.option("-D", "--skip-deps", is_flag=True, help="Do not copy dependencies from the project.")
@click.option("-x", "--exclude", metavar="PATTERN", multiple=True, help="Do not copy files matching PATTERN (repeatable).")
@click.option("--no-summary", is_flag=True, help="Write no run summary (the default).")
@click.option("--summary-name", metavar="NAME", help="Write a run summary (JSON) to NAME; '${run_id}' in NAME is the run id.")
@click.option("-p", "--preview", is_flag=True, help="Show what would be copied and skipped, and copy nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt before copying.")
@click.option("--replace", is_flag=True, help="Replace files that differ (not with --no-replace).")
@click.option("--no-replace", is_flag=True, help="Replace no file, even one git could restore (not with --replace).")
def merge(run, rf, target_dir, sourcecode, all_, skip_sourcecode, skip_deps, exclude, no_summary, summary_name,
          preview, yes, replace, no_replace):
    """Copy a run's files into a project directory (default: the
    latest run, into the current directory).

    RUN is a run id, a unique id prefix or a 1-based index in the list
    of filtered runs (`guild runs list`); without it, the newest
    filtered run. The filter options narrow the runs first, as for
    every command that takes runs: an expression (-F 'loss < 0.1'),
    operation, label, tag, comment, marked or unmarked, start time
    (-Fs 'last hour'), source code digest, and status (-Sr -Sc -Se -St
    -Sp -Ss; bare -S is --skip-sourcecode here).

    Without --target-dir the run must come from the current directory:
    a run of another project, or one that comes from no project (a
    batch), is refused; --target-dir DIR copies into DIR instead
    (created if missing).

    Copied by default: the run's source code, back to its paths in the
    project, and the dependencies it took from the project, back to
    where they came from. --all adds what the run generated, at its
    paths in the run. --sourcecode copies source code only;
    --skip-sourcecode and --skip-deps leave those out; --exclude
    PATTERN leaves out matching paths (or directories). A file whose
    copy in the target is the same is skipped.

    A file that would replace a different one stops the merge before
    anything is copied, unless --replace; in a git work tree, replacing
    files git tracks and that have no unstaged changes is allowed (git
    can restore them), unless --no-replace. guild shows the files and
    asks before copying (-y does not ask); --preview shows what would
    be copied and why each other file is skipped, and copies nothing.

    --summary-name NAME also writes a JSON summary of the run (its id,
    operation, flags, last scalars and the files copied) to NAME in
    the target directory; --no-summary writes none, which is the
    default."""
    from guild_core import merge as mergelib

    if replace and no_replace:
        raise GuildError("--replace and --no-replace cannot both be used")
    if sourcecode and skip_sourcecode:
        raise GuildError("--sourcecode and --skip-sourcecode cannot both be used")
    if no_summary and summary_name:
        raise GuildError("--no-summary and --summary-name cannot both be used")
    if sourcecode:
        skip_deps = True
    target = selected_run(rf, run)
    where = target_dir if target_dir is not None else _project_dir(target)
    if os.path.lexists(where) and not os.path.isdir(where):
        raise GuildError(f"'{printable(where)}' is not a directory")
    p = mergelib.plan(
        target, where, copy_all=all_ and not sourcecode, skip_sourcecode=skip_sourcecode,
        skip_deps=skip_deps, exclude=exclude,
    )
    if summary_name:
        name = summary_name.replace("${run_id}", target.id)
        norm = os.path.normpath(name)
        if os.path.isabs(name) or norm == "." or norm.split(os.sep)[0] == "..":
            raise GuildError(f"summary name '{printable(summary_name)}' must be a path inside the target directory")
        p.extra[norm.replace(os.sep, "/")] = mergelib.summary(p)
    mergelib.check_targets(p)
    mergelib.check_replace(p, replace=replace, no_replace=no_replace)
    if not p.to_copy and not p.extra and not preview:
        click.echo("Nothing to copy for the following run:", err=True)
        _echo_run(target)
        click.echo("Try 'guild merge --preview' for a list of skipped files.", err=True)
        return
    if preview or not yes:
        _preview(p, mergelib, preview)
        if preview:
            return
        if not confirm("Continue?", default=False):
            raise SystemExit(ABORTED)
    mergelib.apply(p, on_copy=lambda rel: click.echo(f"Copying {printable(rel)}", err=True))


def _project_dir(run) -> str:
    """The current directory, when the run comes from it."""
    opref = run.opref
    project = run.project_dir if opref is not None and opref.type in ("guildfile", "script") else None
    if not project:
        raise GuildError(
            f"run {run.id} does not come from a project: it cannot be merged into the current directory",
            "Use --target-dir DIR to say where to copy its files.",
        )
    cwd = os.getcwd()
    if not os.path.isdir(project) or not os.path.samefile(project, cwd):
        raise GuildError(
            f"run {run.id} comes from a different project ({printable(project)}): it cannot be merged into "
            "the current directory",
            "Use '--target-dir .' to copy its files here anyway.",
        )
    return cwd


def _echo_run(run) -> None:
    for line in format_preview([run]):
        click.echo(line, err=True)


def _preview(p, mergelib, full: bool) -> None:
    where = mergelib.where(p)
    if full:
        click.echo(f"Merge will copy files from the following run to {where}:", err=True)
    else:
        click.echo(f"You are about to copy files from the following run to {where}:", err=True)
    _echo_run(p.run)
    click.echo("Files:", err=True)
    paths = mergelib.targets(p)
    if not paths:
        click.echo("  nothing to copy", err=True)
    for path in paths:
        click.echo(f"  {printable(path)}", err=True)
    if not p.to_skip:
        return
    if full:
        click.echo("Skipped:", err=True)
        width = max(len(printable(sf.path)) for sf in p.to_skip)
        for sf in p.to_skip:
            click.echo(f"  {printable(sf.path).ljust(width)}  {mergelib.REASONS[sf.reason]}", err=True)
    else:
        n = len(p.to_skip)
        what = "1 file" if n == 1 else f"{n} files"
        click.echo(f"{what} will not be copied (use --preview to show the full list)", err=True)
