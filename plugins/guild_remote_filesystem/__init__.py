"""Built-in plugin ``filesystem``: a remote that is a directory.

``{type: filesystem, root: DIR}`` (or the ad-hoc spec ``/path``): a
directory with the layout of a Guild home, such as an NFS mount or a
shared drive: runs under ``DIR/runs/<id>/``, deleted runs under
``DIR/trash/runs/<id>/``, so a Guild home is itself such a remote.

A run is copied in under a hidden name beside its final one
(``.guild-push-ID-RANDOM``) and renamed into place when complete; a run
already there gets each changed file written under a hidden name and
renamed over the old one, its metadata last. A copy interrupted at any
point leaves at most a hidden directory or file, which nothing lists.

The directory may be shared by several machines (NFS), so a copy in
progress is not recognised by its process, which another machine cannot
see, but by its age: a push of a run removes that run's hidden copies
untouched for `STALE_SECONDS`, and any untouched for a week.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from guild_core.hookspecs import hookimpl

STAGING_PREFIX = ".guild-push-"
STALE_SECONDS = 600


@hookimpl
def guild_register_remote_types(register):
    register("filesystem", FilesystemRemote)


class FilesystemRemote:
    def __init__(self, name: str, config: dict[str, Any]):
        from guild_core import remotes

        (root,) = remotes.require(name, config, "root")
        self.name = name
        self.root = Path(os.path.expandvars(str(root))).expanduser()
        self.description = config.get("description")

    # -- where -------------------------------------------------------

    def describe(self) -> str:
        return self.description or f"directory {self.root}"

    def _runs(self, deleted: bool = False) -> Path:
        return self.root / "trash" / "runs" if deleted else self.root / "runs"

    def status(self) -> str:
        from guild_core.errors import GuildError

        if not self.root.is_dir():
            raise GuildError(f"remote '{self.name}': directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK):
            raise GuildError(f"remote '{self.name}': directory {self.root} is not writable")
        count = len(self._ids(self._runs()))
        return f"remote '{self.name}' ({self.root}) is available: {count} run{'s' if count != 1 else ''}"

    def _ids(self, runs_dir: Path) -> list[str]:
        from guild_core.run import RUN_ID_P

        try:
            names = os.listdir(runs_dir)
        except FileNotFoundError:
            return []
        except OSError as e:
            from guild_core.errors import GuildError

            raise GuildError(f"remote '{self.name}': cannot read {runs_dir}: {e.strerror}") from None
        return [n for n in names if RUN_ID_P.match(n) and (runs_dir / n / ".guild" / "opref").exists()]

    # -- reading -----------------------------------------------------

    def list_runs(self, deleted: bool = False) -> dict[str, dict[str, bytes]]:
        from guild_core import remotes

        runs_dir = self._runs(deleted)
        return {run_id: remotes.meta_files(runs_dir / run_id) for run_id in self._ids(runs_dir)}

    def fetch_run(self, run_id: str, dest: Path, deleted: bool = False) -> None:
        _copy_run(self._runs(deleted) / run_id, dest, delete=False)

    # -- copying -----------------------------------------------------

    def push(self, run_dirs: list[Path], delete: bool, progress):
        from guild_core import remotes

        total = remotes.Transfer()
        dest_root = self._runs()
        dest_root.mkdir(parents=True, exist_ok=True)
        _remove_stale(dest_root, "", 7 * 86400)
        for run_dir in run_dirs:
            moved = _copy_run(run_dir, dest_root / run_dir.name, delete)
            total.add(moved)
            progress.update(runs=1, nbytes=moved.bytes)
        return total

    def pull(self, run_ids: list[str], dest: Path, delete: bool, progress):
        from guild_core import remotes

        total = remotes.Transfer()
        src_root = self._runs()
        dest.mkdir(parents=True, exist_ok=True)
        _remove_stale(dest, "", 7 * 86400)
        for run_id in run_ids:
            moved = _copy_run(src_root / run_id, dest / run_id, delete)
            total.add(moved)
            progress.update(runs=1, nbytes=moved.bytes)
        return total

    def write_meta(self, run_id: str, changes: dict[str, bytes | None]) -> None:
        from guild_core import util

        run_dir = self._runs() / run_id
        for rel, data in changes.items():
            path = run_dir / rel
            if data is None:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                util.atomic_write(path, data)

    # -- deleting ----------------------------------------------------

    def delete(self, run_ids: list[str], permanent: bool = False) -> None:
        trash = self._runs(deleted=True)
        trash.mkdir(parents=True, exist_ok=True)
        for run_id in run_ids:
            src = self._runs() / run_id
            if not src.is_dir():
                from guild_core.errors import GuildError

                raise GuildError(f"remote '{self.name}' has no run {run_id[:8]}")
            if permanent:
                _remove(src)
            else:
                _remove(trash / run_id)
                os.replace(src, trash / run_id)

    def restore(self, run_ids: list[str]) -> None:
        runs = self._runs()
        runs.mkdir(parents=True, exist_ok=True)
        for run_id in run_ids:
            if (runs / run_id).exists():
                from guild_core.errors import GuildError

                raise GuildError(f"remote '{self.name}': run {run_id[:8]} exists, not restored over")
            deleted = self._runs(deleted=True) / run_id
            if not deleted.is_dir():
                from guild_core.errors import GuildError

                raise GuildError(f"remote '{self.name}' has no deleted run {run_id[:8]}")
            os.replace(deleted, runs / run_id)

    def purge(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            _remove(self._runs(deleted=True) / run_id)


def _remove_stale(root: Path, run_id: str, age: float) -> None:
    """Remove hidden copies (of `run_id`, or of any run) untouched for
    `age` seconds: copies whose push was interrupted."""
    import time

    try:
        names = os.listdir(root)
    except OSError:
        return
    prefix = f"{STAGING_PREFIX}{run_id}"
    for name in names:
        if not name.startswith(prefix):
            continue
        path = root / name
        try:
            if time.time() - path.stat().st_mtime > age:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _remove(path: Path) -> None:
    """Remove a run directory: renamed aside first, so nothing lists a
    half-removed run."""
    from guild_core import home

    if not path.exists():
        return
    aside = path.with_name(home.hidden_name(home.DELETING_PREFIX, path.name))
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _copy_run(src: Path, dest: Path, delete: bool):
    """Make `dest` a copy of run directory `src`: only changed files
    (size or time) are written, the run's metadata last."""
    from guild_core import remotes
    from guild_core.errors import GuildError

    moved = remotes.Transfer(run_ids=[src.name])
    _remove_stale(dest.parent, dest.name + "-", STALE_SECONDS)
    theirs = remotes.manifest(src)
    if not theirs:
        raise GuildError(f"run {src.name[:8]} is not at {src.parent}")
    if not dest.exists():
        # A new run: copied whole under a hidden name, then renamed.
        tmp = dest.with_name(f"{STAGING_PREFIX}{dest.name}-{uuid.uuid4().hex[:8]}")
        from guild_core import faults

        try:
            for rel in _ordered(theirs):
                _copy_file(src / rel, tmp / rel)
                # A copy killed here leaves a hidden directory only.
                faults.point("remote.copy.file")
                moved.files += 1
                moved.bytes += theirs[rel][0]
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        moved.runs = 1
        return moved
    ours = remotes.manifest(dest)
    changed = [rel for rel in _ordered(theirs) if ours.get(rel) != theirs[rel]]
    gone = [rel for rel in ours if rel not in theirs] if delete else []
    for rel in changed:
        path = dest / rel
        tmp = path.with_name(f"{remotes.PART_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
        try:
            _copy_file(src / rel, tmp)
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        moved.files += 1
        moved.bytes += theirs[rel][0]
    for rel in gone:
        try:
            (dest / rel).unlink()
            moved.deleted_files += 1
        except OSError:
            pass
    if changed or gone:
        moved.runs = 1
    else:
        moved.unchanged = 1
    return moved


def _ordered(files: dict[str, Any]) -> list[str]:
    """Metadata last: a reader that sees a run's metadata sees a run
    whose other files are in place."""
    from guild_core import remotes

    return sorted(files, key=lambda rel: (remotes.is_meta(rel), rel == ".guild/opref", rel))


def _copy_file(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # copy2 keeps the time, so the next push sees the file unchanged.
    shutil.copy2(src, dest)
