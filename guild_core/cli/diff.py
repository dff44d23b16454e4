"""``guild diff``: compare two runs with a diff program."""

from __future__ import annotations

import click

from guild_core.errors import GuildError

from .runselect import filter_options, with_files

DEFAULT_CMD = "diff -ru"


@click.command()
@click.argument("run", metavar="[RUN [RUN]]", required=False)
@click.argument("other_run", metavar="", required=False)
@click.option("-O", "--output", is_flag=True, help="Diff run output.")
@click.option("-s", "--sourcecode", is_flag=True, help="Diff run source code (the files in the manifest).")
@click.option("-e", "--env", is_flag=True, help="Diff run environment.")
@click.option("-f", "--flags", is_flag=True, help="Diff run flags.")
@click.option(
    "-a", "--attrs", is_flag=True,
    help="Diff all run attributes; if specified other attribute options are ignored.",
)
@click.option(
    "-p", "--path", "paths", metavar="PATH", multiple=True,
    help="Diff specified path. May be used more than once.",
)
@click.option("-D", "--deps", is_flag=True, help="Diff run dependencies.")
@click.option("-w", "--working", is_flag=True, help="Diff a run's source code with its project directory as it is now.")
@click.option("-d", "--dir", "dir_", metavar="PATH", help="Diff a run with directory PATH.")
@click.option("-c", "--cmd", metavar="CMD", help=f"Command used to diff runs (default: '{DEFAULT_CMD}').")
@filter_options(remote=True)
def diff(run, other_run, output, sourcecode, env, flags, attrs, paths, deps, working, dir_, cmd, rf):
    """Diff two runs.

    With no RUN, the latest two filtered runs are diffed (the older one
    first). With one RUN, that run is diffed with the latest one.

    By default the run directories are diffed. --flags and --env diff
    'NAME: VALUE' lines written to temporary files, --attrs the
    attribute files, --output the output, --sourcecode the source
    snapshot (with --path, paths inside it), --path paths inside the
    runs. Options combine: each gives one diff.

    --working diffs one run's source code with its project directory as
    it is now, --dir PATH one run (its directory, or with --sourcecode
    its source code) with PATH; both take at most one RUN (default: the
    latest). --deps diffs the recorded dependencies.

    The program is 'diff -ru' unless --cmd gives another; the two
    paths are appended to it. Differences are not an error: guild exits
    0 when the program exits 0 or 1.
    """
    import shlex
    import shutil
    import subprocess
    import sys

    argv = _diff_cmd(cmd)
    tmp = _TempDir()
    if working or dir_:
        if working and dir_:
            raise GuildError("--working and --dir cannot both be used")
        if other_run is not None:
            raise GuildError(f"{'--working' if working else '--dir'} diffs one run: give at most one RUN")
        single = with_files(_one_run(rf, run))
    else:
        a, b = map(with_files, _runs_to_diff(rf, run, other_run))
    try:
        if working or dir_:
            pairs = _working_paths(single, tmp, dir_, sourcecode or working, paths)
        else:
            pairs = _diff_paths(a, b, tmp, output, sourcecode, env, flags, attrs, paths, deps)
        status = 0
        for left, right in pairs:
            sys.stdout.flush()
            try:
                rc = subprocess.call(argv + [str(left), str(right)])
            except FileNotFoundError:
                raise GuildError(f"cannot run '{argv[0]}': not found") from None
            except OSError as e:
                raise GuildError(f"cannot run '{argv[0]}': {(e.strerror or str(e)).lower()}") from None
            if rc not in (0, 1):
                status = rc if rc > 1 else 1
    finally:
        tmp.remove(shutil)
    if status:
        click.echo(f"guild: '{shlex.join(argv)}' exited with status {status}", err=True)
        raise SystemExit(status)


def _diff_cmd(cmd: str | None) -> list[str]:
    import shlex

    if cmd is None:
        return shlex.split(DEFAULT_CMD)
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        raise GuildError(f"invalid --cmd '{cmd}': {e}") from None
    if not argv:
        raise GuildError("--cmd cannot be empty")
    return argv


def _one_run(rf, spec):
    from guild_core import select

    from .runselect import filtered_runs

    runs = filtered_runs(rf)
    if not runs:
        raise GuildError("no matching runs")
    return select.select_one(runs, spec)


def _working_paths(run, tmp, dir_, sourcecode, paths):
    """(run side, directory side) pairs for --working and --dir."""
    from pathlib import Path

    if dir_ is not None:
        other = Path(dir_)
        if not other.is_dir():
            raise GuildError(f"cannot diff with {dir_}: not a directory")
    else:
        project = run.project_dir
        if not project or not Path(project).is_dir():
            raise GuildError(f"cannot diff run {run.short_id} with its project: {project or 'it has none'} is not a directory")
        other = Path(project)
    left = _sourcecode_snapshot(run, tmp, run.short_id) if sourcecode else run.path
    if not paths:
        return [(left, other)]
    pairs = []
    for p in paths:
        pair = (left / p, other / p)
        _check_path(p, pair, run, run, "run or directory of")
        pairs.append(pair)
    return pairs


def _runs_to_diff(rf, spec, other_spec):
    from guild_core import select

    from .runselect import filtered_runs

    runs = filtered_runs(rf)
    if not runs:
        raise GuildError("no matching runs")
    if spec is None:
        if len(runs) < 2:
            raise GuildError("diff requires two runs")
        return runs[1], runs[0]
    a = select.select_one(runs, spec)
    if other_spec is None:
        b = runs[0]
        if a.id == b.id:
            raise GuildError(f"diff requires two runs ('{spec}' is the latest run; give a second RUN)")
        return a, b
    b = select.select_one(runs, other_spec)
    if a.id == b.id:
        raise GuildError(f"diff requires two runs ('{spec}' and '{other_spec}' are the same run)")
    return a, b


class _TempDir:
    """Made on first use; removed, with everything in it, at the end."""

    def __init__(self):
        self.path = None

    def get(self):
        if self.path is None:
            import tempfile
            from pathlib import Path

            self.path = Path(tempfile.mkdtemp(prefix="guild-diff-"))
        return self.path

    def remove(self, shutil):
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


def _diff_paths(a, b, tmp, output, sourcecode, env, flags, attrs, paths, deps=False):
    names = (a.short_id, b.short_id) if a.short_id != b.short_id else (a.id, b.id)
    pairs = []
    if deps:
        pairs.append(tuple(_mapping_file(r, "deps", tmp, n) for r, n in zip((a, b), names)))
    if attrs:
        for opt, given in (("--env", env), ("--flags", flags)):
            if given:
                click.echo(f"WARNING: ignoring {opt} (already included in --attrs)", err=True)
        pairs.append((a.guild_path("attrs"), b.guild_path("attrs")))
    else:
        if env:
            pairs.append(tuple(_mapping_file(r, "env", tmp, n) for r, n in zip((a, b), names)))
        if flags:
            pairs.append(tuple(_mapping_file(r, "flags", tmp, n) for r, n in zip((a, b), names)))
    if output:
        pairs.append((a.guild_path("output"), b.guild_path("output")))
    if sourcecode:
        roots = [_sourcecode_snapshot(r, tmp, n) for r, n in zip((a, b), names)]
        if paths:
            for p in paths:
                pair = (roots[0] / p, roots[1] / p)
                _check_path(p, pair, a, b, "source code of run")
                pairs.append(pair)
        else:
            pairs.append(tuple(roots))
    else:
        for p in paths:
            pair = (a.path / p, b.path / p)
            _check_path(p, pair, a, b, "run")
            pairs.append(pair)
    if not pairs:
        pairs.append((a.path, b.path))
    return pairs


def _check_path(p, pair, a, b, where):
    import os

    if not any(os.path.lexists(x) for x in pair):
        raise GuildError(f"'{p}' is not in the {where} {a.short_id} or {b.short_id}")


def _mapping_file(run, attr, tmp, name):
    """`attr` (a mapping) as sorted 'NAME: VALUE' lines in a temporary
    file named after the attribute, control characters escaped: one
    line per name, and nothing the diff program shows can drive the
    terminal."""
    from guild_core.flags import encode_value

    from .common import printable

    val = run.get(attr)
    lines = []
    if isinstance(val, dict):
        for key in sorted(val, key=str):
            lines.append(f"{printable(key)}: {printable(encode_value(val[key]))}\n")
    path = tmp.get() / name / attr
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def _sourcecode_snapshot(run, tmp, name):
    """A copy of the run's source files ('s' entries of
    '.guild/manifest'), at their paths in the project."""
    import shlex
    import shutil

    root = tmp.get() / name / "sourcecode"
    root.mkdir(parents=True, exist_ok=True)
    try:
        lines = run.guild_path("manifest").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            parts = shlex.split(line)
        except ValueError:
            continue
        if len(parts) != 4 or parts[0] != "s":
            continue
        _kind, dest, _sha, source = parts
        src = run.path / dest
        target = (root / source).resolve()
        if not str(target).startswith(str(root.resolve()) + "/") or not src.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return root
