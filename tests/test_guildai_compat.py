"""A GUILD_HOME written by Guild AI 0.9.0 lists, shows and reads right."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "guildai-0.9-expected.json").read_text())


@pytest.fixture
def guildai_home(guild_home, tmp_path, monkeypatch):
    with tarfile.open(FIXTURES / "guildai-0.9-home.tar.gz") as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    home = tmp_path / "unpacked" / ".guild"
    monkeypatch.setenv("GUILD_HOME", str(home))
    monkeypatch.chdir(tmp_path / "unpacked" / "project")
    return home


def _own_scalars(expected: dict | None) -> dict:
    # Guild AI reports a batch's trial scalars through its links under
    # "<trial id>/.guild#name"; we report a run's own scalars only.
    return {k: v for k, v in (expected or {}).items() if "#" not in k}


def test_list_matches_expected(cli, guildai_home):
    result = cli("runs", "list", "--all", "--json")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.output)
    expected = EXPECTED["runs"]
    assert [r["id"] for r in listed] == [r["id"] for r in expected]
    for got, want in zip(listed, expected):
        assert got["operation"] == want["operation"], want["id"]
        assert got["status"] == want["status"], want["id"]
        assert got["label"] == want["label"], want["id"]
        assert got["exit_status"] == want["exit_status"], want["id"]
        assert got["started"] == want["started"], want["id"]
        assert got["stopped"] == want["stopped"], want["id"]
        assert got["tags"] == want["tags"], want["id"]
        assert bool(got["marked"]) == want["marked"], want["id"]


@pytest.mark.parametrize("want", EXPECTED["runs"], ids=lambda r: r["operation"] + ":" + r["id"][:8])
def test_info_matches_expected(cli, guildai_home, want):
    result = cli("runs", "info", want["id"][:8], "--json")
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.output)
    assert got["id"] == want["id"]
    assert got["operation"] == want["operation"]
    assert got["status"] == want["status"]
    assert got["flags"] == want["flags"]
    assert got["scalars"] == _own_scalars(want["scalars"])
    assert got["from"] == "/home/user/project"
    assert got["exit_status"] == ("" if want["exit_status"] is None else want["exit_status"])


def test_deleted_runs_listed_with_deleted(cli, guildai_home):
    result = cli("runs", "--deleted", "--json")
    listed = json.loads(result.output)
    assert [r["id"] for r in listed] == [r["id"] for r in EXPECTED["deleted"]]
    assert [r["status"] for r in listed] == [r["status"] for r in EXPECTED["deleted"]]


def test_list_table_matches_guildai(cli, guildai_home):
    lines = cli("runs").output.splitlines()
    assert lines[0].split() == [
        "[1:067e2c96]", "slow.py", "(/home/user/project)", "[marked]",
        *EXPECTED_TIME(EXPECTED["runs"][0]["started"]), "terminated",
    ]
    assert lines[9].startswith("[10:28ac3722]  train.py (/home/user/project)")
    assert lines[9].endswith("completed   first-run")
    assert "[5:5f4c24cc]   train.py+ (/home/user/project)" in lines[4]


def EXPECTED_TIME(micros):
    from guild_core.util import format_timestamp

    return format_timestamp(micros).split()


def test_output_and_files(cli, guildai_home):
    out = cli("cat", "--output", "0e5a44aa")
    assert out.output.splitlines() == [
        "z: a", "loss: 0.260000 (step 0)", "loss: 0.160000 (step 1)",
        "loss: 0.060000 (step 2)", "acc: 0.940000",
    ]
    ls = cli("ls", "0e5a44aa").output.splitlines()
    assert ls[1:] == ["  fail.py", "  guild.yml", "  slow.py", "  train.py", "  train_globals.py"]


def test_sourcecode_digest_matches_guildai(guildai_home, tmp_path):
    # Our digest over the same files equals the one Guild AI recorded.
    from guild_core import sourcecode
    from guild_core.run import Run

    run = Run.for_dir(guildai_home / "runs" / "0e5a44aa305e42f8a9f2b3e63db221d4")
    project = tmp_path / "unpacked" / "project"
    spec = sourcecode.parse_spec(None)
    files = sourcecode.select_files(project, spec)
    dest = tmp_path / "copy"
    digest = sourcecode.copy_files(project, spec, files, dest)
    assert digest == run.get("sourcecode_digest")
    assert (dest / ".guild" / "manifest").read_text() == run.guild_path("manifest").read_text()


@pytest.mark.parametrize("run_id, flag", [("6053c190", "x=0.7"), ("abebd186", "lr=0.25"), ("e68f53c9", "x=0.35")])
def test_guild_ai_runs_restart_here(cli, guildai_home, run_id, flag):
    """A run Guild AI 0.9 made (its command goes through Guild AI's own
    guild.op_main) restarts here with a new flag value and completes."""
    from guild_core.run import Run

    [path] = (guildai_home / "runs").glob(run_id + "*")
    result = cli("run", "--restart", run_id, flag, "-y")
    assert result.exit_code == 0, result.stderr
    run = Run.for_dir(path)
    assert run.status == "completed"
    name, _, val = flag.partition("=")
    assert run.get("flags")[name] == float(val)
    assert "guild.op_main" not in run.get("cmd")
    assert f"{name}: {val}" in (path / ".guild" / "output").read_text() or run.get("exit_status") == 0
