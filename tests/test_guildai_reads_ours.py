"""Guild AI 0.9 reads the runs guild writes.

Opt-in: set GUILDAI_EXE to a `guild` executable of Guild AI 0.9 (installed
in its own virtualenv: pip install guildai==0.9.0 "numpy<1.25"
"scikit-learn<1.3"). Without it the test is skipped, never passed.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

GUILDAI = os.environ.get("GUILDAI_EXE")

pytestmark = pytest.mark.skipif(not GUILDAI, reason="GUILDAI_EXE not set")


def guildai(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([GUILDAI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_guildai_lists_and_shows_our_runs(cli, guild_home, project):
    project.write(
        "train.py",
        """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--x", type=float, default=0.1)
        p.add_argument("--z", default="a")
        a = p.parse_args()
        for step in range(3):
            print("loss: %f (step %d)" % (a.x + step, step))
        """,
    )
    project.write("glob.py", "lr = 0.1\nprint('acc: %f' % lr)\n")
    project.write("fail.py", "import sys\nsys.exit(3)\n")
    assert cli("run", "train.py", "x=0.5", "-y", "-l", "mine", "--tag", "t1").exit_code == 0
    assert cli("run", "glob.py", "lr=0.25", "-y").exit_code == 0
    assert cli("run", "fail.py", "-y").exit_code == 3
    assert cli("run", "train.py", "--stage", "-y").exit_code == 0
    ours = json.loads(cli("runs", "--json").output)
    theirs = json.loads(guildai("runs", "--json", cwd=project.path))
    assert [r["id"] for r in theirs] == [r["id"] for r in ours]
    assert [r["status"] for r in theirs] == ["staged", "error", "completed", "completed"]
    for run in ours:
        info = json.loads(guildai("runs", "info", run["id"], "--json", cwd=project.path))
        mine = json.loads(cli("runs", "info", run["id"], "--json").output)
        for key in ("id", "operation", "status", "label", "flags", "scalars", "exit_status", "tags"):
            assert info[key] == mine[key], (key, run["id"])
