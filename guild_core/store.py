"""Moving, copying and removing whole runs: delete, restore, purge,
export and import.

The unit of work is a rename of a whole run directory. A run is copied
or extracted under a hidden name (``.tmp-...``) that no listing reads,
and renamed into place only when complete; a run is removed by renaming
it to a hidden ``.deleting-...`` name first. So a guild killed at any
moment leaves every run whole in its old place or whole in its new one,
never half-moved and never listed twice. Leftover hidden directories
hold nothing a listing shows; `sweep` removes them.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from . import home
from .errors import GuildError
from .run import Run

_TMP_PREFIX = ".tmp-"
_DELETING_PREFIX = ".deleting-"


class RunExists(GuildError):
    """The destination already holds a run with this id."""


def _hidden(root: Path, prefix: str, run_id: str) -> Path:
    return root / f"{prefix}{run_id}-{uuid.uuid4().hex[:8]}"


def remove(path: Path) -> None:
    """Remove a run directory: hide it with one rename, then delete."""
    hidden = _hidden(path.parent, _DELETING_PREFIX, path.name)
    os.rename(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def sweep(root: Path) -> None:
    """Finish removals a killed guild left behind under `root`."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if name.startswith(_DELETING_PREFIX):
            shutil.rmtree(root / name, ignore_errors=True)


def move(run: Run, dest_root: Path) -> Run:
    """Move a run under `dest_root`, keeping its id. Never overwrites."""
    dest = dest_root / run.id
    if dest.exists():
        raise RunExists(f"run {run.id} already exists in {dest_root}")
    dest_root.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(run.path, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        # Another file system: copy whole, then remove the original.
        copy(run, dest_root)
        remove(run.path)
    return Run(run.id, dest)


def copy(run: Run, dest_root: Path, follow_links: bool = False) -> Run:
    """Copy a run under `dest_root`, keeping its id. Never overwrites."""
    dest = dest_root / run.id
    if dest.exists():
        raise RunExists(f"run {run.id} already exists in {dest_root}")
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = _hidden(dest_root, _TMP_PREFIX, run.id)
    try:
        shutil.copytree(run.path, tmp, symlinks=not follow_links)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Run(run.id, dest)


# -- the home's runs and trash -------------------------------------------


def delete(runs: list[Run], permanent: bool = False) -> int:
    """Move runs to the trash (or remove them); the count done."""
    trash = home.trash_runs_dir()
    if not permanent:
        _check_free(runs, trash, "is already deleted; purge it first")
    done = 0
    for run in runs:
        if permanent:
            remove(run.path)
        else:
            move(run, trash)
        done += 1
    sweep(home.runs_dir())
    return done


def restore(runs: list[Run]) -> int:
    _check_free(runs, home.runs_dir(), "already exists; it is not restored")
    for run in runs:
        move(run, home.runs_dir())
    return len(runs)


def purge(runs: list[Run]) -> int:
    for run in runs:
        remove(run.path)
    sweep(home.trash_runs_dir())
    return len(runs)


def _check_free(runs: list[Run], root: Path, why: str) -> None:
    # Checked for all runs before any moves, so a clash changes nothing.
    for run in runs:
        if (root / run.id).exists():
            raise RunExists(f"run {run.id} {why}")


# -- archives ------------------------------------------------------------


def transfer(
    runs: list[Run],
    dest_root: Path,
    move_runs: bool,
    warn: Callable[[str], None],
) -> list[Run]:
    """Copy or move runs under `dest_root`, skipping (with a warning)
    ids already there. Returns the runs transferred."""
    done = []
    for run in runs:
        if (dest_root / run.id).exists():
            warn(f"{run.id} exists, skipping")
            continue
        if move_runs:
            move(run, dest_root)
        else:
            copy(run, dest_root)
        done.append(run)
    return done


def check_links(run: Run) -> None:
    """Refuse a run whose symbolic links point outside its directory
    (other than into a sibling run, as batches and summaries link): the
    archive would reach into the importing system."""
    from .archive import link_stays_in

    root = str(run.path)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        link_dir = run.id if rel_dir == "." else "/".join([run.id, *rel_dir.split(os.sep)])
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            target = os.readlink(path)
            if not link_stays_in(run.id, link_dir, target.replace(os.sep, "/")):
                rel = os.path.relpath(path, root)
                raise GuildError(
                    f"refusing to import run {run.id}: '{rel}' links outside "
                    f"the run directory (to '{target}')"
                )
