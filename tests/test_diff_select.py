"""`guild diff` and `guild select` through the real CLI."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys
import textwrap

import pytest

from guild_core.run import Run

TRAIN = """
import sys
x = 1
opt = "adam"
for i in range(3):
    print("loss: %s" % (x / 2 ** (i + 1)))
print("acc: %s" % (1 - x / 8))
if x == 3:
    sys.exit(2)
"""

OTHER = """
print("acc: 0.5")
"""

BASE = datetime.datetime(2024, 1, 1, 12, 0, 0)

# Records what it was asked to compare: its arguments and what the two
# paths hold (a file's text, a directory's files and their text).
FAKE_DIFF = """
import json, os, sys

def text(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "<binary>"

def describe(path):
    if os.path.isdir(path):
        out = {}
        for root, _dirs, files in os.walk(path):
            for name in files:
                full = os.path.join(root, name)
                out[os.path.relpath(full, path)] = text(full)
        return out
    if os.path.isfile(path):
        return text(path)
    return None

log, left, right = sys.argv[1:]
with open(log, "a") as f:
    f.write(json.dumps({"args": [left, right], "left": describe(left), "right": describe(right)}) + "\\n")
sys.exit(int(os.environ.get("FAKE_DIFF_EXIT", "1")))
"""


def micros(dt: datetime.datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


@pytest.fixture
def runs(cli, guild_home, project):
    """Five runs, newest first: e (staged x=4), d (other.py), c (error
    x=3), b (x=2 opt=sgd, marked, changed train.py), a (x=1)."""
    project.write("train.py", TRAIN)
    project.write("other.py", OTHER)
    assert cli("run", "train.py", "x=1", "-l", "a", "-y").exit_code == 0
    project.write("train.py", TRAIN + "# changed\n")
    assert cli("run", "train.py", "x=2", "opt=sgd", "-l", "b", "-y").exit_code == 0
    assert cli("run", "train.py", "x=3", "-l", "c", "-y").exit_code == 2
    assert cli("run", "other.py", "-l", "d", "-y").exit_code == 0
    assert cli("run", "train.py", "x=4", "-l", "e", "--stage", "-y").exit_code == 0
    by_label = {}
    for p in (guild_home / "runs").iterdir():
        run = Run.for_dir(p)
        by_label[run.get("label")] = run
    for days, label in enumerate("abcde"):
        start = micros(BASE + datetime.timedelta(days=days))
        by_label[label].write_attr("started", start)
        if label != "e":
            by_label[label].write_attr("stopped", start + 2_000_000)
    by_label["b"].write_attr("marked", True)
    return by_label


@pytest.fixture
def fake_diff(tmp_path, monkeypatch):
    """`-c` for the fake program; `calls()` reads what it recorded."""
    script = tmp_path / "fakediff.py"
    script.write_text(textwrap.dedent(FAKE_DIFF).lstrip())
    log = tmp_path / "fakediff.log"
    monkeypatch.delenv("FAKE_DIFF_EXIT", raising=False)

    class Fake:
        cmd = " ".join(shlex.quote(str(p)) for p in (sys.executable, script, log))

        @staticmethod
        def calls():
            if not log.exists():
                return []
            calls = [json.loads(line) for line in log.read_text().splitlines()]
            log.unlink()
            return calls

    return Fake()


def diff(cli, fake, *args):
    result = cli("diff", "-c", fake.cmd, *args)
    assert result.exit_code == 0, result.stderr
    return fake.calls()


def fails(result, message):
    assert result.exit_code == 1
    assert result.output == ""
    assert result.stderr.splitlines()[0] == message


# -- diff: which runs ------------------------------------------------


def test_diff_default_is_latest_two_older_first(cli, runs, fake_diff):
    calls = diff(cli, fake_diff)
    assert [c["args"] for c in calls] == [[str(runs["d"].path), str(runs["e"].path)]]


def test_diff_filters_and_run_args(cli, runs, fake_diff):
    calls = diff(cli, fake_diff, "-Fo", "train.py", "-Sc")
    assert calls[0]["args"] == [str(runs["a"].path), str(runs["b"].path)]
    # One RUN: that run and the latest.
    calls = diff(cli, fake_diff, runs["a"].short_id)
    assert calls[0]["args"] == [str(runs["a"].path), str(runs["e"].path)]
    calls = diff(cli, fake_diff, "2", "-Sc")
    assert calls[0]["args"] == [str(runs["b"].path), str(runs["d"].path)]
    # Two RUNs, in the order given.
    calls = diff(cli, fake_diff, runs["c"].id, "5")
    assert calls[0]["args"] == [str(runs["c"].path), str(runs["a"].path)]


def test_diff_run_directories(cli, runs, fake_diff):
    (call,) = diff(cli, fake_diff, "5", "4")
    assert "train.py" in call["left"] and ".guild/attrs/flags" in call["left"]
    assert "# changed" not in call["left"]["train.py"]
    assert "# changed" in call["right"]["train.py"]


# -- diff: what is compared ------------------------------------------


def test_diff_flags_temp_files(cli, runs, fake_diff):
    (call,) = diff(cli, fake_diff, "--flags", "5", "4")
    assert call["left"] == "opt: adam\nx: 1\n"
    assert call["right"] == "opt: sgd\nx: 2\n"
    left, right = call["args"]
    assert left.endswith(f"/{runs['a'].short_id}/flags")
    assert right.endswith(f"/{runs['b'].short_id}/flags")
    # Removed afterwards, directory and all.
    assert not os.path.exists(left) and not os.path.exists(os.path.dirname(os.path.dirname(left)))
    assert diff(cli, fake_diff, "-f", "5", "4")[0]["left"] == call["left"]


def test_diff_env(cli, runs, fake_diff):
    (call,) = diff(cli, fake_diff, "--env", "5", "4")
    assert "FLAG_X: 1\n" in call["left"] and "FLAG_X: 2\n" in call["right"]
    assert f"RUN_ID: {runs['a'].id}\n" in call["left"]
    assert not os.path.exists(call["args"][0])


def test_diff_attrs(cli, runs, fake_diff):
    (call,) = diff(cli, fake_diff, "--attrs", "5", "4")
    assert call["args"] == [str(runs["a"].guild_path("attrs")), str(runs["b"].guild_path("attrs"))]
    assert call["left"]["label"] == "a\n" and call["right"]["label"] == "b\n"
    # --attrs includes the flags: --flags is ignored, with a warning.
    result = cli("diff", "-c", fake_diff.cmd, "-a", "-f", "5", "4")
    assert result.exit_code == 0
    assert result.stderr == "WARNING: ignoring --flags (already included in --attrs)\n"
    assert len(fake_diff.calls()) == 1


def test_diff_output(cli, runs, fake_diff):
    (call,) = diff(cli, fake_diff, "--output", "5", "4")
    assert call["args"] == [str(runs["a"].guild_path("output")), str(runs["b"].guild_path("output"))]
    assert call["left"] == "loss: 0.5\nloss: 0.25\nloss: 0.125\nacc: 0.875\n"
    assert diff(cli, fake_diff, "-O", "5", "4") == [call]


def test_diff_sourcecode_snapshot(cli, runs, fake_diff):
    (call,) = diff(cli, fake_diff, "--sourcecode", "5", "4")
    assert sorted(call["left"]) == ["other.py", "train.py"]
    assert "# changed" not in call["left"]["train.py"]
    assert call["right"]["train.py"].endswith("# changed\n")
    assert call["args"][0].endswith(f"/{runs['a'].short_id}/sourcecode")
    assert not os.path.exists(call["args"][0])
    # A path inside the snapshot.
    (call,) = diff(cli, fake_diff, "-s", "-p", "train.py", "5", "4")
    assert call["args"][0].endswith(f"/{runs['a'].short_id}/sourcecode/train.py")
    assert call["right"].endswith("# changed\n")


def test_diff_paths(cli, runs, fake_diff):
    calls = diff(cli, fake_diff, "-p", "train.py", "--path", ".guild/attrs/label", "5", "4")
    assert [c["args"] for c in calls] == [
        [str(runs["a"].path / "train.py"), str(runs["b"].path / "train.py")],
        [str(runs["a"].path / ".guild/attrs/label"), str(runs["b"].path / ".guild/attrs/label")],
    ]
    assert calls[1]["left"] == "a\n"


def test_diff_options_combine(cli, runs, fake_diff):
    calls = diff(cli, fake_diff, "--flags", "--output", "-p", "train.py", "5", "4")
    assert [os.path.basename(c["args"][0]) for c in calls] == ["flags", "output", "train.py"]


def test_diff_exit_status(cli, runs, fake_diff, monkeypatch):
    # The fake exits 1 (differences): not an error.
    assert cli("diff", "-c", fake_diff.cmd).exit_code == 0
    assert len(fake_diff.calls()) == 1
    monkeypatch.setenv("FAKE_DIFF_EXIT", "3")
    result = cli("diff", "-c", fake_diff.cmd, "--flags")
    assert result.exit_code == 3
    assert result.stderr == f"guild: '{fake_diff.cmd}' exited with status 3\n"
    # Temp files are removed on failure too.
    (call,) = fake_diff.calls()
    assert not os.path.exists(call["args"][0])


def test_diff_with_diff_program(sh, runs):
    result = sh("diff", "--flags", "-Fo", "train.py", "-Sc")
    assert result.exit_code == 0, result.stderr
    assert "-opt: adam\n-x: 1\n+opt: sgd\n+x: 2\n" in result.output
    assert f"/{runs['a'].short_id}/flags" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["-c", "no-such-diff-program"], "guild: cannot run 'no-such-diff-program': not found"),
        (["-c", "'unclosed"], "guild: invalid --cmd ''unclosed': No closing quotation"),
        (["-c", " "], "guild: --cmd cannot be empty"),
        (["-Fo", "other.py"], "guild: diff requires two runs"),
        (["-Fo", "nothing"], "guild: no matching runs"),
        (["1"], "guild: diff requires two runs ('1' is the latest run; give a second RUN)"),
        (["2", "2"], "guild: diff requires two runs ('2' and '2' are the same run)"),
        (["nosuch", "1"], "guild: could not find a run matching 'nosuch'"),
        (["-p", "nosuch", "5", "4"], None),
        (["-s", "-p", "nosuch", "5", "4"], None),
    ],
)
def test_diff_errors(cli, runs, fake_diff, args, message):
    if "-c" not in args:
        args = ["-c", fake_diff.cmd] + args
    result = cli("diff", *args)
    if message is None:
        a, b = runs["a"].short_id, runs["b"].short_id
        where = "source code of run" if "-s" in args else "run"
        message = f"guild: 'nosuch' is not in the {where} {a} or {b}"
    fails(result, message)
    assert fake_diff.calls() == []


def test_diff_usage_error(cli, runs):
    result = cli("diff", "1", "2", "3")
    assert result.exit_code == 2
    assert "Got unexpected extra argument (3)" in result.stderr


# -- select ----------------------------------------------------------


def select(cli, *args):
    result = cli("select", *args)
    assert result.exit_code == 0, result.stderr
    return result.output.splitlines()


def test_select_default_and_run(cli, runs):
    assert select(cli) == [runs["e"].id]
    assert select(cli, "3") == [runs["c"].id]
    assert select(cli, runs["b"].short_id) == [runs["b"].id]
    assert select(cli, "-Fo", "train.py", "-Sc") == [runs["b"].id]
    assert select(cli, "1", "-Sc", "-F", "x < 2") == [runs["a"].id]


def test_select_short_id_and_path(cli, runs):
    assert select(cli, "-s", "2") == [runs["d"].short_id]
    assert select(cli, "--short-id") == [runs["e"].short_id]
    assert select(cli, "-p", "2") == [str(runs["d"].path)]
    assert select(cli, "--dir") == [str(runs["e"].path)]


def test_select_all_and_several(cli, runs):
    assert select(cli, "-A") == [runs[x].id for x in "edcba"]
    assert select(cli, "--all", "-Sc", "-s") == [runs[x].short_id for x in "dba"]
    assert select(cli, "-A", "2:3") == [runs["d"].id, runs["c"].id]
    # Several RUNs: all of them, in list order.
    assert select(cli, "5", "1") == [runs["e"].id, runs["a"].id]


@pytest.mark.parametrize(
    "args, label",
    [
        (["--min", "loss"], "a"),
        (["--max", "loss"], "c"),
        (["-max", "loss", "-Sc"], "b"),
        (["--min", "max loss"], "a"),
        (["--max", "max acc"], "a"),
        (["--min", "acc"], "d"),
        (["--min", "=x"], "a"),
        (["--max", "=x"], "e"),
        (["-min", "=opt"], "e"),  # adam < sgd; ties go to the newest
        (["--max", ".label"], "e"),
        (["--min", "loss step"], "c"),
        (["--max", "loss", "4:5"], "b"),
        (["--max", "loss", "-A"], "c"),
    ],
)
def test_select_min_max(cli, runs, args, label):
    assert select(cli, *args) == [runs[label].id]


def test_select_attr(cli, runs):
    assert select(cli, "--attr", "label", "4") == ["b"]
    assert select(cli, "-a", "flags", "4") == ["opt: sgd", "x: 2"]
    assert select(cli, "-a", "started", "5") == ["2024-01-01 12:00:00"]
    assert select(cli, "-a", "marked", "4") == ["yes"]
    assert select(cli, "-a", "marked", "5") == ["no"]
    assert select(cli, "-a", "exit_status", "3") == ["2"]
    assert select(cli, "-a", "exit_status", "1") == [""]
    assert select(cli, "-a", "status", "1") == ["staged"]
    assert select(cli, "-a", "operation", "2") == ["other.py"]
    assert select(cli, "-a", "duration", "5") == ["0:00:02"]
    assert select(cli, "-a", "initialized", "5") == [str(runs["a"].get("initialized"))]
    assert select(cli, "-a", "label", "-A", "-Sc") == ["d", "b", "a"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-Fo", "nothing"], "guild: no matching runs"),
        (["-Fo", "nothing", "-A"], "guild: no matching runs"),
        (["--min", "loss", "-Fo", "other.py"], "guild: no matching runs with a value for 'loss'"),
        (["--min", "nosuch"], "guild: no matching runs with a value for 'nosuch'"),
        (["--min", "=x,=y"], "guild: invalid column spec '=x,=y': expected one column, found 2"),
        (["--max", "min"], "guild: invalid column spec 'min': expected a scalar name at the end"),
        (["--min", "loss", "--max", "loss"], "guild: --min and --max cannot both be specified"),
        (["-s", "-a", "label"], "guild: --short-id and --attr cannot both be specified"),
        (["-p", "-a", "label"], "guild: --path and --attr cannot both be specified"),
        (["-a", "nosuch"], "guild: no such run attribute 'nosuch'"),
        (["9"], "guild: could not find run for index 9 (5 runs)"),
        (["1:2"], "guild: '1:2' matches 2 runs, expected one"),
    ],
)
def test_select_errors(cli, runs, args, message):
    if args == ["9"]:
        # An index out of range may still be an id prefix: use one that is not.
        spec = next(str(i) for i in range(6, 100) if not any(r.id.startswith(str(i)) for r in runs.values()))
        args, message = [spec], message.replace("index 9", f"index {spec}")
    fails(cli("select", *args), message)


# -- diff: --working, --dir, --deps (Guild AI's -w, -d, -D) ----------


def test_diff_working_compares_source_code_with_the_project(cli, runs, fake_diff, project):
    (call,) = diff(cli, fake_diff, "--working", runs["a"].short_id)
    left, right = call["args"]
    assert right == str(project.path)
    assert "# changed" not in call["left"]["train.py"] and "# changed" in call["right"]["train.py"]
    assert ".guild/attrs/flags" not in call["left"]
    (call,) = diff(cli, fake_diff, "-w", runs["a"].short_id, "-p", "train.py")
    assert call["args"][1] == str(project.path / "train.py")
    result = cli("diff", "-c", fake_diff.cmd, "-w", "1", "2")
    fails(result, "guild: --working diffs one run: give at most one RUN")


def test_diff_dir_and_deps(cli, runs, fake_diff, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.py").write_text("x = 9\n")
    (call,) = diff(cli, fake_diff, "--dir", str(other), runs["b"].short_id)
    assert call["args"] == [str(runs["b"].path), str(other)]
    (call,) = diff(cli, fake_diff, "-d", str(other), "-s", runs["b"].short_id)
    assert "# changed" in call["left"]["train.py"] and ".guild/attrs/flags" not in call["left"]
    fails(cli("diff", "-d", str(tmp_path / "nope"), "1"), f"guild: cannot diff with {tmp_path / 'nope'}: not a directory")
    fails(cli("diff", "-w", "-d", str(other)), "guild: --working and --dir cannot both be used")
    (call,) = diff(cli, fake_diff, "--deps", "5", "4")
    assert call["left"] == "" and call["right"] == ""
    assert call["args"][0].endswith(f"/{runs['a'].short_id}/deps")
