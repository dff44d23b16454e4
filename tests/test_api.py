"""The Python API (guild_core.api) and ``guild api``, over runs made by
real scripts through the CLI."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import subprocess
import sys

import pytest

from guild_core import api
from guild_core.errors import GuildError

GUILD_AI = os.environ.get("GUILD_AI_EXE")

TRAIN = """
x = 1
lr = 0.1
print("loss: %f" % (1.0 / (x + lr)))
print("acc: 0.5")
"""


@pytest.fixture
def made(sh, project):
    """Three runs, oldest first: train.py x=1 (labelled), x=2 (tagged),
    and bad.py, which fails."""
    project.write("train.py", TRAIN)
    project.write("bad.py", "raise SystemExit('boom')\n")
    for args in (["x=1", "-l", "first"], ["x=2", "--tag", "t1"]):
        res = sh("run", "train.py", *args, "-y")
        assert res.exit_code == 0, res.stderr
    assert sh("run", "bad.py", "-y").exit_code != 0
    listed = json.loads(sh("runs", "--json").output)
    return [r["id"] for r in reversed(listed)]


def test_runs_newest_first_as_guild_runs(made):
    infos = api.runs()
    assert [r.id for r in infos] == list(reversed(made))
    assert [r.operation for r in infos] == ["bad.py", "train.py", "train.py"]
    assert [r.status for r in infos] == ["error", "completed", "completed"]


def test_run_info_values(made):
    (info,) = api.runs(filter="x = 2")
    assert info.id == made[1] and info.short_id == made[1][:8]
    assert info.flags == {"lr": 0.1, "x": 2}
    assert info.scalars["loss"] == pytest.approx(1 / 2.1, abs=1e-6)
    assert info.scalars["acc"] == 0.5
    assert info.scalar_steps == {"loss": 0, "acc": 0}
    assert info.tags == ("t1",)
    assert isinstance(info.started, datetime.datetime)
    assert info.started <= info.stopped
    assert info.path.name == info.id and info.path.is_dir()
    assert info.attrs["flags"] == info.flags
    assert info.attrs["exit_status"] == 0


def test_selection_options(made):
    ids = lambda **kw: [r.id for r in api.runs(**kw)]
    assert ids(operation="train.py") == [made[1], made[0]]
    assert ids(status="error") == [made[2]]
    assert ids(status=["error", "completed"]) == list(reversed(made))
    assert ids(label="first") == [made[0]]
    assert ids(tag="t1") == [made[1]]
    assert ids(filter="loss < 0.6") == [made[1]]
    assert ids(runs="1") == [made[2]]
    assert ids(runs=["2:3"]) == [made[1], made[0]]
    assert ids(marked=True) == []
    assert ids(marked=False) == list(reversed(made))


def test_same_runs_as_the_cli_filter(made, sh):
    for args, kw in (
        (["-F", "x >= 1"], {"filter": "x >= 1"}),
        (["-Fo", "bad.py"], {"operation": "bad.py"}),
        (["-Sc"], {"status": "completed"}),
    ):
        cli_ids = [r["id"] for r in json.loads(sh("runs", "--json", *args).output)]
        assert [r.id for r in api.runs(**kw)] == cli_ids, args


def test_bad_filter_is_the_cli_error_line(made, sh):
    with pytest.raises(GuildError) as e:
        api.runs(filter="loss <")
    msg = str(e.value)
    assert "\n" not in msg and msg
    res = sh("runs", "-F", "loss <")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[0] == f"guild: {msg}"


def test_unknown_status(made):
    with pytest.raises(GuildError, match="unknown status 'bogus'"):
        api.runs(status="bogus")


def test_runs_df(made):
    df = api.runs_df()
    assert list(df.columns) == ["id", "operation", "started", "status", "label", "lr", "x", "acc", "loss"]
    assert list(df["id"]) == list(reversed(made))
    assert list(df["x"][1:]) == [2, 1]
    assert math.isnan(df["loss"][0])
    assert df["loss"][1] == pytest.approx(1 / 2.1, abs=1e-6)


def test_runs_df_names_a_clash_by_kind(sh, project):
    project.write("s.py", "label = 'x'\nprint('status: 1')\n")
    assert sh("run", "s.py", "-y").exit_code == 0
    df = api.runs_df()
    assert "flag:label" in df.columns and "scalar:status" in df.columns
    assert df["flag:label"][0] == "x" and df["scalar:status"][0] == 1


def _csv_rows(text):
    return list(csv.reader(io.StringIO(text)))


def _same_cell(text, val):
    if text == "":
        return val is None or (isinstance(val, float) and math.isnan(val))
    try:
        return float(text) == float(val)
    except (TypeError, ValueError):
        return str(val) == text


def test_compare_is_guild_compare_csv(made, sh):
    for args, kw in (([], {}), (["-Fo", "train.py", "--min", "loss"], {"operation": "train.py", "min_col": "loss"})):
        rows = _csv_rows(sh("compare", "--csv", "-", *args).output)
        df = api.compare(**kw)
        assert list(df.columns) == rows[0]
        assert len(df) == len(rows) - 1
        for (_, got), want in zip(df.iterrows(), rows[1:]):
            assert all(_same_cell(t, v) for t, v in zip(want, list(got))), (want, list(got))


def test_run_starts_a_run_as_guild_run(made, project, capsys):
    info = api.run("train.py", x=5, lr=0.5, label="five")
    assert info.status == "completed"
    assert info.flags == {"lr": 0.5, "x": 5}
    assert info.label == "five"
    assert info.scalars["loss"] == pytest.approx(1 / 5.5, abs=1e-6)
    assert "loss: 0.181818" in capsys.readouterr().out
    assert api.runs()[0].id == info.id


def test_run_of_a_batch_returns_the_batch(made, project):
    info = api.run("train.py", x=[3, 4])
    assert info.operation == "train.py+"
    assert [r.flags["x"] for r in api.runs(runs="1:2")] == [4, 3]
    assert api.runs(include_batch=True)[2].id == info.id


def test_run_that_fails_is_returned(made, project):
    info = api.run("bad.py")
    assert info.status == "error" and info.operation == "bad.py"


def test_run_error_is_the_command_line(made, project, sh):
    with pytest.raises(GuildError) as e:
        api.run("missing.py")
    res = sh("run", "missing.py", "-y")
    assert f"guild: {e.value}" in res.stderr.splitlines()
    with pytest.raises(GuildError, match="x"):
        api.run("train.py", x="not-a-number")
    assert len(api.runs()) == 3


def test_pandas_missing(made, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    for fn in (api.runs_df, api.compare):
        with pytest.raises(GuildError) as e:
            fn()
        assert str(e.value) == "pandas is not installed"
        assert "pip install 'guild[pandas]'" in e.value.hint
    assert len(api.runs()) == 3


def test_import_is_cheap():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, guild_core.api; print(sorted(m for m in ('click', 'pandas') if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip() == "[]"


# -- guild api ---------------------------------------------------------


def test_api_runs_json(made, sh):
    res = sh("api", "runs")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.output)
    assert "\n" not in res.output.strip()
    assert [d["id"] for d in data] == list(reversed(made))
    first = data[1]
    assert first["flags"] == {"lr": 0.1, "x": 2}
    assert first["tags"] == ["t1"] and isinstance(first["started"], int)
    assert {s["tag"]: s["lastVal"] for s in first["scalars"]}["acc"] == 0.5
    assert data[0]["exitStatus"] == 1 and data[0]["status"] == "error"
    v1 = json.loads(sh("api", "runs", "-v", "1").output)
    assert v1[1]["tags"] == "t1" and v1[1]["time"].count(":") == 2
    assert "last_val" in v1[1]["scalars"][0]
    formatted = sh("api", "runs", "-f", "-Fo", "bad.py").output
    assert formatted.startswith("[\n  {\n") and json.loads(formatted) == data[:1]


def test_api_runs_data_is_the_api_s(made):
    found = api.selected(status="completed")
    assert [d["id"] for d in api.runs_data(found)] == [r.id for r in api.runs(status="completed")]


def test_api_compare_json(made, sh):
    data = json.loads(sh("api", "compare").output)
    rows = _csv_rows(sh("compare", "--csv", "-").output)
    assert data[0] == ["id"] + rows[0][1:]
    assert [r[0] for r in data[1:]] == list(reversed(made))
    for got, want in zip(data[1:], rows[1:]):
        assert all(_same_cell(t, v) for t, v in zip(want[1:], got[1:]))
    assert json.loads(sh("api", "compare", "-Fo", "nothing").output) == []


def test_api_ops_json(sh, project):
    project.write("train.py", TRAIN)
    project.write("guild.yml", """
        train:
          description: Train it
          main: train
          flags:
            lr: {default: 0.1, description: Learning rate}
            act:
              default: relu
              choices: [{value: relu, description: Rectified}, tanh]
    """)
    (op,) = json.loads(sh("api", "ops").output)
    assert op["fullname"] == "train" and op["description"] == "Train it"
    assert op["flags"]["lr"] == {
        "default": 0.1, "defaultAssign": "lr=0.1", "description": "Learning rate",
        "choices": [], "type": op["flags"]["lr"]["type"],
    }
    assert op["flags"]["act"]["choices"] == [
        {"value": "relu", "alias": None, "description": "Rectified"},
        {"value": "tanh", "alias": None, "description": ""},
    ]
    assert op["guildfile"]["src"] == str(project.path / "guild.yml")
    assert json.loads(sh("api", "help-op", "train").output) == op
    script = json.loads(sh("api", "help-op", "train.py").output)
    assert script["opref"]["pkgType"] == "script" and script["guildfile"]["src"] is None
    assert sorted(script["flags"]) == ["lr", "x"]
    res = sh("api", "help-op", "nope")
    assert res.exit_code == 1 and res.stderr.startswith("guild: ")


@pytest.mark.skipif(not GUILD_AI, reason="GUILD_AI_EXE does not name Guild AI 0.9's guild")
def test_api_help_op_is_guild_ai_s(sh, project):
    project.write("train.py", TRAIN)
    assert json.loads(sh("api", "help-op", "train.py").output) == _guild_ai("api", "help-op", "train.py", cwd=project.path)


# -- the same home under Guild AI 0.9 (skipped unless GUILD_AI_EXE names
# its guild) ------------------------------------------------------------


def _guild_ai(*args, cwd):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([GUILD_AI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _keys(data):
    """Every key path in `data` (lists' items merged)."""
    out = set()

    def walk(val, path):
        if isinstance(val, dict):
            for k, v in val.items():
                out.add(path + (k,))
                walk(v, path + (k,))
        elif isinstance(val, list):
            for v in val:
                walk(v, path + ("[]",))

    walk(data, ())
    return out


@pytest.mark.skipif(not GUILD_AI, reason="GUILD_AI_EXE does not name Guild AI 0.9's guild")
@pytest.mark.parametrize("version", ["1", "2"])
def test_api_runs_keys_are_guild_ai_s(made, sh, project, version):
    ours = json.loads(sh("api", "runs", "-v", version).output)
    theirs = _guild_ai("api", "runs", "-v", version, cwd=project.path)
    assert _keys(ours) == _keys(theirs)
    assert ours == theirs


@pytest.mark.skipif(not GUILD_AI, reason="GUILD_AI_EXE does not name Guild AI 0.9's guild")
def test_api_compare_is_guild_ai_s(made, sh, project):
    assert json.loads(sh("api", "compare").output) == _guild_ai("api", "compare", cwd=project.path)
