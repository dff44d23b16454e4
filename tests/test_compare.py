"""`guild compare` through the real CLI: the table, column specs, CSV,
JSON, filters, sorting, errors, and Guild AI 0.9's own output."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from guild_core import compare as cmp
from guild_core.run import Run

FIXTURES = Path(__file__).parent / "fixtures"

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
print("sys/mem: 0.25")
"""

BASE = datetime.datetime(2024, 1, 1, 12, 0, 0)


def micros(dt: datetime.datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


@pytest.fixture
def runs(cli, guild_home, project):
    """Five runs, newest first: e (staged), d (other.py), c (error),
    b (marked), a. Scalars are exact in float32."""
    project.write("train.py", TRAIN)
    project.write("other.py", OTHER)
    assert cli("run", "train.py", "x=1", "-l", "a", "-y").exit_code == 0
    assert cli("run", "train.py", "x=2", "opt=sgd", "-l", "b", "-y").exit_code == 0
    assert cli("run", "train.py", "x=3", "-l", "c", "-y").exit_code == 2
    assert cli("run", "other.py", "-l", "d", "-y").exit_code == 0
    assert cli("run", "train.py", "x=4", "-l", "e", "--stage", "-y").exit_code == 0
    by_label = {}
    for p in (guild_home / "runs").iterdir():
        run = Run.for_dir(p)
        by_label[run.get("label")] = run
    times = {
        "a": (BASE, 65.7),  # 0:01:05, truncated as Guild AI does
        "b": (BASE + datetime.timedelta(days=1), 3),
        "c": (BASE + datetime.timedelta(days=2), 0.2),
        "d": (BASE + datetime.timedelta(days=3), 3723),
    }
    # A staged run has a start time (when it was staged), no stop time.
    by_label["e"].write_attr("started", micros(BASE + datetime.timedelta(days=4)))
    for label, (start, secs) in times.items():
        by_label[label].write_attr("started", micros(start))
        by_label[label].write_attr("stopped", micros(start) + int(secs * 1_000_000))
    by_label["b"].write_attr("marked", True)
    return by_label


def ids(runs, *labels):
    return [runs[label].short_id for label in labels]


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result.output


def fails(result, message):
    assert result.exit_code != 0
    assert result.output == ""
    assert result.stderr.strip() == message
    return result


def table(cli, *args):
    return ok(cli("compare", *args)).splitlines()


def csv_rows(cli, *args):
    return list(csv.reader(io.StringIO(ok(cli("compare", "--csv", "-", *args)))))


# -- the default table -----------------------------------------------


def test_default_table(cli, runs):
    e, d, c, b, a = ids(runs, "e", "d", "c", "b", "a")
    assert table(cli) == [
        "run       operation          started              time     status     label  opt   x  step  acc    loss",
        f"{e}  train.py           2024-01-05 12:00:00           staged     e      adam  4",
        f"{d}  other.py           2024-01-04 12:00:00  1:02:03  completed  d               0     0.5",
        f"{c}  train.py           2024-01-03 12:00:00  0:00:00  error      c      adam  3  2     0.625  0.375",
        f"{b}  train.py [marked]  2024-01-02 12:00:00  0:00:03  completed  b      sgd   2  2     0.75   0.25",
        f"{a}  train.py           2024-01-01 12:00:00  0:01:05  completed  a      adam  1  2     0.875  0.125",
    ]
    # -t is the same table (there is no interactive view).
    assert table(cli, "-t") == table(cli)


def test_no_start_time_is_blank(cli, runs):
    runs["e"].del_attr("started")
    rows = csv_rows(cli, "-cc", ".started,.time,.status", "-Fl", "e")
    assert rows[1:] == [[runs["e"].short_id, "", "", "staged"]]


def test_all_scalars_adds_system_scalars(cli, runs):
    assert "sys/mem" not in table(cli)[0]
    header = table(cli, "-s")[0].split()
    assert header[-3:] == ["acc", "sys/mem", "loss"]


def test_extra_cols_adds_sourcecode_digest(cli, runs):
    rows = csv_rows(cli, "-e", "-cc", ".label")
    assert rows[0] == ["run", "sourcecode", "label"]
    assert rows[-1][1] == runs["a"].get("sourcecode_digest")[:8]


def test_skip_options(cli, runs):
    assert csv_rows(cli, "-r")[0] == ["run", "opt", "x", "step", "acc", "loss"]
    assert csv_rows(cli, "--skip-core")[0] == csv_rows(cli, "-r")[0]
    core = ["run", "operation", "started", "time", "status", "label"]
    assert csv_rows(cli, "-p")[0] == core
    assert csv_rows(cli, "--skip-op-cols", "-c", "=x")[0] == core + ["x"]
    assert csv_rows(cli, "--skip-flags")[0] == core + ["step", "acc", "loss"]
    assert csv_rows(cli, "--skip-scalars")[0] == core + ["opt", "x"]


def test_skip_unchanged(cli, runs):
    # b and a: same operation, status and step; other columns differ.
    rows = csv_rows(cli, "-u", "-Fo", "train.py", "-Sc")
    assert rows[0] == ["run", "started", "time", "label", "opt", "x", "acc", "loss"]
    assert rows[1][:4] == [runs["b"].short_id, "2024-01-02 12:00:00", "0:00:03", "b"]
    # The table compares shown cells: "train.py [marked]" differs.
    lines = table(cli, "-u", "-Fo", "train.py", "-Sc")
    assert lines[0].split() == ["run", "operation", "started", "time", "label", "opt", "x", "acc", "loss"]
    # One run: nothing is dropped.
    assert len(csv_rows(cli, "-u", "1")[0]) == 8


def test_run_compare_attribute_replaces_own_columns(cli, runs):
    runs["a"].write_attr("compare", ["=x", "max loss as top"])
    rows = csv_rows(cli, runs["a"].short_id)
    assert rows == [
        ["run", "operation", "started", "time", "status", "label", "x", "top"],
        [runs["a"].short_id, "train.py", "2024-01-01 12:00:00", "0:01:05", "completed", "a", "1", "0.5"],
    ]


# -- column specs ----------------------------------------------------


def test_strict_cols_each_kind(cli, runs):
    spec = (
        "=x, flag:opt, .label, attr:status, .exit_status, .marked, .id, loss, scalar:acc, "
        "first loss, last loss, min loss, max loss, avg loss, total loss, count loss, "
        "loss step, max loss step, first loss step"
    )
    rows = csv_rows(cli, "-cc", spec, "-Fo", "train.py", "-Sc")
    a, b = runs["a"], runs["b"]
    assert rows == [
        ["run", "x", "opt", "label", "status", "exit_status", "marked", "id", "loss", "acc",
         "first loss", "last loss", "min loss", "max loss", "avg loss", "total loss", "count loss",
         "loss step", "max loss step", "first loss step"],
        [b.short_id, "2", "sgd", "b", "completed", "0", "True", b.id, "0.25", "0.75",
         "1.0", "0.25", "0.25", "1.0", "0.5833333333333334", "1.75", "3", "2", "0", "0"],
        [a.short_id, "1", "adam", "a", "completed", "0", "", a.id, "0.125", "0.875",
         "0.5", "0.125", "0.125", "0.5", "0.2916666666666667", "0.875", "3", "2", "0", "0"],
    ]


def test_headings_with_as(cli, runs):
    rows = csv_rows(cli, "-cc", "=x as X, loss as 'last loss', min loss step as \"best step\"", "1:3")
    assert rows[0] == ["run", "X", "last loss", "best step"]


def test_cols_adds_to_defaults_and_merges_by_heading(cli, runs):
    rows = csv_rows(cli, "-c", "=x,.exit_status,max acc", "-Fo", "train.py")
    assert rows[0] == [
        "run", "operation", "started", "time", "status", "label",
        "opt", "x", "step", "acc", "loss", "exit_status", "max acc",
    ]
    assert [r[rows[0].index("exit_status")] for r in rows[1:]] == ["", "2", "0", "0"]


def test_table_formats_floats_bools_and_missing(cli, runs):
    lines = table(cli, "-cc", ".marked,avg loss,=nope", "-Fo", "train.py")
    assert lines[0].split() == ["run", "marked", "avg", "loss", "nope"]
    e, c, b, a = ids(runs, "e", "c", "b", "a")
    assert lines[1:] == [
        e,
        f"{c}          0.875",
        f"{b}  yes     0.583333",  # truncated, not rounded
        f"{a}          0.291666",
    ]


def test_format_float_truncates():
    assert cmp.format_float(0.9999999) == "0.999999"
    assert cmp.format_float(30.0) == "30.0"
    assert cmp.format_float(1.5e-07) == "1.5e-07"
    assert cmp.format_float(1e20) == "1.0e+20"
    assert cmp.format_float(1.23456789e-05) == "1.234567e-05"
    assert cmp.format_float(float("nan")) == "nan"
    assert cmp.format_float(float("-inf")) == "-inf"


def test_parse_colspec():
    cols = cmp.parse_colspec("=x, .label as L, min loss step, 'step', scalar:val#acc, count acc")
    assert [(c.kind, c.name, c.qualifier, c.step, c.header) for c in cols] == [
        ("flag", "x", None, False, "x"),
        ("attr", "label", None, False, "L"),
        ("scalar", "loss", "min", True, "min loss step"),
        ("scalar", "step", None, False, "step"),
        ("scalar", "val#acc", None, False, "val acc"),
        ("scalar", "acc", "count", False, "count acc"),
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "invalid column spec '': it is empty"),
        ("min", "invalid column spec 'min': expected a scalar name at the end"),
        ("=x,", "invalid column spec '=x,': expected a column at the end"),
        ("loss loss", "invalid column spec 'loss loss': unexpected 'loss' at 5"),
        ("avg loss step", "invalid column spec 'avg loss step': 'avg ... step' is not supported "
         "(only first, last, min and max have a step)"),
        ("loss as", "invalid column spec 'loss as': expected a heading after 'as'"),
        (".", "invalid column spec '.': expected an attribute name at the end"),
        ("=,x", "invalid column spec '=,x': expected a flag name at 1, found ','"),
        ("'open", "invalid column spec ''open': unterminated quote at 0"),
        ("=x, 'a b", "invalid column spec '=x, 'a b': unterminated quote at 4"),
    ],
)
def test_bad_column_specs(cli, runs, spec, message):
    fails(cli("compare", "-cc", spec), f"guild: {message}")


# -- output formats --------------------------------------------------


def test_csv_stdout_exact(cli, runs):
    e, d, c, b, a = ids(runs, "e", "d", "c", "b", "a")
    assert ok(cli("compare", "--csv", "-")) == (
        "run,operation,started,time,status,label,opt,x,step,acc,loss\n"
        f"{e},train.py,2024-01-05 12:00:00,,staged,e,adam,4,,,\n"
        f"{d},other.py,2024-01-04 12:00:00,1:02:03,completed,d,,,0,0.5,\n"
        f"{c},train.py,2024-01-03 12:00:00,0:00:00,error,c,adam,3,2,0.625,0.375\n"
        f"{b},train.py,2024-01-02 12:00:00,0:00:03,completed,b,sgd,2,2,0.75,0.25\n"
        f"{a},train.py,2024-01-01 12:00:00,0:01:05,completed,a,adam,1,2,0.875,0.125\n"
    )


def test_csv_file(cli, runs, tmp_path):
    path = tmp_path / "out" / "sub" / "cmp.csv"
    result = cli("compare", "--csv", str(path), "-Sc")
    assert result.exit_code == 0, result.stderr
    assert result.output == ""
    assert result.stderr == f"Wrote 3 row(s) to {path}\n"
    assert path.read_text() == ok(cli("compare", "--csv", "-", "-Sc"))


def test_csv_unwritable(cli, runs, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("compare", "--csv", str(blocker / "x.csv"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"guild: error writing {blocker / 'x.csv'}: ")
    assert len(result.stderr.splitlines()) == 1


def test_json(cli, runs):
    data = json.loads(ok(cli("compare", "--json", "-cc", "=x,=opt,loss,.marked,.started")))
    e, d, c, b, a = ids(runs, "e", "d", "c", "b", "a")
    assert data == [
        {"run": e, "x": 4, "opt": "adam", "loss": None, "marked": None, "started": "2024-01-05 12:00:00"},
        {"run": d, "x": None, "opt": None, "loss": None, "marked": None, "started": "2024-01-04 12:00:00"},
        {"run": c, "x": 3, "opt": "adam", "loss": 0.375, "marked": None, "started": "2024-01-03 12:00:00"},
        {"run": b, "x": 2, "opt": "sgd", "loss": 0.25, "marked": True, "started": "2024-01-02 12:00:00"},
        {"run": a, "x": 1, "opt": "adam", "loss": 0.125, "marked": None, "started": "2024-01-01 12:00:00"},
    ]
    assert list(data[0]) == ["run", "x", "opt", "loss", "marked", "started"]


def test_print_scalars(cli, runs):
    out = ok(cli("compare", "--print-scalars", "-Fl", "a", "-Fl", "d"))
    assert out.splitlines() == [
        f"[{runs['d'].short_id}] other.py",
        "  acc: 0.500000 (step 0)",
        "  sys/mem: 0.250000 (step 0)",
        f"[{runs['a'].short_id}] train.py",
        "  acc: 0.875000 (step 0)",
        "  loss: 0.125000 (step 2)",
    ]


def test_no_runs_prints_nothing(cli, runs, tmp_path):
    assert ok(cli("compare", "-Fo", "nothing")) == ""
    assert ok(cli("compare", "--csv", "-", "-Fo", "nothing")) == ""
    assert json.loads(ok(cli("compare", "--json", "-Fo", "nothing"))) == []
    path = tmp_path / "empty.csv"
    result = cli("compare", "--csv", str(path), "-Fo", "nothing")
    assert result.stderr == f"Wrote 0 row(s) to {path}\n"
    assert path.read_text() == ""


# -- selection -------------------------------------------------------


def first_col(rows):
    return [r[0] for r in rows[1:]]


@pytest.mark.parametrize(
    "args, labels",
    [
        (["-Fo", "train.py"], ["e", "c", "b", "a"]),
        (["-Fo", "other.py"], ["d"]),
        (["-Sc"], ["d", "b", "a"]),
        (["-Sce"], ["d", "c", "b", "a"]),
        (["-F", "x > 1"], ["e", "c", "b"]),
        (["-F", "loss < 0.3"], ["b", "a"]),
        (["-Fl", "a", "-Fl", "b"], ["b", "a"]),
        (["-Fm"], ["b"]),
        (["2:3"], ["d", "c"]),
        (["1", "5"], ["e", "a"]),
        (["1", "-Sc"], ["d"]),
    ],
)
def test_filters_and_run_specs(cli, runs, args, labels):
    assert first_col(csv_rows(cli, "-cc", ".label", *args)) == ids(runs, *labels)


def test_batch_runs_left_out_unless_asked(cli, guild_home, project):
    project.write("train.py", TRAIN)
    assert cli("run", "train.py", "x=[1,2]", "-y").exit_code == 0
    rows = csv_rows(cli, "-cc", ".operation")
    assert [r[1] for r in rows[1:]] == ["train.py", "train.py"]
    rows = csv_rows(cli, "-cc", ".operation", "--include-batch")
    assert sorted(r[1] for r in rows[1:]) == ["train.py", "train.py", "train.py+"]


# -- sorting ---------------------------------------------------------


def test_sort_min_max(cli, runs):
    # Missing values go last either way; ties keep list order.
    assert first_col(csv_rows(cli, "-cc", "loss", "--min", "loss")) == ids(runs, "a", "b", "c", "e", "d")
    assert first_col(csv_rows(cli, "-cc", "loss", "--max", "loss")) == ids(runs, "c", "b", "a", "e", "d")
    assert first_col(csv_rows(cli, "--max", "x", "-n", "2")) == ids(runs, "e", "c")
    assert first_col(csv_rows(cli, "--min", "label", "--top", "1")) == ids(runs, "a")
    assert first_col(csv_rows(cli, "--min", "opt", "--limit", "3")) == ids(runs, "e", "c", "a")


def test_sort_by_spec_not_shown(cli, runs):
    # A column spec sorts without being shown.
    rows = csv_rows(cli, "-cc", ".label", "--max", "max loss")
    assert rows[0] == ["run", "label"]
    assert first_col(rows) == ids(runs, "c", "b", "a", "e", "d")
    assert first_col(csv_rows(cli, "-cc", ".label", "--min", "=x")) == ids(runs, "a", "b", "c", "e", "d")


def test_sort_errors(cli, runs):
    fails(cli("compare", "--min", "nosuch"), "guild: no such column 'nosuch'")
    fails(cli("compare", "--min", "=x,"), "guild: no such column '=x,'")
    fails(cli("compare", "--min", "loss", "--max", "loss"), "guild: --min and --max cannot both be specified")
    result = cli("compare", "-n", "0")
    assert result.exit_code == 2 and "Invalid value for '-n'" in result.stderr


# -- option errors ---------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["-t", "--csv", "-"], "guild: --table and --csv cannot both be specified"),
        (["--csv", "-", "--json"], "guild: --csv and --json cannot both be specified"),
        (["-t", "--json"], "guild: --table and --json cannot both be specified"),
        (["-c", "=x", "-cc", "=x"], "guild: --cols cannot be used with --strict-cols"),
        (["nosuchrun"], "guild: could not find a run matching 'nosuchrun'"),
        (["-F", "x >"], None),
    ],
)
def test_option_errors(cli, runs, args, message):
    result = cli("compare", *args)
    assert result.exit_code == 1
    assert result.output == ""
    if message:
        assert result.stderr.splitlines()[0] == message
    else:
        assert result.stderr.startswith("guild: ")


# -- Guild AI 0.9 ----------------------------------------------------


@pytest.fixture
def guildai_home(guild_home, tmp_path, monkeypatch):
    with tarfile.open(FIXTURES / "guildai-0.9-home.tar.gz") as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    monkeypatch.setenv("GUILD_HOME", str(tmp_path / "unpacked" / ".guild"))
    monkeypatch.chdir(tmp_path / "unpacked" / "project")
    # The expected output was recorded in UTC.
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old_tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old_tz
    time.tzset()


# `GUILD_HOME=... guild compare -t` and `--csv -` from Guild AI 0.9.0 on
# the fixture (trailing blanks removed from the table).
GUILDAI_TABLE = """\
run       operation         started              time     status      label            step  progress  x    y  z  acc       loss      epochs  lr
067e2c96  slow.py [marked]  2026-11-23 08:11:16  0:00:03  terminated                   0     30.0
2a94f1fb  train.py          2026-11-23 08:11:16           staged      x=0.9 y=2 z=a                    0.9  2  a
04cca7c1  train.py          2026-11-23 08:11:15  0:00:00  completed   x=0.4 y=2 z=a    2               0.4  2  a  0.970000  0.029999
0e5a44aa  train.py          2026-11-23 08:11:15  0:00:00  completed   x=0.1 y=2 z=a    2               0.1  2  a  0.939999  0.059999
4b75e1d0  fail.py           2026-11-23 08:11:14  0:00:00  error
abebd186  train_globals.py  2026-11-23 08:11:14  0:00:00  completed   epochs=3 lr=0.5  0                                    0.400000  3       0.5
e68f53c9  train             2026-11-23 08:11:13  0:00:00  completed   x=0.3 y=2 z=a    2               0.3  2  a  0.980000  0.019999
6053c190  train.py          2026-11-23 08:11:12  0:00:00  completed   x=0.5 y=3 z=b    2               0.5  3  b  0.930000  0.070000
28ac3722  train.py          2026-11-23 08:11:11  0:00:00  completed   first-run        2               0.2  2  a  0.970000  0.029999
"""

GUILDAI_CSV = """\
run,operation,started,time,status,label,step,progress,x,y,z,acc,loss,epochs,lr
067e2c96,slow.py,2026-11-23 08:11:16,0:00:03,terminated,,0,30.0,,,,,,,
2a94f1fb,train.py,2026-11-23 08:11:16,,staged,x=0.9 y=2 z=a,,,0.9,2,a,,,,
04cca7c1,train.py,2026-11-23 08:11:15,0:00:00,completed,x=0.4 y=2 z=a,2,,0.4,2,a,0.9700000286102295,0.029999999329447746,,
0e5a44aa,train.py,2026-11-23 08:11:15,0:00:00,completed,x=0.1 y=2 z=a,2,,0.1,2,a,0.9399999976158142,0.05999999865889549,,
4b75e1d0,fail.py,2026-11-23 08:11:14,0:00:00,error,,,,,,,,,,
abebd186,train_globals.py,2026-11-23 08:11:14,0:00:00,completed,epochs=3 lr=0.5,0,,,,,,0.4000000059604645,3,0.5
e68f53c9,train,2026-11-23 08:11:13,0:00:00,completed,x=0.3 y=2 z=a,2,,0.3,2,a,0.9800000190734863,0.019999999552965164,,
6053c190,train.py,2026-11-23 08:11:12,0:00:00,completed,x=0.5 y=3 z=b,2,,0.5,3,b,0.9300000071525574,0.07000000029802322,,
28ac3722,train.py,2026-11-23 08:11:11,0:00:00,completed,first-run,2,,0.2,2,a,0.9700000286102295,0.029999999329447746,,
"""


def test_guildai_table_and_csv(cli, guildai_home):
    assert ok(cli("compare", "-t")) == GUILDAI_TABLE
    assert ok(cli("compare", "--csv", "-")) == GUILDAI_CSV


def test_guildai_column_specs(cli, guildai_home):
    rows = csv_rows(cli, "-cc", "=x,loss step,.exit_status,.marked", "--max", "exit_status", "-n", "3")
    assert rows == [
        ["run", "x", "loss step", "exit_status", "marked"],
        ["4b75e1d0", "", "", "3", ""],
        ["04cca7c1", "0.4", "2", "0", ""],
        ["0e5a44aa", "0.1", "2", "0", ""],
    ]
