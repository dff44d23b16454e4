"""``guild export`` and ``guild import``: runs to and from archive
directories and zip files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from guild_core import archive, home, store
from guild_core.errors import GuildError

from .runselect import confirm_runs, filter_options, report_outcome, selected_runs


def _warn(msg: str) -> None:
    click.echo(f"WARNING: {msg}", err=True)


@click.command("export")
@click.argument("location")
@click.argument("runs", nargs=-1)
@click.option("-m", "--move", is_flag=True, help="Move the runs rather than copy them.")
@click.option("-r", "--copy-resources", is_flag=True, help="Copy the files the runs link to (their resources) into each exported run.")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt.")
@filter_options
def export(location, runs, move, copy_resources, yes, rf):
    """Export runs to LOCATION, a directory or a .zip file (default:
    all filtered runs, after asking).

    Runs already in LOCATION are skipped with a warning, never
    overwritten. `guild runs -A LOCATION` lists an archive and `guild
    import` brings its runs back."""
    if move and copy_resources:
        raise GuildError("--copy-resources cannot be used with --move (a moved run keeps its links)")
    dest = Path(location).expanduser()
    if not archive.is_zip(dest) and dest.exists() and not dest.is_dir():
        raise GuildError(f"'{location}' is not a directory")
    selected = store.exportable(selected_runs(rf, runs), move, "running" in rf.status_in, _warn)
    if not selected:
        click.echo("No runs to export.", err=True)
        return
    verb = "move" if move else "copy"
    if copy_resources and not yes:
        _warn("--copy-resources copies the resources of every run: each exported run holds its own copy")
    confirm_runs(selected, f"You are about to {verb} the following runs to '{location}':", "Continue?", yes)
    if archive.is_zip(dest):
        out = store.export_zip(selected, dest, move, _warn, copy_resources)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        out = store.transfer(selected, dest.absolute(), move, _warn, copy_resources)
    report_outcome(out)
    click.echo(f"Exported {len(out.done)} run(s) to {location}", err=True)


@click.command("import")
@click.argument("archive_path", metavar="ARCHIVE")
@click.argument("runs", nargs=-1)
@click.option("-m", "--move", is_flag=True, help="Move the runs rather than copy them.")
@click.option("--copy-resources", is_flag=True, help="Copy the files the runs link to (their resources) into each imported run.")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt.")
@filter_options
def import_(archive_path, runs, move, copy_resources, yes, rf):
    """Import runs from ARCHIVE, a directory or a .zip file (default:
    all filtered runs, after asking).

    Runs whose ids are already in the home are skipped with a warning,
    never overwritten. An archive holding entries that would land
    outside their run directory (absolute paths, `..`, links pointing
    out) is refused, naming the entry, and nothing is imported."""
    if move and copy_resources:
        raise GuildError("--copy-resources cannot be used with --move (a moved run keeps its links)")
    src = Path(archive_path).expanduser()
    if not src.exists():
        raise GuildError(f"archive '{archive_path}' does not exist")
    if archive.is_zip(src):
        if move:
            raise GuildError("'--move' cannot be used with zip archives")
        with extracted(src) as root:
            _import_from(root, archive_path, runs, False, yes, rf, extracted_zip=True, copy_resources=copy_resources)
        return
    if not src.is_dir():
        raise GuildError(f"invalid archive {archive_path} - expected a directory or a zip file")
    _import_from(src.absolute(), archive_path, runs, move, yes, rf, copy_resources=copy_resources)


def _import_from(root: Path, name: str, runs, move: bool, yes: bool, rf, extracted_zip: bool = False, copy_resources: bool = False) -> None:
    selected = selected_runs(rf, runs, archive=root)
    if not selected:
        click.echo("No runs to import.", err=True)
        return
    for run in selected:
        store.check_links(run)
    verb = "move" if move else "copy"
    confirm_runs(selected, f"You are about to import ({verb}) the following runs from '{name}':", "Continue?", yes)
    # Runs extracted from a zip are this command's own: they move into
    # place with a rename.
    # Links are followed where they point from the archive: a zip's
    # runs are copied (not renamed) to take their resources along.
    out = store.transfer(selected, home.runs_dir(), (move or extracted_zip) and not copy_resources, _warn, copy_resources)
    report_outcome(out)
    click.echo(f"Imported {len(out.done)} run(s) from {name}", err=True)


class extracted:
    """A zip archive extracted to a hidden directory under the home's
    runs (so runs move into place with a rename), removed afterwards."""

    def __init__(self, path: Path):
        self.path = path
        self.dir: Path | None = None

    def __enter__(self) -> Path:
        runs_dir = home.runs_dir()
        runs_dir.mkdir(parents=True, exist_ok=True)
        # Hidden, and named for this process: if it is killed, a later
        # command removes what it extracted (store.sweep).
        self.dir = runs_dir / home.hidden_name(home.TMP_PREFIX, "import-" + os.urandom(4).hex())
        self.dir.mkdir()
        try:
            archive.extract(self.path, self.dir)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        return self.dir

    def __exit__(self, *exc) -> None:
        assert self.dir is not None
        shutil.rmtree(self.dir, ignore_errors=True)
