"""``guild ls``, ``guild cat`` and ``guild open``: a run's files and
output.

They read only inside the run directory. A PATH is resolved (symbolic
links followed) and must land inside the run, or inside a sibling run:
a run directory next to it, reached through a symbolic link in the run
(a batch's trial links ``../<id>``, a dependency's ``../<id>/file``,
a summary's ``<id>``). ``ls -L`` follows only such links, and never one
that leads back to a directory it is already in.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import sys

import click

from guild_core import util
from guild_core.errors import GuildError
from guild_core.runfiles import RunArea as _RunArea
from guild_core.runfiles import inside_run

from .common import printable
from .runselect import filter_options, selected_run, with_files


def _inside_run(run, path: str) -> tuple[str, str]:
    """(`path` joined to the run directory, its real path); GuildError
    when it is not inside the run (`runfiles.inside_run`)."""
    found = inside_run(str(run.path), path)
    if found is None:
        raise GuildError(f"{printable(path)} is outside the run directory")
    return found


def _missing(full: str) -> GuildError:
    if os.path.lexists(full):
        # A link to nothing, or a loop of links.
        return GuildError(f"{printable(full)} is a broken link")
    return GuildError(f"{printable(full)} does not exist")


def _sourcecode_dest(run) -> str:
    """Where the run's source code snapshot is, relative to the run
    directory ('' for the run directory itself), as its ``op``
    attribute records it."""
    op = run.get("op")
    sourcecode = op.get("sourcecode") if isinstance(op, dict) else None
    dest = sourcecode.get("dest") if isinstance(sourcecode, dict) else None
    if not isinstance(dest, str) or os.path.normpath(dest) in (".", ""):
        return ""
    return os.path.normpath(dest)


def _natural_key(text: str) -> list:
    """Natural order, as Guild AI sorts file lists: ``f2`` before ``f10``."""
    parts: list = re.split(r"(\d+)", text)
    for i in range(1, len(parts), 2):
        parts[i] = int(parts[i])
    return parts


def _is_pattern(path: str) -> bool:
    return "*" in path or "?" in path


class _PathSpec:
    """What ``ls -p PATH`` selects: PATH itself and everything under it,
    or, for a pattern, the paths whose leading parts match its parts."""

    def __init__(self, parts: list[str], pattern: bool):
        self.parts = parts
        self.pattern = pattern

    def _match(self, parts: list[str], spec: list[str]) -> bool:
        if self.pattern:
            return all(fnmatch.fnmatchcase(part, pat) for part, pat in zip(parts, spec))
        return parts == spec

    def matches(self, parts: list[str]) -> bool:
        n = len(self.parts)
        return len(parts) >= n and self._match(parts[:n], self.parts)

    def may_hold(self, parts: list[str]) -> bool:
        """Whether a directory at `parts` may hold a match."""
        n = min(len(parts), len(self.parts))
        return self._match(parts[:n], self.parts[:n])

    def names(self, parts: list[str], i: int) -> bool:
        """Whether part `i` of a path is named by PATH itself (a hidden
        name is listed without --all only when PATH names it)."""
        return i < len(self.parts) and self.parts[i].startswith(".")


def _path_spec(run, path: str, sourcecode: bool) -> _PathSpec | None:
    dest = _sourcecode_dest(run) if sourcecode else ""
    joined = os.path.join(dest, path) if dest else path
    if _is_pattern(path):
        norm = joined.replace(os.sep, "/")
        parts = [p for p in norm.split("/") if p not in ("", ".")]
        if os.path.isabs(joined) or ".." in parts:
            raise GuildError(f"{printable(path)} is outside the run directory")
        return _PathSpec(parts, True)
    full, _real = _inside_run(run, joined)
    if not os.path.lexists(full) or (os.path.islink(full) and not os.path.exists(full)):
        raise _missing(full)
    rel = os.path.relpath(full, os.path.normpath(str(run.path)))
    if rel == ".":
        return None
    return _PathSpec(rel.replace(os.sep, "/").split("/"), False)


def _human(size: int) -> str:
    """A size as ``ls -h`` writes it: 512, 2.0K, 15K, 1.5M."""
    if size < 1024:
        return str(size)
    val = float(size)
    for unit in "KMGTPE":
        val /= 1024
        if val < 1024 or unit == "E":
            if val < 10:
                return f"{math.ceil(val * 10) / 10:.1f}{unit}"
            return f"{math.ceil(val)}{unit}"
    return str(size)


def _size(full: str, is_dir: bool) -> int | None:
    if is_dir:
        return None
    try:
        return os.stat(full).st_size
    except OSError:
        try:
            return os.lstat(full).st_size  # a broken link: the link itself
        except OSError:
            return None


@click.command(context_settings={"help_option_names": ["--help"]})
@click.argument("run", required=False)
@click.option("-p", "--path", metavar="PATH", help="List only PATH (and what is under it); a pattern with * or ? matches paths.")
@click.option("-s", "--sourcecode", is_flag=True, help="List source code files.")
@click.option("-d", "--dependencies", is_flag=True, help="List dependency files.")
@click.option("-g", "--generated", is_flag=True, help="List files the run generated.")
@click.option("-a", "--all", "all_", is_flag=True, help="Include hidden files and Guild's own files (.guild).")
@click.option("-f", "--full-path", is_flag=True, help="Show full paths, without a header.")
@click.option("-L", "--follow-links", is_flag=True, help="Follow links to directories.")
@click.option("-n", "--no-format", is_flag=True, help="Show paths without a header or indent.")
@click.option("-x", "--extended", is_flag=True, help="Show each file's size.")
@click.option("-h", "--human-readable", is_flag=True, help="With -x, show sizes as 2.0K, 15M...")
@filter_options(remote=True)
def ls(run, path, sourcecode, dependencies, generated, all_, full_path, follow_links, no_format,
       extended, human_readable, rf):
    """List a run's files (default: the latest run).

    RUN is a run id, a unique id prefix or a 1-based index in the list
    of filtered runs (`guild runs list`); without it, the newest
    filtered run. The filter options narrow the runs first, as for
    every command that takes runs: an expression (-F 'loss < 0.1'),
    operation, label, tag, comment, marked or unmarked, start time
    (-Fs 'last hour'), source code digest, and status (-Sr -Sc -Se -St
    -Sp -Ss, combined as -Set).

    Paths are listed relative to the run directory, in natural order,
    directories with a trailing slash. Hidden files (names starting
    with a dot) and Guild's own `.guild` directory are left out unless
    --all, or unless PATH names them.

    -p PATH lists PATH and everything under it. PATH is relative to the
    run directory and must stay inside it; a symbolic link in the run
    may lead it into a sibling run (batch trials, dependencies,
    summaries), nowhere else. With * or ? PATH is a pattern: its parts
    match the leading parts of a path (`-p '*.py'`, `-p 'out/*'`).

    -s, -d and -g list only files of those kinds (any of them
    together): the source code copied into the run, the files its
    dependencies placed, and what the run generated (everything else
    outside .guild). They list hidden files too. With -s, PATH is
    relative to the source code's directory in the run.

    -L follows links to directories in the run and in sibling runs; a
    link that leads elsewhere, or back into a directory being listed,
    is listed but not followed. -f shows full paths and -n bare
    relative paths, both without the header line. -x adds each file's
    size in bytes, -h (with -x) in K, M, G. -r lists a run on a remote
    (`guild remotes`)."""
    from guild_core import runfiles

    target = with_files(selected_run(rf, run))
    root = os.path.normpath(str(target.path))
    spec = _path_spec(target, path, sourcecode) if path else None
    kinds = {k for k, on in (("s", sourcecode), ("d", dependencies), ("g", generated)) if on}
    index = runfiles.Index(target) if kinds else None

    def hidden(parts: list[str]) -> bool:
        return any(part.startswith(".") and not (spec and spec.names(parts, i)) for i, part in enumerate(parts))

    def descend(rel: str) -> bool:
        parts = rel.split("/")
        if kinds and ".guild" in parts:
            # Guild's own files, a linked sibling run's too (Guild AI
            # lists those as generated).
            return False
        if spec and not spec.may_hold(parts):
            return False
        return bool(kinds or all_ or not hidden(parts))

    def follow(rel: str) -> bool:
        # PATH naming a link to a directory lists what it links to.
        return follow_links or bool(spec and not spec.pattern and rel.split("/") == spec.parts)

    def shown(rel: str, is_dir: bool) -> bool:
        parts = rel.split("/")
        if spec and not spec.matches(parts):
            return False
        if index is not None:
            kind = index.kind(rel)
            if kind is None or ".guild" in parts or (is_dir and rel not in index.entries):
                return False
            return kind in kinds
        return all_ or not hidden(parts)

    walked = _walk(root, follow, _RunArea(root), descend)
    entries = sorted((e for e in walked if shown(e[0], e[2])), key=lambda e: _natural_key(e[0]))
    bare = full_path or no_format
    if not bare:
        click.echo(f"{printable(util.format_dir(root))}:")
    names = [(full if full_path else rel) + ("/" if is_dir else "") for rel, full, is_dir in entries]
    if extended:
        sizes = [_size(full, is_dir) for _rel, full, is_dir in entries]
        cells = ["-" if n is None else (_human(n) if human_readable else str(n)) for n in sizes]
        width = max((len(c) for c in cells), default=0)
        names = [f"{cell.rjust(width)}  {name}" for cell, name in zip(cells, names)]
    for name in names:
        click.echo(printable(name) if bare else "  " + printable(name))


def _walk(root: str, follow, area: _RunArea, descend) -> list[tuple[str, str, bool]]:
    """``(relative path, full path, is a directory)`` for what is under
    the run directory `root`. A directory is entered when
    `descend(rel)`; a link to one only when also `follow(rel)`, it
    stays in `area`, and it does not lead back to a directory on the way
    down to it (a cycle)."""
    entries = []
    # Each directory to read, with the real paths of the directories
    # on the way to it, itself last.
    todo = [("", root, (os.path.realpath(root),))]
    while todo:
        rel_dir, dirpath, chain = todo.pop()
        try:
            with os.scandir(dirpath) as it:
                items = list(it)
        except OSError:
            continue
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            full = os.path.join(dirpath, item.name)
            try:
                is_dir = item.is_dir()
            except OSError:  # a loop of links
                is_dir = False
            entries.append((rel, full, is_dir))
            if not is_dir or not descend(rel):
                continue
            if not item.is_symlink():
                todo.append((rel, full, chain + (os.path.join(chain[-1], item.name),)))
            elif follow(rel):
                real = os.path.normpath(os.path.realpath(full))
                if area.allows(real) and real not in chain:
                    todo.append((rel, full, chain + (real,)))
    return entries


def _run_file(run, path: str, sourcecode: bool) -> tuple[str, str]:
    """`path` in the run (in its source code with `sourcecode`): the
    path joined and its real path, checked to be inside the run."""
    dest = _sourcecode_dest(run) if sourcecode else ""
    return _inside_run(run, os.path.join(dest, path) if dest else path)


@click.command()
@click.argument("run", required=False)
@click.option("-p", "--path", metavar="PATH", help="File to show, relative to the run directory (required unless --output).")
@click.option("-s", "--sourcecode", is_flag=True, help="PATH is relative to the run's source code.")
@click.option("-O", "--output", is_flag=True, help="Show the run's output (not with --path or --sourcecode).")
@click.option("-pa", "--page", is_flag=True, help="Show in a pager.")
@filter_options(remote=True)
def cat(run, path, sourcecode, output, page, rf):
    """Show a run file or the run's output (default: the latest run).

    RUN is a run id, a unique id prefix or a 1-based index in the list
    of filtered runs (`guild runs list`); without it, the newest
    filtered run. The filter options narrow the runs first, as for
    every command that takes runs: an expression (-F 'loss < 0.1'),
    operation, label, tag, comment, marked or unmarked, start time
    (-Fs 'last hour'), source code digest, and status (-Sr -Sc -Se -St
    -Sp -Ss, combined as -Set).

    -p PATH is required unless --output. PATH is relative to the run
    directory, or with -s to the directory of the run's source code,
    and must stay inside the run; a symbolic link in the run may lead
    it into a sibling run (batch trials, dependencies, summaries),
    nowhere else.

    --output shows what the run wrote to stdout and stderr; it cannot
    be used with --path or --sourcecode. --page shows the text in a
    pager. -r shows a run on a remote (`guild remotes`)."""
    if output and (path or sourcecode):
        raise GuildError("--output cannot be used with --path or --sourcecode")
    if not path and not output:
        raise GuildError("--path is required unless --output is used", "Try 'guild cat --help' for more information.")
    target = with_files(selected_run(rf, run))
    if output:
        data = b"".join(line for _t, _s, line in target.iter_output())
        if not data and not target.guild_path("output").exists():
            raise GuildError(f"run {target.id} has no output")
    else:
        full, real = _run_file(target, path, sourcecode)
        try:
            # The path checked, not the one named: no link is followed
            # again after the check.
            with open(real, "rb") as f:
                data = f.read()
        except IsADirectoryError:
            raise GuildError(f"{printable(full)} is a directory") from None
        except OSError:
            raise _missing(full) from None
    if page:
        click.echo_via_pager(data.decode("utf-8", "replace"))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _system_opener() -> list[str] | None:
    """The desktop's opener command, or None where there is none."""
    import shutil

    found = shutil.which("open" if sys.platform == "darwin" else "xdg-open")
    return [found] if found else None


def _run_command(argv: list[str], what: str, cwd: str | None = None) -> int:
    import subprocess

    try:
        return subprocess.call(argv, cwd=cwd)
    except OSError as e:
        raise GuildError(f"cannot run {printable(what)}: {e.strerror or e}") from None


@click.command("open")
@click.argument("run", required=False)
@click.option("-p", "--path", metavar="PATH", help="Path to open, relative to the run directory (default: the run directory).")
@click.option("-s", "--sourcecode", is_flag=True, help="Open the run's source code directory (PATH is relative to it).")
@click.option("-O", "--output", is_flag=True, help="Open the run's output file (not with other options).")
@click.option("-c", "--cmd", metavar="CMD", help="Open with CMD (the path is its last argument).")
@click.option("--shell", is_flag=True, help="Start a shell in the run directory or PATH.")
@click.option("--shell-cmd", metavar="CMD", help="Start the shell CMD in the run directory or PATH.")
@filter_options
def open_(run, path, sourcecode, output, cmd, shell, shell_cmd, rf):
    """Open a run directory, a file in it, or its output (default: the
    latest run).

    RUN is a run id, a unique id prefix or a 1-based index in the list
    of filtered runs (`guild runs list`); without it, the newest
    filtered run. The filter options narrow the runs first, as for
    every command that takes runs: an expression (-F 'loss < 0.1'),
    operation, label, tag, comment, marked or unmarked, start time
    (-Fs 'last hour'), source code digest, and status (-Sr -Sc -Se -St
    -Sp -Ss, combined as -Set).

    By default the run directory opens. -p PATH opens a path in it:
    relative, inside the run (a link may lead into a sibling run,
    nowhere else), and existing. -s opens the directory of the run's
    source code, and PATH is then relative to it. --output opens the
    run's output file and cannot be used with other options.

    The system's opener opens it (`xdg-open`, or `open` on macOS);
    where there is none, guild prints the path instead. --cmd CMD opens
    it with CMD, the path added as its last argument. --shell starts a
    new shell ($SHELL) in the directory, or in a file's directory, and
    --shell-cmd CMD starts CMD there instead; guild returns when it
    exits. A command that cannot start, or an opener that fails, is an
    error."""
    given = [name for name, val in (("--cmd", cmd), ("--shell", shell), ("--shell-cmd", shell_cmd)) if val]
    if len(given) > 1:
        raise GuildError(f"{given[0]} and {given[1]} cannot both be used")
    if output and (path or sourcecode):
        raise GuildError("--output cannot be used with --path or --sourcecode")
    target = selected_run(rf, run)
    if output:
        real = str(target.guild_path("output"))
        if not os.path.isfile(real):
            raise GuildError(f"run {target.id} has no output")
    else:
        full, real = _run_file(target, path or ".", sourcecode)
        if not os.path.exists(real):
            raise _missing(full)
    if shell or shell_cmd:
        import shlex

        argv = shlex.split(shell_cmd) if shell_cmd else [os.environ.get("SHELL") or "bash"]
        if not argv:
            raise GuildError("--shell-cmd needs a command")
        where = real if os.path.isdir(real) else os.path.dirname(real)
        click.echo(f"Running a new shell in {printable(where)}\nTo exit the shell, type 'exit' and press Enter.", err=True)
        _run_command(argv, argv[0], cwd=where)
        return
    if cmd:
        import shlex

        argv = shlex.split(cmd)
        if not argv:
            raise GuildError("--cmd needs a command")
        what = argv[0]
    elif os.name == "nt":
        os.startfile(real)  # the Windows opener
        return
    else:
        opener = _system_opener()
        if opener is None:
            # Nothing to open it with: the path, for the user to use.
            click.echo(printable(real))
            return
        argv, what = opener, os.path.basename(opener[0])
    status = _run_command(argv + [real], what)
    if status != 0:
        raise GuildError(f"{printable(what)} exited with status {status}")
