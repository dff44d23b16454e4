"""Copying a run's files into a project directory (``guild merge``).

`plan` decides, for each file of the run, whether it is copied and to
which path of the target directory, or why not; `replacing` and
`check_replace` say which copies would replace a file there and whether
that is allowed; `apply` copies. Nothing is written until every check
has passed, and the copies are written beside their targets first and
renamed into place only when all of them are written.

The rules are Guild AI 0.9's (`guild/run_merge.py`, `merge_impl.py`):

- a source code file (``s`` in the manifest) goes back to its project
  path; a dependency (``d``) only when it came from the project
  (``file:PATH``), to that path; any other file, what the run made,
  only with `copy_all`, to its run path;
- a file whose target already holds the same bytes is skipped
  (unchanged), as is one an exclude pattern matches;
- replacing a file that differs is refused unless `replace`; in a git
  work tree, replacing files git tracks and that have no unstaged
  changes is allowed (git can give them back), unless `no_replace`.

Beyond Guild AI: a file under a directory the manifest lists as a
dependency goes back under that directory's project path; an exclude
pattern also matches a file's parent directories (``-x out``); a
symbolic link in the run is followed only when it stays inside the run
(or a sibling run), never to a file elsewhere; a link to a directory is
not entered (a linked run's files are that run's); and nothing is
written through a symbolic link in the target directory, or onto a path
outside it.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import runfiles, util
from .errors import GuildError
from .run import Run

# Why a file is not copied (Guild AI's codes and words).
REASONS = {
    "x": "excluded",
    "s": "skipped source code",
    "d": "skipped dependency",
    "npd": "non-project dependency",
    "u": "unchanged",
    "?": "non-project file",
    "link": "link outside the run",
}


@dataclass(frozen=True)
class CopyFile:
    kind: str  # s, d or g
    run_path: str
    target_path: str


@dataclass(frozen=True)
class SkipFile:
    kind: str
    run_path: str
    target_path: str | None
    reason: str

    @property
    def path(self) -> str:
        return self.target_path or self.run_path


@dataclass
class Plan:
    run: Run
    target_dir: str
    to_copy: list[CopyFile] = field(default_factory=list)
    to_skip: list[SkipFile] = field(default_factory=list)
    # Extra files merge itself writes (the run summary): path -> bytes.
    extra: dict[str, bytes] = field(default_factory=dict)
    # The real path each copied run file is read from.
    reals: dict[str, str] = field(default_factory=dict)


def run_files(run: Run) -> list[tuple[str, str]]:
    """``(run path, real path)`` of each file in the run outside
    ``.guild``, sorted; a link to a file outside the run area has real
    path ``""``."""
    root = os.path.normpath(str(run.path))
    area = runfiles.RunArea(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".guild"]
        # os.walk enters no link to a directory: a linked run's files
        # are that run's.
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            real = os.path.realpath(full)
            if not os.path.isfile(real):
                continue  # a broken link, a socket...
            out.append((rel, real if area.allows(real) else ""))
    return sorted(out)


def _excluded(path: str, patterns) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(c, pat) for pat in patterns for c in candidates)


def _same(src: str, dest: str) -> bool:
    """Whether `dest` is a file holding the bytes of `src`."""
    try:
        if not os.path.isfile(dest) or os.path.getsize(src) != os.path.getsize(dest):
            return False
        with open(src, "rb") as a, open(dest, "rb") as b:
            while True:
                x, y = a.read(1 << 16), b.read(1 << 16)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def plan(
    run: Run,
    target_dir: str,
    copy_all: bool = False,
    skip_sourcecode: bool = False,
    skip_deps: bool = False,
    exclude: tuple[str, ...] | list[str] = (),
) -> Plan:
    index = runfiles.Index(run)
    result = Plan(run, target_dir)
    for rel, real in run_files(run):
        entry = index.entry(rel)
        kind = entry.kind if entry else runfiles.GENERATED
        target = index.project_path(rel)
        if not real:
            result.to_skip.append(SkipFile(kind, rel, target, "link"))
            continue
        if kind == runfiles.SOURCECODE and skip_sourcecode:
            result.to_skip.append(SkipFile(kind, rel, target, "s"))
            continue
        if kind == runfiles.DEPENDENCY and skip_deps:
            result.to_skip.append(SkipFile(kind, rel, target, "d"))
            continue
        if target is None:
            result.to_skip.append(SkipFile(kind, rel, None, "npd" if kind == runfiles.DEPENDENCY else "?"))
            continue
        if kind == runfiles.GENERATED and not copy_all:
            result.to_skip.append(SkipFile(kind, rel, target, "?"))
            continue
        if exclude and _excluded(target, exclude):
            result.to_skip.append(SkipFile(kind, rel, target, "x"))
            continue
        if _same(real, os.path.join(target_dir, target)):
            result.to_skip.append(SkipFile(kind, rel, target, "u"))
            continue
        result.to_copy.append(CopyFile(kind, rel, target))
        result.reals[rel] = real
    # Two files for one target: what the run made or used wins over the
    # source code it started from (Guild AI's prefer_nonsource).
    nonsource = {cf.target_path for cf in result.to_copy if cf.kind != runfiles.SOURCECODE}
    result.to_copy = [
        cf for cf in result.to_copy if cf.kind != runfiles.SOURCECODE or cf.target_path not in nonsource
    ]
    result.to_copy.sort(key=lambda cf: cf.target_path)
    result.to_skip.sort(key=lambda sf: sf.path)
    return result


def targets(p: Plan) -> list[str]:
    """Every path `apply` would write, relative to the target directory."""
    return sorted({cf.target_path for cf in p.to_copy} | set(p.extra))


def check_targets(p: Plan) -> None:
    """GuildError unless every target can be written as a file in the
    target directory: reached through real directories there, never a
    symbolic link (a project link must not lead a copy elsewhere), and
    not itself a directory."""
    for rel in targets(p):
        cur = p.target_dir
        for part in rel.split("/")[:-1]:
            cur = os.path.join(cur, part)
            if os.path.islink(cur):
                raise GuildError(f"cannot copy {rel}: {os.path.relpath(cur, p.target_dir)} in {_where(p.target_dir)} is a link")
            if os.path.lexists(cur) and not os.path.isdir(cur):
                raise GuildError(f"cannot copy {rel}: {os.path.relpath(cur, p.target_dir)} in {_where(p.target_dir)} is not a directory")
        dest = os.path.join(p.target_dir, rel)
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise GuildError(f"cannot copy {rel}: it is a directory in {_where(p.target_dir)}")


def replacing(p: Plan) -> list[str]:
    """Targets that exist (and differ: unchanged ones are skipped)."""
    return [rel for rel in targets(p) if os.path.lexists(os.path.join(p.target_dir, rel))]


def _git(target_dir: str, *args: str) -> list[str] | None:
    """NUL-separated output of ``git -C DIR ARGS``; None when DIR is in
    no git work tree or git is missing."""
    try:
        proc = subprocess.run(
            ["git", "-C", target_dir, *args], capture_output=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [x for x in proc.stdout.decode("utf-8", "replace").split("\0") if x]


def check_replace(p: Plan, replace: bool = False, no_replace: bool = False) -> None:
    """GuildError when copying would replace files it may not: unless
    `replace`, a file that exists; in a git work tree (and without
    `no_replace`), only one git does not track or that has unstaged
    changes."""
    if replace or not os.path.isdir(p.target_dir):
        return
    existing = replacing(p)
    if not existing:
        return
    where = _where(p.target_dir)
    if not no_replace:
        tracked = _git(p.target_dir, "ls-files", "-z", "--", *existing)
        if tracked is not None:
            changed = set(_git(p.target_dir, "ls-files", "-z", "-m", "--", *existing) or [])
            untracked = [rel for rel in existing if rel not in set(tracked)]
            if not untracked:
                unstaged = [rel for rel in existing if rel in changed]
                if not unstaged:
                    return
                raise GuildError(
                    f"files in {where} have unstaged changes: {_names(unstaged)}",
                    "Stage or stash these changes, or use --replace to replace them.",
                )
    raise GuildError(
        f"files in {where} would be replaced: {_names(existing)}",
        "Use --replace to replace them (or --preview to see what would be copied).",
    )


def _names(paths: list[str], most: int = 10) -> str:
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _where(target_dir: str) -> str:
    if os.path.abspath(target_dir) == os.path.abspath(os.getcwd()):
        return "the current directory"
    return f"'{target_dir}'"


def where(p: Plan) -> str:
    return _where(p.target_dir)


def apply(p: Plan, on_copy=None) -> None:
    """Write every copy (and extra file) beside its target, then rename
    them into place: a failure while writing leaves the target
    directory as it was."""
    sources = {cf.target_path: p.reals[cf.run_path] for cf in p.to_copy}
    staged: list[tuple[Path, Path, str]] = []
    made: list[Path] = []
    try:
        for rel in targets(p):
            dest = Path(p.target_dir, rel)
            made.extend(_make_dirs(dest.parent))
            tmp = dest.parent / f".{dest.name}.guild-merge.{os.getpid()}.tmp"
            staged.append((tmp, dest, rel))
            if rel in p.extra:
                tmp.write_bytes(p.extra[rel])
            else:
                src = sources[rel]
                with open(src, "rb") as f:
                    tmp.write_bytes(f.read())
                os.chmod(tmp, os.stat(src).st_mode & 0o777)
    except BaseException:
        for tmp, _dest, _rel in staged:
            _unlink(tmp)
        for path in reversed(made):
            try:
                path.rmdir()
            except OSError:
                pass
        raise
    for tmp, dest, rel in staged:
        if on_copy:
            on_copy(rel)
        # Replaces a link at dest itself, never what it points to.
        os.replace(tmp, dest)


def _make_dirs(path: Path) -> list[Path]:
    """Make `path` and its missing parents; the ones made, outermost
    first."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir()
    return list(reversed(missing))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def summary(p: Plan) -> bytes:
    """The run summary ``--summary-name`` writes: the run and what was
    copied from it, as JSON."""
    import json

    run = p.run
    scalars = {tag: val for tag, (val, _step) in sorted(run.last_scalars().items())}
    data = {
        "run": run.id,
        "operation": run.op_name,
        "started": util.format_timestamp(run.get("started")),
        "status": run.status,
        "label": run.get("label") or "",
        "flags": run.get("flags") or {},
        "scalars": scalars,
        "files": [cf.target_path for cf in p.to_copy],
    }
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")
