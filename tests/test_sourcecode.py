"""The source snapshot: Guild AI 0.9's select rules, their order, and
what `--test-sourcecode` prints (expected texts are Guild AI's output for
the same projects)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from guild_core import sourcecode
from guild_core.opdef import resolve
from guild_core.run import Run

DEFAULT_RULES = [
    "  exclude dir .*",
    "  exclude dir * containing .guild-nocopy",
    "  include text * size < 1048577, max match 100",
]
PYTHON_RULES = [
    "  exclude dir __pycache__",
    "  exclude dir * containing bin/activate",
    "  exclude dir * containing Scripts/activate",
    "  exclude dir build",
    "  exclude dir dist",
    "  exclude dir *.egg-info",
]


@pytest.fixture
def tree(project):
    project.write("train.py", "print('loss: 1')\n")
    project.write("d.csv", "a,b\n")
    project.write("sub/x.txt", "x\n")
    project.write(".hid/h.txt", "h\n")
    (project.path / "data").mkdir()
    (project.path / "data" / "big.bin").write_bytes(b"\x00" * 100)
    (project.path / "__pycache__").mkdir()
    (project.path / "__pycache__" / "t.pyc").write_bytes(b"\x00")
    return project


def lines(project, op: str) -> list[str]:
    opdef = resolve(op, project.path, lambda p: None)
    return sourcecode.test_sourcecode_for(opdef, project.path)


def manifest(home: Path) -> list[str]:
    (run_dir,) = list((home / "runs").iterdir())
    text = (run_dir / ".guild" / "manifest").read_text()
    return [line.split()[1] for line in text.splitlines()]


def test_include_refines_the_default(tree):
    tree.write("guild.yml", """
        train:
          main: train
          sourcecode:
            - exclude: '*.csv'
            - include: data/big.bin
        """)
    assert lines(tree, "train") == [
        "Copying from the current directory",
        "Rules:",
        *DEFAULT_RULES,
        *PYTHON_RULES,
        "  exclude *.csv",
        "  include data/big.bin",
        "Selected for copy:",
        "  guild.yml",
        "  train.py",
        "  data/big.bin",
        "  sub/x.txt",
        "Skipped:",
        "  .hid/",
        "  __pycache__/",
        "  d.csv",
    ]


def test_a_list_of_globs_selects_only_those(tree):
    # A directory named without a glob means the files under it.
    tree.write("guild.yml", "train:\n  main: train\n  sourcecode: ['*.py', sub]\n")
    out = lines(tree, "train")
    assert out[2 + len(DEFAULT_RULES) + len(PYTHON_RULES):] == [
        "  exclude *",
        "  include *.py",
        "  include sub/*",
        "Selected for copy:",
        "  train.py",
        "  sub/x.txt",
        "Skipped:",
        "  .hid/",
        "  __pycache__/",
        "  d.csv",
        "  guild.yml",
        "  data/big.bin",
    ]


def test_root_dest_and_no(tree):
    tree.write("guild.yml", """
        train:
          main: train
          sourcecode: {root: sub, dest: src, digest: no, select: [x.txt]}
        nocode:
          exec: 'true'
          sourcecode: no
        """)
    out = lines(tree, "train")
    assert out[0] == "Copying from 'sub'"
    assert out[-3:] == ["Selected for copy:", "  sub/x.txt", "Skipped:"]
    assert lines(tree, "nocode") == [
        "Copying from the current directory", "Rules:", "  exclude *", "Source code copy disabled",
    ]


def test_an_exec_operation_has_no_python_rules(tree):
    tree.write("guild.yml", "op:\n  exec: ./run.sh\n")
    out = lines(tree, "op")
    assert out[2:5] == DEFAULT_RULES and out[5] == "Selected for copy:"
    assert "  __pycache__/t.pyc" in out  # binary: skipped by the text rule, not pruned


def test_required_project_files_are_not_source(tree):
    tree.write("guild.yml", "op:\n  main: train\n  requires:\n    - file: d.csv\n")
    out = lines(tree, "op")
    assert "  d.csv" in out[out.index("Skipped:"):]


def test_run_copies_what_the_rules_select(cli, guild_home, tree):
    tree.write("guild.yml", """
        train:
          main: train
          sourcecode:
            - exclude: {dir: sub}
            - include: '*.bin'
        """)
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    assert manifest(guild_home) == ["d.csv", "data/big.bin", "guild.yml", "train.py"]


def test_model_sourcecode_comes_before_the_operation(cli, guild_home, tree):
    tree.write("guild.yml", """
        - model: m
          sourcecode:
            - exclude: '*.yml'
          operations:
            train:
              main: train
              sourcecode:
                - include: d.csv
            other:
              main: train
              sourcecode: ['*.py']
        """)
    out = lines(tree, "m:train")
    i = out.index("Selected for copy:")
    assert out[i - 2:i] == ["  exclude *.yml", "  include d.csv"]
    assert "  guild.yml" in out[out.index("Skipped:"):]
    assert cli("run", "m:other", "-y").exit_code == 0
    assert manifest(guild_home) == ["train.py"]


def test_model_no_is_undone_by_an_operation_selecting(tree):
    tree.write("guild.yml", """
        - model: m
          sourcecode: no
          operations:
            a: train
            b:
              main: train
              sourcecode: [train.py]
        """)
    assert lines(tree, "m:a")[-1] == "Source code copy disabled"
    assert "  train.py" in lines(tree, "m:b")


def test_digest_no_writes_no_digest(cli, guild_home, tree):
    tree.write("guild.yml", "train:\n  main: train\n  sourcecode: {digest: no}\n")
    assert cli("run", "train", "-y").exit_code == 0
    (run_dir,) = list((guild_home / "runs").iterdir())
    assert Run.for_dir(run_dir).get("sourcecode_digest") is None
    assert "train.py" in manifest(guild_home)


def test_the_file_limit_counts_like_guild_ai(cli, guild_home, project):
    # The default rule counts every text file it matches, even one a
    # later rule excludes; with rules of its own guild.yml hears no
    # warning (as in Guild AI).
    for i in range(105):
        project.write(f"f{i:03}.txt", "x\n")
    project.write("guild.yml", "op:\n  exec: 'true'\n  sourcecode: [{exclude: 'f00*.txt'}]\n")
    result = cli("run", "op", "-y")
    assert result.exit_code == 0
    assert "source code files" not in result.stderr
    assert len(manifest(guild_home)) == 100 - 10


def test_the_default_limits_warn(cli, guild_home, project):
    for i in range(105):
        project.write(f"f{i:03}.txt", "x\n")
    project.write("big.txt", "x" * (1024 * 1024 + 1))
    project.write("guild.yml", "op:\n  exec: 'true'\n")
    result = cli("run", "op", "-y")
    assert result.exit_code == 0
    assert result.stderr.count("found more than 100 source code files") == 1
    assert "skipping potential source code file big.txt" in result.stderr
    assert len(manifest(guild_home)) == 100


def test_a_guild_home_inside_the_project_is_not_copied(cli, guild_home, project, monkeypatch):
    inner = project.path / "home"
    (inner / "runs").mkdir(parents=True)
    (inner / "cache").mkdir()
    (inner / "runs" / "note.txt").write_text("x\n")
    project.write("guild.yml", "op:\n  exec: 'true'\n")
    assert cli("run", "op", "-y").exit_code == 0
    assert manifest(guild_home) == ["guild.yml"]


@pytest.mark.parametrize(
    "config, message",
    [
        ("[{include: a, exclude: b}]", "not both"),
        ("[{include: {file: a}}]", "expected dir, text or binary"),
        ("[{keep: a}]", "invalid sourcecode rule"),
        ("[5]", "invalid sourcecode rule: 5"),
    ],
)
def test_bad_rules_are_one_error(cli, guild_home, project, config, message):
    project.write("train.py", "")
    gf = project.write("guild.yml", f"train:\n  main: train\n  sourcecode: {config}\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"{gf}:3: " in result.stderr and message in result.stderr
    assert not list((guild_home / "runs").glob("*"))


# ---------------------------------------------------------------------
# vcs_commit
# ---------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def last_run(home: Path) -> Run:
    runs = sorted((home / "runs").iterdir(), key=lambda p: Run.for_dir(p).get("initialized"))
    return Run.for_dir(runs[-1])


def test_vcs_commit(cli, guild_home, project, monkeypatch):
    monkeypatch.setenv("GUILD_HOME", str(guild_home))
    project.write("guild.yml", "op:\n  exec: 'true'\n")
    assert cli("run", "op", "-y").exit_code == 0
    assert last_run(guild_home).get("vcs_commit") is None  # not a repository
    git(project.path, "init", "-q")
    assert cli("run", "op", "-y").exit_code == 0
    assert last_run(guild_home).get("vcs_commit") is None  # no commit yet
    git(project.path, "add", "guild.yml")
    git(project.path, "commit", "-qm", "first")
    sha = git(project.path, "rev-parse", "HEAD").strip()
    assert cli("run", "op", "-y").exit_code == 0
    assert last_run(guild_home).get("vcs_commit") == f"git:{sha}"
    project.write("new.txt", "untracked\n")
    assert cli("run", "op", "-y").exit_code == 0
    assert last_run(guild_home).get("vcs_commit") == f"git:{sha}*"
    monkeypatch.setenv("NO_VCS_COMMIT", "1")
    assert cli("run", "op", "-y").exit_code == 0
    assert last_run(guild_home).get("vcs_commit") is None


def test_vcs_commit_of_a_subdirectory_is_its_last_commit(project):
    git(project.path, "init", "-q")
    project.write("sub/a.txt", "a\n")
    git(project.path, "add", ".")
    git(project.path, "commit", "-qm", "a")
    first = git(project.path, "rev-parse", "HEAD").strip()
    project.write("b.txt", "b\n")
    git(project.path, "add", ".")
    git(project.path, "commit", "-qm", "b")
    assert sourcecode.vcs_commit(project.path / "sub") == f"git:{first}"
    assert sourcecode.vcs_commit(project.path) == "git:" + git(project.path, "rev-parse", "HEAD").strip()


def test_in_a_git_repository_git_decides(tree):
    # Guild AI's rules there: every file git does not ignore, hidden
    # directories and binary files included, no size or count limit.
    git(tree.path, "init", "-q")
    tree.write(".gitignore", "*.bin\n")
    tree.write(".guildignore", "*.csv\n")
    tree.write("guild.yml", "train:\n  main: train\n  sourcecode:\n    - exclude: {dir: sub}\n")
    out = lines(tree, "train")
    assert out == [
        "Copying from the current directory",
        "Rules:",
        "  exclude dir .guild",
        "  exclude dir * containing .guild-nocopy",
        "  exclude dir .git, data",
        "  gitignore + guildignore patterns",
        "  exclude .git*, .guildignore",
        "  exclude dir sub",
        "Selected for copy:",
        "  guild.yml",
        "  train.py",
        "  .hid/h.txt",
        "  __pycache__/t.pyc",
        "Skipped:",
        "  .git/",
        "  data/",
        "  sub/",
        "  .gitignore",
        "  .guildignore",
        "  d.csv",
    ]


def test_a_pipeline_copies_no_source_code(tree):
    tree.write("guild.yml", "train:\n  main: train\npipe:\n  steps: [train]\n")
    assert lines(tree, "pipe") == ["Copying from the current directory", "Rules:", "Source code copy disabled"]


# -- the same projects under Guild AI 0.9 (skipped unless GUILD_AI_EXE
# names its guild) ----------------------------------------------------------

GUILD_AI = os.environ.get("GUILD_AI_EXE")

SOURCECODE_CASES = {
    "default": "train:\n  main: train\n",
    "exec": "op:\n  exec: ./run.sh\n",
    "refine": "train:\n  main: train\n  sourcecode:\n    - exclude: '*.csv'\n    - include: data/big.bin\n    - exclude: {dir: sub}\n",
    "only": "train:\n  main: train\n  sourcecode: ['*.py', sub]\n",
    "one": "train:\n  main: train\n  sourcecode: train.py\n",
    "root": "train:\n  main: train\n  sourcecode: {root: sub, dest: src, select: [x.txt]}\n",
    "no": "train:\n  main: train\n  sourcecode: no\n",
    "model": (
        "- model: m\n  sourcecode: [{exclude: '*.yml'}]\n  operations:\n"
        "    a: {main: train, sourcecode: [{include: d.csv}]}\n    b: {main: train, sourcecode: no}\n"
    ),
    "requires": "train:\n  main: train\n  requires:\n    - file: d.csv\n",
}


@pytest.mark.skipif(not GUILD_AI, reason="GUILD_AI_EXE does not name Guild AI 0.9's guild")
@pytest.mark.parametrize("name", sorted(SOURCECODE_CASES))
@pytest.mark.parametrize("in_git", [False, True], ids=["plain", "git"])
def test_same_selection_as_guild_ai(tree, tmp_path, name, in_git):
    if in_git:
        git(tree.path, "init", "-q")
        tree.write(".gitignore", "*.bin\n")
    tree.write("guild.yml", SOURCECODE_CASES[name])
    home = tmp_path / "guild-ai-home"
    home.mkdir()
    env = dict(os.environ, GUILD_HOME=str(home))
    env.pop("PYTHONPATH", None)
    ops = subprocess.run([GUILD_AI, "operations"], cwd=tree.path, env=env, capture_output=True, text=True).stdout
    for op in [line.split()[0] for line in ops.splitlines() if line.strip()]:
        proc = subprocess.run(
            [GUILD_AI, "run", op, "--test-sourcecode"], cwd=tree.path, env=env, capture_output=True, text=True,
        )
        assert lines(tree, op) == proc.stdout.splitlines(), op


@pytest.mark.parametrize(
    "name, data, text",
    [
        ("a.txt", b"\x00\x00", True),          # by extension
        ("b.svg", b"<svg/>", False),           # by extension
        ("c.dat", b"hello", True),
        ("e.dat", "h\u00e9llo w\u00f6rld".encode(), True),
        ("h.dat", "\u65e5\u672c\u8a9e".encode() * 10, True),  # mostly high bytes, but UTF-8
        ("j.dat", b"abc\xffdef", False),
        ("k.json", b'{"a": 1}', True),
        ("g.dat", b"", True),
        ("d.dat", b"\x00abc", False),          # Guild AI 0.9 fails on these two
        ("f.dat", b"\x01\x02\x03\x04", False),
    ],
)
def test_text_files_as_guild_ai_decides(tmp_path, name, data, text):
    (tmp_path / name).write_bytes(data)
    assert sourcecode.is_text_file(tmp_path / name) is text
