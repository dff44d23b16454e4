"""Zip archives of runs: ``RUN_ID/...`` entries, as Guild AI writes them.

Symbolic links are stored as links (Unix mode S_IFLNK, the target as
the entry's data) and come back as links. Reading an archive checks
every entry first: one that would land outside its run directory (an
absolute path, a ``..`` part, an entry under a link, a link pointing
anywhere but into its own run or a sibling run) refuses the whole
archive, naming the entry, before anything is written.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import zipfile
import zlib
from pathlib import Path

from .errors import GuildError
from .run import RUN_ID_P, Run


def is_zip(path: str | Path) -> bool:
    return str(path).lower().endswith(".zip")


def run_ids(path: Path) -> set[str]:
    """The run ids in an existing zip archive."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {name.split("/", 1)[0] for name in zf.namelist()}
    except (OSError, zipfile.BadZipFile) as e:
        raise GuildError(f"cannot read zip archive {path}: {e}") from None


def write(path: Path, runs: list[Run], follow_links: bool = False) -> None:
    """Write `runs` into the zip at `path`, keeping entries already
    there; with `follow_links` (``--copy-resources``) the files links
    point to are written in their place. The new archive is written beside it under a hidden name
    (swept by the next write if this process dies) and renamed over it,
    so a failure leaves the old archive as it was."""
    from . import faults, home, store

    path.parent.mkdir(parents=True, exist_ok=True)
    mine = f"{home.TMP_PREFIX}{path.name}."
    legacy = f".{path.name}."  # written by earlier versions: `.NAME.XXXX.tmp`
    try:
        store.sweep(path.parent, [
            n for n in os.listdir(path.parent)
            if n.startswith(mine) or (n.startswith(legacy) and n.endswith(".tmp"))
        ])
    except OSError:
        pass
    tmp = path.parent / home.hidden_name(home.TMP_PREFIX, path.name)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as out:
            if path.exists():
                with zipfile.ZipFile(path) as old:
                    for info in old.infolist():
                        out.writestr(info, old.read(info))
            for run in runs:
                _add_run(out, run, follow_links)
                faults.point("archive.write.run")
        faults.point("archive.write.written")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _add_run(zf: zipfile.ZipFile, run: Run, follow_links: bool = False) -> None:
    from .store import LOCAL_MARKERS

    root = str(run.path)
    local = {os.path.join(root, ".guild", name) for name in LOCAL_MARKERS}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_links):
        rel_dir = os.path.relpath(dirpath, root)
        base = run.id if rel_dir == "." else posixpath.join(run.id, *rel_dir.split(os.sep))
        zf.writestr(zipfile.ZipInfo(base + "/"), b"")
        links = [] if follow_links else [n for n in dirnames if os.path.islink(os.path.join(dirpath, n))]
        dirnames[:] = sorted(n for n in dirnames if n not in links)
        for name in sorted(filenames + links):
            full = os.path.join(dirpath, name)
            if full in local:
                continue
            arcname = posixpath.join(base, name)
            if follow_links and not os.path.exists(full):
                continue  # a dangling link: nothing to copy
            if os.path.islink(full) and not follow_links:
                info = zipfile.ZipInfo(arcname)
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, os.readlink(full))
            else:
                zf.write(full, arcname)


def extract(path: Path, dest: Path) -> None:
    """Check every entry of the zip at `path`, then extract it under
    `dest` (a new, empty directory)."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise GuildError(f"cannot read zip archive {path}: {e}") from None
    with zf:
        infos = zf.infolist()
        links = {info.filename.rstrip("/") for info in infos if _is_link(info)}
        files: set[str] = set()
        dirs: set[str] = set()
        for info in infos:
            _check_entry(path, info, zf, links)
            # A name given twice (or as a file and a directory) has no
            # one meaning; a repeated directory entry is harmless.
            name = "/".join(p for p in info.filename.split("/") if p)
            if name in files and not info.is_dir():
                raise GuildError(
                    f"refusing to import from {path}: entry '{info.filename}' appears more than once"
                )
            (dirs if info.is_dir() else files).add(name)
        clash = dirs & files
        if clash:
            raise GuildError(
                f"refusing to import from {path}: entry '{sorted(clash)[0]}' appears more than once"
            )
        try:
            _extract_checked(zf, infos, dest)
        except (zipfile.BadZipFile, EOFError, zlib.error) as e:
            raise GuildError(f"cannot read zip archive {path}: {e}") from None


def _extract_checked(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path) -> None:
    from . import faults

    for info in infos:
        target = dest.joinpath(*[p for p in info.filename.split("/") if p])
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if _is_link(info):
            os.symlink(zf.read(info).decode(), target)
            continue
        with zf.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        faults.point("archive.extract.entry")
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(target, mode)


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_entry(path: Path, info: zipfile.ZipInfo, zf: zipfile.ZipFile, links: set[str]) -> None:
    name = info.filename

    def refuse(why: str):
        raise GuildError(f"refusing to import from {path}: entry '{name}' {why}")

    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        refuse("has an absolute path")
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in ("..", ".") for p in parts):
        refuse("would land outside its run directory")
    if not RUN_ID_P.match(parts[0]):
        refuse("is not inside a run directory")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            refuse("is under a symbolic link")
    if _is_link(info):
        target = zf.read(info).decode(errors="replace")
        if not link_stays_in(parts[0], "/".join(parts[:-1]), target):
            refuse(f"links outside its run directory (to '{target}')")


def link_stays_in(run_id: str, link_dir: str, target: str) -> bool:
    """Whether a link in `link_dir` (a posix path starting with the run
    id) to `target`, a relative path, points inside its run or into a
    sibling run: a batch links its trials (``../RUN_ID``), a summary its
    runs, a dependency their files (``../RUN_ID/model.txt``)."""
    if target.startswith("/"):
        return False
    resolved = posixpath.normpath(posixpath.join(link_dir, target))
    head = resolved.split("/")[0]
    return head == run_id or RUN_ID_P.match(head) is not None
