"""Stopping runs: guild stop, Ctrl-C, background runs, a killed guild."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guild_core.run import Run

from conftest import wait_for

SLOW = """
import time
for i in range(600):
    print("progress: %d" % i, flush=True)
    time.sleep(0.05)
"""


def the_run(home: Path) -> Run:
    runs = wait_for(lambda: [p for p in (home / "runs").glob("*") if not p.name.startswith(".")], what="run dir")
    return Run.for_dir(runs[0])


def spawn(procs, args, cwd, **kw):
    p = subprocess.Popen(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )
    procs.append(p)
    return p


def test_background_run_and_stop(sh, guild_home, project, tmp_path):
    project.write("slow.py", SLOW)
    pidfile = tmp_path / "pid"
    result = sh("run", "slow.py", "-y", "--pidfile", str(pidfile))
    assert result.exit_code == 0, result.stderr
    run = the_run(guild_home)
    assert result.output.startswith(f"slow.py started in background as {run.id} (pid ")
    assert int(pidfile.read_text())
    wait_for(lambda: Run.for_dir(run.path).status == "running", what="running")
    wait_for(lambda: b"progress: 3" in run.guild_path("output").read_bytes(), what="output")
    listed = sh("runs").output
    assert "running" in listed
    stopped = sh("stop", "-y")
    assert stopped.exit_code == 0, stopped.stderr
    assert stopped.output.startswith(f"Stopping {run.id}")
    run = Run.for_dir(run.path)
    assert run.status == "terminated"
    assert run.get("exit_status") == -15
    assert not run.guild_path("LOCK").exists()
    assert run.last_scalars()["progress"][0] >= 3


def test_ctrl_c_terminates(guild_home, project, procs):
    project.write("slow.py", SLOW)
    p = spawn(procs, ["run", "slow.py", "-y"], project.path, start_new_session=True)
    run = the_run(guild_home)
    wait_for(lambda: run.guild_path("LOCK").exists() and b"progress: 2" in run.guild_path("output").read_bytes(), what="output")
    # A terminal's Ctrl-C signals the whole foreground process group.
    os.killpg(p.pid, signal.SIGINT)
    p.wait(timeout=20)
    run = Run.for_dir(run.path)
    assert run.status == "terminated"
    assert run.get("exit_status") < 0


def test_sigint_to_guild_alone_stops_the_run(guild_home, project, procs):
    project.write("slow.py", SLOW)
    p = spawn(procs, ["run", "slow.py", "-y"], project.path)
    run = the_run(guild_home)
    wait_for(lambda: run.guild_path("LOCK").exists(), what="lock")
    p.send_signal(signal.SIGINT)
    p.wait(timeout=20)
    assert Run.for_dir(run.path).status == "terminated"


def test_killed_guild_never_reads_running_forever(sh, guild_home, project, procs):
    project.write("slow.py", SLOW)
    p = spawn(procs, ["run", "slow.py", "-y"], project.path)
    run = the_run(guild_home)
    wait_for(lambda: run.guild_path("LOCK").exists(), what="lock")
    child = int(run.guild_path("LOCK").read_text())
    p.kill()  # guild dies without recording anything
    p.wait()
    # The script loses its output pipe and dies, or is stopped; either
    # way the run stops reading as running.
    try:
        os.kill(child, signal.SIGTERM)
    except ProcessLookupError:
        pass
    wait_for(lambda: Run.for_dir(run.path).status != "running", what="not running")
    assert Run.for_dir(run.path).status in ("error", "terminated")
    # guild stop on a dead run is harmless.
    assert sh("stop", "-y").output.strip() == "Nothing to stop."


def test_stop_records_end_when_guild_is_gone(sh, guild_home, project, procs):
    project.write("slow.py", SLOW)
    p = spawn(procs, ["run", "slow.py", "-y"], project.path)
    run = the_run(guild_home)
    wait_for(lambda: run.guild_path("LOCK").exists(), what="lock")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    # The script outlives guild until it next writes; stop it now.
    result = sh("stop", "-y", run.id[:8])
    assert result.exit_code == 0, result.stderr
    run = Run.for_dir(run.path)
    assert run.status in ("terminated", "error")
    assert not run.pid


def test_watch_follows_background_run(sh, guild_home, project):
    project.write("count.py", "import time\nfor i in range(5):\n    print('n: %d' % i, flush=True)\n    time.sleep(0.1)\n")
    sh("run", "count.py", "-y", "--background")
    run = the_run(guild_home)
    result = sh("watch", run.id[:8])
    assert result.exit_code == 0, result.stderr
    assert "n: 4" in result.output
    assert f"Run {run.id} stopped with a status of 'completed'" in result.stderr
