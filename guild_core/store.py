"""Moving, copying and removing whole runs: delete, restore, purge,
export and import.

The unit of work is a rename of a whole run directory. A run is copied
or extracted under a hidden name that no listing reads, and renamed into
place only when complete; a run is removed by renaming it to a hidden
name first; a run leaving for another file system or a zip archive is
hidden beside a note of where it is going until it has arrived. So a
guild killed at any moment leaves every run whole in exactly one place,
never half-moved and never listed twice. The hidden names record the
process doing the work (see `home.py`); `sweep` finishes or undoes what a
dead process left, and leaves alone what a live one is still doing.

A run another command deleted or moved while this one worked raises
`RunGone`; the batch operations here skip it and say so, rather than
fail half way.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import faults, home, procs, util
from .errors import GuildError, RunGone
from .home import DELETING_PREFIX, MOVING_PREFIX, TMP_PREFIX
from .run import Run

# Markers of a run's processes on this machine, in this home: a copy
# elsewhere must not claim them (a copied LOCK would make the copy read as
# running, and `guild stop` there would signal this run).
LOCAL_MARKERS = ("LOCK", "LOCK.proc", ".reserve")

# A hidden name written by an older guild records no process: it is
# taken for a leftover once nothing has touched it for this long.
_UNOWNED_STALE_SECS = 3600


class RunExists(GuildError):
    """The destination already holds a run with this id."""


@dataclass
class Outcome:
    """What a batch operation did: `done` runs, runs `gone` before their
    turn (another command took them), runs `changed` since they were
    selected and so left alone."""

    done: list[Run] = field(default_factory=list)
    gone: list[Run] = field(default_factory=list)
    changed: list[Run] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _hidden(root: Path, prefix: str, tag: str) -> Path:
    return root / home.hidden_name(prefix, tag)


def _rename_run(src: Path, dest: Path, run_id: str) -> None:
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        if not os.path.lexists(src):
            raise RunGone(run_id, src) from None
        raise


def remove(path: Path) -> None:
    """Remove a run directory: hide it with one rename, then delete."""
    hidden = _hidden(path.parent, DELETING_PREFIX, path.name)
    _rename_run(path, hidden, path.name)
    faults.point("store.remove.hidden")
    _rmtree(hidden)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def move(run: Run, dest_root: Path) -> Run:
    """Move a run under `dest_root`, keeping its id. Never overwrites."""
    dest = dest_root / run.id
    if os.path.lexists(dest):
        raise RunExists(f"run {run.id} already exists in {dest_root}")
    dest_root.mkdir(parents=True, exist_ok=True)
    try:
        _rename_run(run.path, dest, run.id)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        # Another file system: copy whole, then remove the original,
        # with the original hidden meanwhile so it is in one place.
        departure = Departure(run, f"dir:{dest_root.absolute()}")
        try:
            copy(departure.run, dest_root)
        except BaseException:
            departure.undo()
            raise
        departure.done()
    faults.point("store.move.renamed")
    return Run(run.id, dest)


def _dangling(directory: str, names: list[str]) -> list[str]:
    """Links to nothing, which a copy that follows links skips.
    (copytree's own ignore_dangling_symlinks tests a relative link from
    the current directory, not from the link's.)"""
    return [
        n for n in names
        if os.path.islink(os.path.join(directory, n)) and not os.path.exists(os.path.join(directory, n))
    ]


def copy(run: Run, dest_root: Path, follow_links: bool = False) -> Run:
    """Copy a run under `dest_root`, keeping its id, without the markers
    of its processes. Never overwrites."""
    dest = dest_root / run.id
    if os.path.lexists(dest):
        raise RunExists(f"run {run.id} already exists in {dest_root}")
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = _hidden(dest_root, TMP_PREFIX, run.id)
    try:
        try:
            shutil.copytree(run.path, tmp, symlinks=not follow_links, ignore=_dangling if follow_links else None)
        except (FileNotFoundError, shutil.Error):
            if not run.path.is_dir():
                raise RunGone(run.id, run.path) from None
            raise
        faults.point("store.copy.copied")
        for name in LOCAL_MARKERS:
            (tmp / ".guild" / name).unlink(missing_ok=True)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Run(run.id, dest)


class Departure:
    """A run on its way somewhere no rename reaches (another file system,
    a zip archive): hidden, beside a note of its destination, until it
    has arrived (`done`) or the move is called off (`undo`). A guild
    killed in between leaves both; `sweep` then removes the run if it
    arrived, and puts it back if not."""

    def __init__(self, run: Run, dest: str):
        self.origin = run.path
        hidden = _hidden(run.path.parent, MOVING_PREFIX, run.id)
        self.note = hidden.with_name(hidden.name + ".dest")
        util.atomic_write(self.note, dest)
        try:
            _rename_run(run.path, hidden, run.id)
        except BaseException:
            self.note.unlink(missing_ok=True)
            raise
        faults.point("store.depart.hidden")
        self.run = Run(run.id, hidden)

    def done(self) -> None:
        faults.point("store.depart.arrived")
        _rmtree(self.run.path)
        self.note.unlink(missing_ok=True)

    def undo(self) -> None:
        os.rename(self.run.path, self.origin)
        self.note.unlink(missing_ok=True)


# -- leftovers -------------------------------------------------------------


@dataclass
class Leftover:
    path: Path
    owner_alive: bool


def leftovers(root: Path) -> list[Leftover]:
    """Hidden work under `root`, finished or not (for `guild check`)."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    found = []
    for name in names:
        if name.startswith(home.LEFTOVER_PREFIXES):
            _tag, owner = home.hidden_owner(name)
            found.append(Leftover(root / name, procs.alive(owner)))
    return found


def sweep(root: Path, names: list[str] | None = None) -> list[str]:
    """Finish or undo what killed guild processes left under `root` (of
    `names`, hidden names found there; default: all). Work whose process
    still lives is left alone. Returns the ids of runs put back."""
    if names is None:
        try:
            names = [n for n in os.listdir(root) if n.startswith(home.LEFTOVER_PREFIXES)]
        except OSError:
            return []
    restored: list[str] = []
    cleaned = 0
    for name in sorted(names, key=lambda n: n.endswith(".dest")):
        path = root / name
        tag, owner = home.hidden_owner(name)
        if not _abandoned(path, owner):
            continue
        try:
            if name.startswith(MOVING_PREFIX):
                if name.endswith(".dest"):
                    # The note of a move whose run is settled or was never hidden.
                    if not os.path.lexists(path.with_name(name[: -len(".dest")])):
                        path.unlink(missing_ok=True)
                    continue
                restored += _settle_departure(root, path, tag)
            else:
                _rmtree(path)
        except OSError:
            continue  # another command got there first
        cleaned += 1
    if cleaned:
        _report(root, cleaned, restored)
    return restored


def _abandoned(path: Path, owner) -> bool:
    if owner is not None:
        return not procs.alive(owner)
    try:
        return time.time() - os.lstat(path).st_mtime > _UNOWNED_STALE_SECS
    except OSError:
        return False


def _settle_departure(root: Path, hidden: Path, run_id: str) -> list[str]:
    note = hidden.with_name(hidden.name + ".dest")
    try:
        dest = note.read_text()
    except OSError:
        dest = ""
    restored = []
    if dest and _arrived(dest, run_id):
        _rmtree(hidden)
    elif not os.path.lexists(root / run_id):
        os.rename(hidden, root / run_id)
        restored.append(run_id)
    note.unlink(missing_ok=True)
    return restored


def _arrived(dest: str, run_id: str) -> bool:
    kind, _, where = dest.partition(":")
    if kind == "dir":
        return os.path.exists(os.path.join(where, run_id, ".guild", "opref"))
    if kind == "zip":
        from . import archive

        try:
            return run_id in archive.run_ids(Path(where))
        except GuildError:
            return False
    return False


def _report(root: Path, cleaned: int, restored: list[str]) -> None:
    import sys

    what = f"{cleaned} leftover{'s' if cleaned != 1 else ''} of an interrupted guild command"
    back = f"; put back run(s) {', '.join(r[:8] for r in restored)}" if restored else ""
    sys.stderr.write(f"Cleaned up {what} in {util.format_dir(str(root))}{back}\n")


# -- the home's runs and trash -------------------------------------------


def _each(runs: list[Run], act: Callable[[Run], None], still: Callable[[Run], bool] | None = None) -> Outcome:
    """`act(run)` for each run; runs gone meanwhile, or no longer what
    was selected (`still`, given a fresh view), are left out."""
    out = Outcome()
    for run in runs:
        if not os.path.isdir(run.path):
            out.gone.append(run)
            continue
        if still is not None and not still(Run(run.id, run.path)):
            out.changed.append(run)
            continue
        try:
            act(run)
        except RunGone:
            out.gone.append(run)
            continue
        out.done.append(run)
    return out


def delete(runs: list[Run], permanent: bool = False, still: Callable[[Run], bool] | None = None) -> Outcome:
    """Move runs to the trash (or remove them). `still(run)`, given a
    fresh view of each run just before it goes, says whether it is still
    what was selected: a run that changed meanwhile (it finished, it
    started) is left alone."""
    trash = home.trash_runs_dir()
    if permanent:
        return _each(runs, lambda run: remove(run.path), still)
    _check_free(runs, trash, "is already deleted; purge it first")
    return _each(runs, lambda run: move(run, trash), still)


def restore(runs: list[Run]) -> Outcome:
    _check_free(runs, home.runs_dir(), "already exists; it is not restored")
    return _each(runs, lambda run: move(run, home.runs_dir()))


def purge(runs: list[Run]) -> Outcome:
    return _each(runs, lambda run: remove(run.path))


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
    follow_links: bool = False,
) -> Outcome:
    """Copy or move runs under `dest_root`, skipping (with a warning)
    ids already there; a copy with `follow_links` (``--copy-resources``)
    holds the files its links point to. Running runs are never moved
    (the guild process recording them would lose them)."""
    out = Outcome()
    for run in runs:
        if os.path.lexists(dest_root / run.id):
            warn(f"{run.id} exists, skipping")
            out.skipped.append(run.id)
            continue
        try:
            if move_runs:
                move(run, dest_root)
            else:
                copy(run, dest_root, follow_links)
        except RunGone:
            out.gone.append(run)
            continue
        out.done.append(run)
    return out


def exportable(runs: list[Run], move_runs: bool, running_ok: bool, warn: Callable[[str], None]) -> list[Run]:
    """The runs an export may take. A running run is copied only when
    asked for (`running_ok`: the copy is a snapshot of unfinished work,
    without its LOCK), and never moved: the guild process recording it
    would lose it."""
    kept = []
    for run in runs:
        if (move_runs or not running_ok) and run.status == "running":
            why = "it cannot be moved" if move_runs else "use --running to copy it"
            warn(f"{run.id} is running, skipping ({why})")
        else:
            kept.append(run)
    return kept


def export_zip(runs: list[Run], path: Path, move_runs: bool, warn: Callable[[str], None], follow_links: bool = False) -> Outcome:
    """Add runs to the zip archive at `path`, skipping (with a warning)
    ids already in it; with `move_runs`, each run leaves the home once it
    is in the archive, and only then (see `Departure`)."""
    from . import archive

    existing = archive.run_ids(path) if path.exists() else set()
    out = Outcome()
    todo = []
    for run in runs:
        if run.id in existing:
            warn(f"{run.id} exists, skipping")
            out.skipped.append(run.id)
        elif not run.path.is_dir():
            out.gone.append(run)
        else:
            todo.append(run)
    if not move_runs:
        archive.write(path, todo, follow_links)
        out.done = todo
        return out
    departures: list[Departure] = []
    try:
        for run in todo:
            try:
                departures.append(Departure(run, f"zip:{path.absolute()}"))
            except RunGone:
                out.gone.append(run)
        archive.write(path, [d.run for d in departures])
    except BaseException:
        for d in departures:
            d.undo()
        raise
    for d in departures:
        d.done()
        out.done.append(Run(d.run.id, d.origin))
    return out


def check_links(run: Run) -> None:
    """Refuse a run that is itself a link, or whose symbolic links point
    outside its directory (other than into a sibling run, as batches and
    summaries link): the archive would reach into the importing system."""
    from .archive import link_stays_in

    if run.path.is_symlink():
        raise GuildError(
            f"refusing to import run {run.id}: the run directory is a symbolic "
            f"link (to '{os.readlink(run.path)}')"
        )
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
