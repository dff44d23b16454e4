"""A run's files by kind: source code, dependencies, generated.

Guild AI's ``.guild/manifest`` lists, one shell-quoted line each, the
source code copied into a run (``s RUN_PATH SHA1 PROJECT_PATH``) and
the dependency files placed in it (``d RUN_PATH SHA1|- SOURCE
[SUBPATH]``; SOURCE is ``file:PROJECT_PATH`` for a file of the project,
the dependency's URI otherwise, and SUBPATH a path inside an archive).
A path under a directory the manifest lists takes that directory's
entry. Every other file outside ``.guild`` is generated: the run made
it.

Runs guild made before it wrote ``d`` lines have their dependency paths
only in the ``deps`` attribute; those count as dependencies from
outside the project (never copied back by ``guild merge``).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from .run import RUN_ID_P, Run

SOURCECODE = "s"
DEPENDENCY = "d"
GENERATED = "g"


@dataclass(frozen=True)
class Entry:
    """One manifest line."""

    kind: str
    path: str
    sha1: str | None
    source: str
    subpath: str | None = None

    @property
    def project_path(self) -> str | None:
        """Where the file came from in the project, relative to it; None
        for a file from elsewhere (another run, a URL, an archive)."""
        if self.kind == SOURCECODE:
            return _relative(self.source)
        if self.subpath or not self.source.startswith("file:"):
            return None
        return _relative(self.source[5:])


def _relative(path: str) -> str | None:
    # Guild AI writes `file:/abs/path` for a file outside the project.
    path = path.replace(os.sep, "/")
    if not path or path.startswith("/") or ".." in path.split("/"):
        return None
    return os.path.normpath(path).replace(os.sep, "/")


def manifest_entries(run: Run) -> list[Entry]:
    """The manifest's ``s`` and ``d`` lines, in order; lines of another
    shape are skipped, a missing manifest has none."""
    try:
        text = run.guild_path("manifest").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            args = shlex.split(line)
        except ValueError:
            continue
        if len(args) not in (4, 5) or args[0] not in (SOURCECODE, DEPENDENCY):
            continue
        path = os.path.normpath(args[1]).replace(os.sep, "/")
        sha1 = None if args[2] == "-" else args[2]
        out.append(Entry(args[0], path, sha1, args[3], args[4] if len(args) == 5 else None))
    return out


def _deps_attr_paths(run: Run) -> list[str]:
    """Run-relative paths the ``deps`` attribute records (guild's
    runs); Guild AI records its sources' paths there, outside the run,
    which are left out."""
    out = []
    for sources in (run.get("deps") or {}).values():
        for source in (sources or {}).values() if isinstance(sources, dict) else ():
            for path in (source.get("paths") or []) if isinstance(source, dict) else ():
                rel = _relative(str(path))
                if rel and rel != "." and os.path.lexists(os.path.join(run.path, rel)):
                    out.append(rel)
    return out


def within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def inside_run(run_dir: str, path: str) -> tuple[str, str] | None:
    """(`path` joined to the run directory, its real path), or None when
    it is not inside the run: `path` itself must name something under
    the run directory (``..`` and absolute paths elsewhere are refused,
    even into a sibling run); resolved, it must stay in the run or in a
    sibling run, which only a symbolic link in the run can lead to.
    `guild cat`, `ls`, `open` and `guild view` apply it alike."""
    run_dir = os.path.normpath(run_dir)
    full = os.path.normpath(os.path.join(run_dir, path))
    real = os.path.normpath(os.path.realpath(full))
    if not within(full, run_dir) or not RunArea(run_dir).allows(real):
        return None
    return full, real


class RunArea:
    """Where a run's files may resolve to: the run directory and the
    sibling runs beside it (real paths). A symbolic link in a run is
    followed only when it stays in this area: a batch's trial links
    (``../<id>``), a dependency's (``../<id>/file``), a summary's."""

    def __init__(self, run_dir: str):
        self.root = os.path.realpath(run_dir)
        # The parent of the real run directory is where its relative
        # links (`../<id>`) lead; the real parent of the run directory
        # as named is where absolute links to `runs/<id>` lead.
        self.parents = {os.path.dirname(self.root), os.path.realpath(os.path.dirname(run_dir))}

    def allows(self, real: str) -> bool:
        real = os.path.normpath(real)
        if within(real, self.root):
            return True
        for parent in self.parents:
            if real != parent and within(real, parent):
                first = real[len(parent.rstrip(os.sep)) + 1 :].split(os.sep, 1)[0]
                if RUN_ID_P.match(first) and os.path.isdir(os.path.join(parent, first)):
                    return True
        return False


class Index:
    """Each run path's manifest entry and kind."""

    def __init__(self, run: Run):
        self.entries: dict[str, Entry] = {}
        for entry in manifest_entries(run):
            self.entries[entry.path] = entry
        for rel in _deps_attr_paths(run):
            self.entries.setdefault(rel, Entry(DEPENDENCY, rel, None, "", None))

    def entry(self, rel: str) -> Entry | None:
        """The entry for `rel` (run-relative, '/'-separated) or for the
        nearest directory above it the manifest lists."""
        path = rel
        while path:
            entry = self.entries.get(path)
            if entry:
                return entry
            path = path.rpartition("/")[0]
        return None

    def kind(self, rel: str) -> str | None:
        """``s``, ``d`` or ``g``; None for Guild's own files (``.guild``)."""
        if rel.split("/", 1)[0] == ".guild":
            return None
        entry = self.entry(rel)
        return entry.kind if entry else GENERATED

    def project_path(self, rel: str) -> str | None:
        """Where `rel` belongs in the project: a source file's or a
        project dependency's path there (a file under a listed directory
        keeps its place under it); a generated file's own path; None for
        a dependency from outside the project."""
        entry = self.entry(rel)
        if entry is None:
            return rel
        base = entry.project_path
        if base is None:
            return None
        if rel == entry.path:
            return base
        return base + rel[len(entry.path) :]

    def listing(self) -> dict[str, list[str]]:
        """Guild AI's ``runs info --manifest`` sections: run paths of
        source code and of dependencies, each sorted."""
        out: dict[str, list[str]] = {}
        for entry in self.entries.values():
            name = "sourcecode" if entry.kind == SOURCECODE else "dependencies"
            out.setdefault(name, []).append(entry.path)
        return {name: sorted(paths) for name, paths in sorted(out.items())}


def manifest_line(kind: str, path: str, sha1: str | None, source: str) -> str:
    return " ".join(shlex.quote(p) for p in (kind, path, sha1 or "-", source))
