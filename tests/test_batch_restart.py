"""Seed 003 (batch runs - restarting), replayed step by step through the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

# The seed's sample script (Guild AI's optimizers/echo.py): flags from
# module globals.
ECHO = """x = 1.0
y = 2
z = "a"

print("%r %r %r" % (x, y, z))
"""


@pytest.fixture
def echo(project):
    project.write("echo.py", ECHO)
    return project


def runs(cli):
    """(operation, flags label, status, id) newest first."""
    data = json.loads(cli("runs", "--json").output)
    out = []
    for r in data:
        info = json.loads(cli("runs", "info", r["id"], "--json").output)
        flags = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(info["flags"].items())) if not r["operation"].endswith("+") else ""
        out.append((r["operation"], flags, r["status"], r["id"]))
    return out


def _fmt(v):
    from guild_core.flags import encode_value

    return encode_value(v)


def shown(rows):
    return [f"{op} {flags}".strip() for op, flags, _s, _i in rows]


def trial_lines(output: str) -> list[str]:
    return [l for l in output.splitlines() if l.startswith(("Initialized trial", "Running trial"))]


def script_lines(output: str) -> list[str]:
    return [l for l in output.splitlines() if not l.startswith(("Initialized trial", "Running trial", "Restarting"))]


def expect(pairs):
    lines = []
    for desc in pairs:
        lines += [f"Initialized trial ({desc})", f"Running trial: echo.py ({desc})"]
    return lines


def test_seed_003_transcript(cli, guild_home, echo):
    # A baseline run with the defaults.
    assert cli("run", "echo.py", "-y").output == "1.0 2 'a'\n"

    # Initial batch.
    first = cli("run", "echo.py", "x=[1.0,2.0]", "y=[2,3]", "-y")
    assert first.exit_code == 0, first.stderr
    four = ["x=1.0, y=2, z=a", "x=1.0, y=3, z=a", "x=2.0, y=2, z=a", "x=2.0, y=3, z=a"]
    assert trial_lines(first.output) == expect(four)
    assert script_lines(first.output) == ["1.0 2 'a'", "1.0 3 'a'", "2.0 2 'a'", "2.0 3 'a'"]
    before = runs(cli)[:5]
    assert shown(before) == [
        "echo.py x=2.0 y=3 z=a", "echo.py x=2.0 y=2 z=a", "echo.py x=1.0 y=3 z=a",
        "echo.py x=1.0 y=2 z=a", "echo.py+",
    ]
    batch_id = before[-1][3]

    # Restart without modification: every trial restarts in place.
    again = cli("run", "--restart", batch_id, "-y")
    assert trial_lines(again.output) == expect(four)
    after = runs(cli)[:5]
    assert sorted(r[3] for r in after) == sorted(r[3] for r in before)

    # Restart with x=1.0: two trials; the others are left alone.
    sub = cli("run", "--restart", batch_id, "x=1.0", "-y")
    assert trial_lines(sub.output) == expect(four[:2])
    assert shown(runs(cli)[:5]) == [
        "echo.py x=1.0 y=3 z=a", "echo.py x=1.0 y=2 z=a", "echo.py+",
        "echo.py x=2.0 y=3 z=a", "echo.py x=2.0 y=2 z=a",
    ]
    # The batch remembers its last flags.
    remembered = cli("run", "--restart", batch_id, "-y")
    assert trial_lines(remembered.output) == expect(four[:2])

    # New values add a trial.
    more = cli("run", "--restart", batch_id, "x=1.0", "y=[2,3,4]", "-y")
    three = ["x=1.0, y=2, z=a", "x=1.0, y=3, z=a", "x=1.0, y=4, z=a"]
    assert trial_lines(more.output) == expect(three)
    rows = runs(cli)
    assert shown(rows[:6]) == [
        "echo.py x=1.0 y=4 z=a", "echo.py x=1.0 y=3 z=a", "echo.py x=1.0 y=2 z=a",
        "echo.py+", "echo.py x=2.0 y=3 z=a", "echo.py x=2.0 y=2 z=a",
    ]
    trials_attr = (guild_home / "runs" / batch_id / ".guild" / "attrs" / "trials").read_text()
    assert trials_attr.count("- x: 1.0") == 3

    # Deleted trials are recreated with new ids.
    deleted = [rows[1][3], rows[2][3]]
    for run_id in deleted:
        shutil.rmtree(guild_home / "runs" / run_id)
    restored = cli("run", "--restart", batch_id, "-y")
    assert trial_lines(restored.output) == expect(three)
    rows = runs(cli)
    assert shown(rows[:6])[:4] == [
        "echo.py x=1.0 y=4 z=a", "echo.py x=1.0 y=3 z=a", "echo.py x=1.0 y=2 z=a", "echo.py+",
    ]
    assert not set(deleted) & {r[3] for r in rows}

    # A trial restarted on its own runs as a plain run.
    # (The baseline run is still last here; the seed deleted it.)
    lone = rows[-2]
    assert lone[1] == "x=2.0 y=2 z=a"
    solo = cli("run", "--restart", lone[3], "-y")
    assert script_lines(solo.output) == ["2.0 2 'a'"]
    assert trial_lines(solo.output) == []
    changed = cli("run", "--restart", lone[3], "x=3.0", "y=5", "z=b", "-y")
    assert script_lines(changed.output) == ["3.0 5 'b'"]
    assert runs(cli)[0][:2] == ("echo.py", "x=3.0 y=5 z=b")


def test_init_trials_then_restart(cli, guild_home, echo):
    init = cli("run", "echo.py", "x=[3.0,4.0]", "y=[5,6]", "z=[b,c]", "--init-trials", "-y")
    assert init.exit_code == 0, init.stderr
    eight = [f"x={x}, y={y}, z={z}" for x in ("3.0", "4.0") for y in (5, 6) for z in "bc"]
    assert init.output.splitlines() == [f"Initialized trial ({d})" for d in eight]
    rows = runs(cli)
    assert [r[2] for r in rows] == ["pending"] * 9
    assert rows[-1][0] == "echo.py+"
    # Restart the first trial alone: it runs.
    first = rows[-2]
    assert first[1] == "x=3.0 y=5 z=b"
    assert script_lines(cli("run", "--restart", first[3], "-y").output) == ["3.0 5 'b'"]
    statuses = {r[3]: r[2] for r in runs(cli)}
    assert statuses[first[3]] == "completed"
    assert list(statuses.values()).count("pending") == 8
    # Restart the batch: every trial runs, in place.
    whole = cli("run", "--restart", rows[-1][3], "-y")
    assert trial_lines(whole.output) == [
        line for d in eight for line in (f"Initialized trial ({d})", f"Running trial: echo.py ({d})")
    ]
    final = runs(cli)
    assert [r[2] for r in final] == ["completed"] * 9
    assert {r[3] for r in final} == {r[3] for r in rows}


def test_print_trials_table(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=[1,2,3]", "y=[5,4,6]", "z=[a,b,c]", "--print-trials", "-m", "999")
    # The seed's table, exactly: the values as the user gave them.
    expected = ["#   x  y  z"] + [
        f"{i:<3} {x}  {y}  {z}"
        for i, (x, y, z) in enumerate(
            ((x, y, z) for x in (1, 2, 3) for y in (5, 4, 6) for z in "abc"), 1
        )
    ]
    assert result.output.splitlines() == expected
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


def test_max_trials_subset_is_stable_on_restart(cli, guild_home, echo):
    cli("run", "echo.py", "x=[1,2]", "y=[3,4]", "z=[a,b]", "-m", "4", "-y")
    before = runs(cli)
    assert len(before) == 5
    batch_id = before[-1][3]
    again = cli("run", "--restart", batch_id, "-y")
    assert again.exit_code == 0
    after = runs(cli)
    assert sorted(r[3] for r in after) == sorted(r[3] for r in before)


def test_needed_skips_completed(cli, guild_home, echo):
    cli("run", "echo.py", "x=[1.0,2.0]", "-y")
    batch_id = runs(cli)[-1][3]
    result = cli("run", "--restart", batch_id, "--needed", "-y")
    assert trial_lines(result.output) == []


def test_orphaned_pending_trial_is_deleted(cli, guild_home, echo):
    cli("run", "echo.py", "x=[1.0,2.0]", "--init-trials", "-y")
    rows = runs(cli)
    batch_id = rows[-1][3]
    result = cli("run", "--restart", batch_id, "x=1.0", "-y")
    assert trial_lines(result.output) == expect(["x=1.0, y=2, z=a"])
    left = runs(cli)
    assert [r[1] for r in left if r[0] == "echo.py"] == ["x=1.0 y=2 z=a"]
