"""The same project run by Guild AI 0.9 and by guild gives the same runs.

Skipped unless ``GUILD_AI_EXE`` names Guild AI 0.9's ``guild`` (for
example a virtualenv's ``bin/guild``). Each case runs one command line
with both tools, each in its own GUILD_HOME, over a copy of the same
project, then compares what the run directories hold: operation, status,
flags, label, tags, last scalars, and the files of the run outside
``.guild``. Both homes are read with guild's own run reader; every
difference is listed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from guild_core.run import Run, runs_in

GUILD_AI = os.environ.get("GUILD_AI_EXE")

pytestmark = pytest.mark.skipif(not GUILD_AI, reason="GUILD_AI_EXE does not name Guild AI 0.9's guild")

PROJECT = {
    "train.py": """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--lr", type=float, default=0.1)
        p.add_argument("--epochs", type=int, default=2)
        p.add_argument("--opt", default="adam")
        args = p.parse_args()
        for i in range(args.epochs):
            print("step: %d" % i)
            print("loss: %f" % (1.0 / (i + 1) * args.lr))
        open("model.txt", "w").write("trained %s\\n" % args.opt)
    """,
    "globals_train.py": """
        x = 1
        name = "a"
        print("x=%s name=%s" % (x, name))
        print("loss: %s" % (x * 0.5))
    """,
    "fail.py": "raise SystemExit(3)\n",
    "data.txt": "some data\n",
    "cfg_train.py": """
        import yaml
        cfg = yaml.safe_load(open("params.yml"))
        print("loss: %s" % (cfg["lr"] * cfg["model"]["layers"]))
    """,
    "params.yml": """
        lr: 0.1
        model:
          layers: 3
    """,
    "guild.yml": """
        train:
          description: Train
          main: train
          tags: [base]
          flags:
            lr:
              default: 0.01
              min: 0.0001
              max: 1
            epochs: 3
            opt:
              default: adam
              choices: [adam, sgd]
        prepare:
          main: train
          flags:
            epochs: 1
        uses-prepared:
          main: train
          requires:
            - operation: prepare
              select: model.txt
          flags:
            epochs: 1
        uses-file:
          main: train
          requires:
            - file: data.txt
          flags:
            epochs: 1
        pipeline:
          flags:
            lr: 0.3
          steps:
            - prepare
            - run: train lr=${lr} epochs=1
        cfg:
          main: cfg_train
          flags-dest: config:params.yml
          flags-import: all
        grid-default:
          main: train
          flags:
            lr: [0.1, 0.2]
            epochs: 1
        label-op:
          main: train
          label: opt=${opt} lr=${lr}
          flags:
            lr: 0.123456789
            opt: plain words
    """,
}

CASES = [
    ["run", "train.py", "-y"],
    ["run", "train.py", "lr=0.5", "epochs=4", "-y"],
    ["run", "train.py", "-l", "my label", "--tag", "t1", "-y"],
    ["run", "globals_train.py", "x=3", "name=b", "-y"],
    ["run", "fail.py", "-y"],
    ["run", "train", "-y"],
    ["run", "train", "lr=0.2", "opt=sgd", "-y"],
    ["run", "label-op", "-y"],
    ["run", "cfg", "lr=0.5", "model.layers=4", "-y"],
    ["run", "uses-file", "-y"],
    ["run", "grid-default", "-y"],
    ["run", "pipeline", "lr=0.4", "-y"],
    ["run", "train.py", "lr=[0.1,0.2]", "epochs=[1,2]", "-y"],
    # Several commands: an operation dependency on the run made first.
    [["run", "prepare", "-y"], ["run", "uses-prepared", "-y"]],
]


def _write_project(root: Path) -> None:
    root.mkdir(parents=True)
    for name, text in PROJECT.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())


def _run(exe: list[str], args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)  # Guild AI wants it to exist
    env = dict(os.environ, GUILD_HOME=str(home), NO_IMPORT_FLAGS_PROGRESS="1")
    if exe[0] == GUILD_AI:
        env.pop("PYTHONPATH", None)
    return subprocess.run(exe + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _describe(run: Run) -> dict:
    files = {
        str(p.relative_to(run.path)): _content(p)
        for p in sorted(run.path.rglob("*"))
        if ".guild" not in p.relative_to(run.path).parts and not p.is_dir()
        and p.name not in ("guild.yml",)  # Guild AI copies it only sometimes
    }
    proto = run.batch_proto
    return {
        "operation": run.op_name,
        "status": run.status,
        "flags": run.get("flags") or {},
        "label": run.get("label") or "",
        "tags": sorted(run.get("tags") or []),
        "scalars": {k: round(v, 5) for k, (v, _s) in run.last_scalars().items()},
        "files": files,
        "batch": bool(proto),
    }


def _content(path: Path):
    """A file as both tools should leave it: YAML compared as data (the
    two may spell it differently), other files byte for byte."""
    data = path.read_bytes()
    if path.suffix in (".yml", ".yaml"):
        import yaml

        return yaml.safe_load(data)
    return data


def _summary(home: Path) -> list[dict]:
    runs = runs_in(home / "runs")
    # Run ids differ between the two homes: a run a flag or label names
    # (a dependency) is compared by its operation.
    names = {r.id: f"<run of {r.op_name}>" for r in runs}

    def anonymous(val):
        if isinstance(val, str):
            for run_id, name in names.items():
                val = val.replace(run_id, name)
        return val

    described = []
    for r in reversed(runs):  # oldest first
        d = _describe(r)
        d["flags"] = {k: anonymous(v) for k, v in d["flags"].items()}
        d["label"] = anonymous(d["label"])
        described.append(d)
    return sorted(described, key=lambda d: (d["batch"], d["operation"], repr(sorted(d["flags"].items()))))


def _case_id(case) -> str:
    commands = case if isinstance(case[0], list) else [case]
    return " + ".join(" ".join(c[1:3]) for c in commands)


@pytest.mark.parametrize("args", CASES, ids=[_case_id(a) for a in CASES])
def test_same_runs_as_guild_ai(tmp_path, args):
    ours_project, theirs_project = tmp_path / "ours" / "project", tmp_path / "theirs" / "project"
    _write_project(ours_project)
    _write_project(theirs_project)
    for command in args if isinstance(args[0], list) else [args]:
        ours = _run([sys.executable, "-m", "guild_core.cli.main"], command, tmp_path / "ours" / "home", ours_project)
        theirs = _run([GUILD_AI], command, tmp_path / "theirs" / "home", theirs_project)
        assert (ours.returncode == 0) == (theirs.returncode == 0), (ours.stderr, theirs.stderr)
    # Guild AI 0.9 moves a finished batch run to the trash unless
    # --keep-batch (which guild does not have yet): compare the trials.
    got = [d for d in _summary(tmp_path / "ours" / "home") if not d["batch"]]
    want = [d for d in _summary(tmp_path / "theirs" / "home") if not d["batch"]]
    assert len(got) == len(want), (got, want)
    diffs = []
    for g, w in zip(got, want):
        for key in w:
            if g[key] != w[key]:
                diffs.append(f"{w['operation']} {key}: ours {g[key]!r} != Guild AI {w[key]!r}")
    assert not diffs, "\n".join(diffs)


RESTARTS = [
    (["run", "train.py", "lr=0.3", "-y"], "lr=0.4"),
    (["run", "train", "-y"], "lr=0.05"),
    (["run", "globals_train.py", "x=2", "-y"], "x=5"),
]


@pytest.mark.parametrize("first, flag", RESTARTS, ids=[r[0][1] for r in RESTARTS])
@pytest.mark.parametrize("maker", ["guild-ai", "guild"])
def test_runs_restart_across_tools(tmp_path, first, flag, maker):
    """A run made by one tool restarts under the other with a new flag
    value and completes. guild rewrites a Guild AI run's command, which
    goes through Guild AI's own guild.op_main, to start it as it starts
    its own; Guild AI rebuilds a guild run's command from its script or
    guild.yml operation, as it does for its own runs."""
    project = tmp_path / "project"
    _write_project(project)
    home = tmp_path / "home"
    ours = [sys.executable, "-m", "guild_core.cli.main"]
    make, restart = ([GUILD_AI], ours) if maker == "guild-ai" else (ours, [GUILD_AI])
    assert _run(make, first, home, project).returncode == 0
    [run] = runs_in(home / "runs")
    before = _describe(run)
    result = _run(restart, ["run", "--restart", run.id, flag, "-y"], home, project)
    assert "Traceback" not in result.stderr, result.stderr
    after = Run.for_dir(run.path)
    name, _, val = flag.partition("=")
    assert result.returncode == 0, result.stderr
    assert after.status == "completed"
    assert str(after.get("flags")[name]) == val
    assert after.last_scalars() != {} and before["files"].keys() == _describe(after)["files"].keys()
    # Both tools still read it.
    for exe in (ours, [GUILD_AI]):
        listed = _run(exe, ["runs", "info", run.id], home, project)
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr


def test_argument_encoding_matches_guild_ai(tmp_path):
    """What an argparse script receives for booleans, lists, mappings and
    small floats is what Guild AI passes it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "guild.yml").write_text(
        "enc:\n  main: show\n  flags-dest: args\n  flags:\n"
        "    yes-flag: yes\n    no-flag: no\n    small: 1.0e-05\n    mapping:\n      default: {a: 1, b: [2, 3]}\n"
        "    words:\n      default: hello world\n"
    )
    (project / "show.py").write_text("import sys\nprint('ARGV=%r' % (sys.argv[1:],))\n")
    outs = []
    for exe, home in (([sys.executable, "-m", "guild_core.cli.main"], "ours"), ([GUILD_AI], "theirs")):
        result = _run(exe, ["run", "enc", "-y"], tmp_path / home, project)
        assert result.returncode == 0, result.stderr
        outs.append([line for line in result.stdout.splitlines() if line.startswith("ARGV=")])
    assert outs[0] == outs[1] and outs[0]
