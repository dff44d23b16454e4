"""One selection for every command: RUN specs and every filter option,
through the real CLI over real runs."""

from __future__ import annotations

import datetime
import json

import pytest

from guild_core.run import Run

TRAIN = """
import sys
x = 1
loss = 1.0
print("loss: %s" % loss)
if x == 3:
    sys.exit(2)
"""

OTHER = """
print("acc: 0.9")
"""


def _runs(cli, *args):
    result = cli("runs", "list", "--json", "-a", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.output)


def labels(cli, *args):
    return [r["label"] for r in _runs(cli, *args)]


@pytest.fixture
def home_runs(cli, guild_home, project):
    """Five runs, oldest first: a b c(error) d(other.py) e(staged)."""
    project.write("train.py", TRAIN)
    project.write("other.py", OTHER)
    assert cli("run", "train.py", "x=1", "loss=0.5", "-l", "a best", "-y").exit_code == 0
    assert cli("run", "train.py", "x=2", "loss=0.2", "-l", "b", "--tag", "keep", "-y").exit_code == 0
    assert cli("run", "train.py", "x=3", "loss=0.9", "-l", "c", "-y").exit_code == 2
    assert cli("run", "other.py", "-l", "d best", "-y").exit_code == 0
    assert cli("run", "train.py", "x=4", "-l", "e", "--stage", "-y").exit_code == 0
    runs = {Run.for_dir(p).get("label"): Run.for_dir(p) for p in (guild_home / "runs").iterdir()}
    # Distinct start times: 3, 2 and 1 days ago, and an hour ago.
    now = datetime.datetime.now()
    ago = {"a best": datetime.timedelta(days=3), "b": datetime.timedelta(days=2),
           "c": datetime.timedelta(days=1), "d best": datetime.timedelta(hours=1)}
    for name, delta in ago.items():
        started = now - delta
        if name == "d best":
            # Today, even in the first hour after midnight.
            started = max(started, datetime.datetime.combine(now.date(), datetime.time(0, 0, 1)))
        runs[name].write_attr("started", int(started.timestamp() * 1e6))
    runs["b"].write_attr("marked", True)
    return runs


def test_indexes_are_positions_after_filtering(cli, home_runs):
    # Newest first; the staged run was initialized last.
    assert labels(cli) == ["e", "d best", "c", "b", "a best"]
    info = cli("runs", "info", "1", "-Sc", "-Fo", "train.py", "--json")
    assert json.loads(info.output)["label"] == "b"
    assert json.loads(cli("runs", "info", "2", "-Sc", "--json").output)["label"] == "b"


@pytest.mark.parametrize(
    "specs, expected",
    [
        (["1"], ["e"]),
        (["2", "4"], ["d best", "b"]),
        (["2:3"], ["d best", "c"]),
        ([":2"], ["e", "d best"]),
        (["4:"], ["b", "a best"]),
        ([":"], ["e", "d best", "c", "b", "a best"]),
        (["1", "1:2"], ["e", "d best"]),
    ],
)
def test_run_specs(cli, home_runs, specs, expected):
    out = cli("runs", "label", "-a", "sel", "-y", *specs)
    assert out.exit_code == 0, out.stderr
    assert [lbl for lbl in labels(cli) if lbl.endswith(" sel")] == [e + " sel" for e in expected]


def test_id_and_prefix_specs(cli, home_runs):
    run = home_runs["c"]
    # A short all-digit spec is an index, so the prefix must hold a letter.
    short = next(run.id[:n] for n in range(5, 33) if not run.id[:n].isdigit())
    for spec in (run.id, run.id[:8], short):
        out = cli("runs", "info", spec, "--json")
        assert json.loads(out.output)["id"] == run.id


def test_spec_errors_name_the_spec(cli, home_runs):
    # An index out of range may still be an id prefix: use one that is not.
    spec = next(str(i) for i in range(6, 100) if not any(r.id.startswith(str(i)) for r in home_runs.values()))
    out = cli("runs", "info", spec)
    assert out.exit_code == 1
    assert out.stderr.strip() == f"guild: could not find run for index {spec} (5 runs)"
    out = cli("runs", "info", "ffffffff")
    assert out.stderr.splitlines()[0] == "guild: could not find a run matching 'ffffffff'"
    # Digits that are no index may still be an id prefix (Guild AI's rule).
    run = home_runs["b"]
    digits = next((run.id[:n] for n in range(1, 8) if run.id[:n].isdigit() and int(run.id[:n]) > 5), None)
    if digits and sum(r.id.startswith(digits) for r in home_runs.values()) == 1:
        assert json.loads(cli("runs", "info", digits, "--json").output)["id"] == run.id
    # Two runs whose ids share a prefix: copies of a run directory.
    import shutil

    src = home_runs["b"].path
    for suffix in ("1", "2"):
        shutil.copytree(src, src.parent / ("abcdef" + "0" * 25 + suffix))
    out = cli("runs", "info", "abcdef")
    assert out.exit_code == 1
    assert out.stderr.startswith("guild: 'abcdef' is ambiguous: it matches 2 runs")
    out = cli("runs", "info", "abcdef" + "0" * 25 + "2", "--json")
    assert out.exit_code == 0


@pytest.mark.parametrize(
    "args, expected",
    [
        (["-Fo", "train.py"], ["e", "c", "b", "a best"]),
        (["-Fo", "other.py", "-Fo", "train.py"], ["e", "d best", "c", "b", "a best"]),
        (["--operation", "^oth"], ["d best"]),
        (["-Fo", "t*"], ["e", "c", "b", "a best"]),
        # As the seeds say: any part of the operation name containing it.
        (["-Fo", "trai"], ["e", "c", "b", "a best"]),
        (["-Fo", "her.p"], ["d best"]),
        (["-Fo", ".py"], ["e", "d best", "c", "b", "a best"]),
        (["-Fl", "best"], ["d best", "a best"]),
        (["--label", "b", "-Fl", "e"], ["e", "d best", "b", "a best"]),
        (["-Ft", "keep"], ["b"]),
        (["--tag", "nope"], []),
        (["-Fm"], ["b"]),
        (["--unmarked"], ["e", "d best", "c", "a best"]),
        (["-Sc"], ["d best", "b", "a best"]),
        (["--error"], ["c"]),
        (["-Ss"], ["e"]),
        (["-Set"], ["c"]),
        (["-Sce"], ["d best", "c", "b", "a best"]),
        (["--not-completed"], ["e", "c"]),
        (["--not-completed", "--not-staged"], ["c"]),
        (["-Sp"], []),
        (["-Sr"], []),
        (["-St"], []),
        (["-F", "loss < 0.6"], ["b", "a best"]),
        (["-F", "x in [1, 3] or label contains D"], ["d best", "c", "a best"]),
        (["-F", "loss < 0.6", "-Fl", "best"], ["a best"]),
        (["-F", "completed and acc is undefined"], ["b", "a best"]),
        (["-Fs", "last 2 days"], ["e", "d best", "c"]),
        (["-Fs", "last 90 min"], ["e", "d best"]),
        (["-Fs", "last 2 hr"], ["e", "d best"]),
    ],
)
def test_filters(cli, home_runs, args, expected):
    assert labels(cli, *args) == expected


def test_unlabeled_and_dash(cli, home_runs):
    cli("runs", "label", "--clear", "-y", home_runs["c"].id)
    assert labels(cli, "-Fu") == [None]
    assert labels(cli, "-Fl", "-") == [None]
    out = cli("runs", "list", "-Fl", "x", "-Fu")
    assert out.exit_code == 1 and "--label and --unlabeled cannot both be used" in out.stderr


def test_comment_filter(cli, home_runs):
    cli("runs", "comment", "-m", "Promising Result", "-y", home_runs["a best"].id)
    assert labels(cli, "-Fc", "promising") == ["a best"]
    assert labels(cli, "-Fc", "-") == ["e", "d best", "c", "b"]


def test_digest_filter(cli, home_runs):
    digest = home_runs["a best"].get("sourcecode_digest")
    home_runs["d best"].write_attr("sourcecode_digest", "f" * 32)
    assert labels(cli, "-Fd", digest[:6]) == ["e", "c", "b", "a best"]
    assert labels(cli, "-Fd", "fff") == ["d best"]
    assert labels(cli, "--digest", "0000000") == []


def test_started_range(cli, home_runs):
    three_days_ago = (datetime.date.today() - datetime.timedelta(days=3)).isoformat()
    assert labels(cli, "-Fs", three_days_ago) == ["a best"]
    assert labels(cli, "-Fs", f"after {three_days_ago}", "-Fo", "train.py") == ["e", "c", "b", "a best"]
    yesterday = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    assert labels(cli, "-Fs", f"before {yesterday}", "-Sc") == ["b", "a best"]
    assert labels(cli, "-Fs", f"between {yesterday} and {three_days_ago}") == ["c", "b", "a best"]


def test_filter_errors(cli, home_runs):
    out = cli("runs", "list", "-F", "acc = (0.9)")
    assert out.exit_code == 1
    assert out.stderr.strip() == "guild: syntax error in filter at position 6: unexpected token '('"
    out = cli("runs", "list", "-Fs", "lst week")
    assert out.exit_code == 1 and out.stderr.startswith("guild: invalid RANGE: ")
    assert "Traceback" not in out.stderr
    out = cli("runs", "list", "-Sx")
    assert out.exit_code == 2 and "unrecognized status char 'x'" in out.stderr


def test_every_run_command_takes_filters(cli, home_runs):
    """The same options select the same runs in each command."""
    for cmd in (
        ["runs", "list"], ["runs", "info"], ["runs", "delete"], ["runs", "restore"],
        ["runs", "purge"], ["runs", "label"], ["runs", "tag"], ["runs", "mark"],
        ["runs", "comment"], ["export"], ["import"], ["cat"], ["ls"], ["stop"],
    ):
        out = cli(*cmd, "--help")
        assert out.exit_code == 0, cmd
        for opt in ("-F, --filter", "-Fo, --operation", "-Fs, --started", "-Sc, --completed / --not-completed"):
            assert opt in out.output, (cmd, opt)
    out = cli("ls", "-Ft", "keep")
    assert out.exit_code == 0 and home_runs["b"].id in out.output
    out = cli("cat", "--output", "-Fl", "c")
    assert out.output.strip() == "loss: 0.9"


def test_run_label_is_a_template(cli, guild_home, project):
    project.write("t.py", "lr = 0.1\nbatch = 8\n")
    assert cli("run", "t.py", "lr=0.5", "-l", "lr=${lr} [${default_label}]", "-y").exit_code == 0
    assert labels(cli) == ["lr=0.5 [batch=8 lr=0.5]"]


SEED_FILTERS = [
    ("operation = train.py and loss < 0.6", ["b", "a best"]),
    ("operation = train.py and (loss < 0.3 or label contains best)", ["b", "a best"]),
    ("x = 1 or x = 2", ["b", "a best"]),
    ("x in [1,2]", ["b", "a best"]),
    ("x not in [1,2]", ["e", "d best", "c"]),
    ("x is undefined", ["d best"]),
    ("x is not undefined", ["e", "c", "b", "a best"]),
    ("label contains best and operation not in [test,deploy]", ["d best", "a best"]),
    ("status in [error,terminated]", ["c"]),
]


@pytest.mark.parametrize("expr, expected", SEED_FILTERS)
def test_seed_filter_examples_through_cli(cli, home_runs, expr, expected):
    assert labels(cli, "-F", expr) == expected


@pytest.mark.parametrize(
    "spec",
    ["after 7-1", "after 9:00", "between 1-1 and 4-30", "between 10:00 and 15:00",
     "last 30 min", "last 6 hours", "today", "this week", "last month", "3 weeks ago"],
)
def test_seed_time_ranges_through_cli(cli, home_runs, spec):
    out = cli("runs", "list", "-Fs", spec)
    assert out.exit_code == 0, out.stderr
