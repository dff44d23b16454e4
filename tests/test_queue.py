"""Queues of staged runs (`guild run queue`), through the real CLI."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from guild_core import procs, queue
from guild_core.run import Run

from conftest import most_at_once, overlap, spawn, wait_for

# Each start of a run appends its id to STARTS: a run started twice
# shows twice.
SCRIPT = """
import os, sys, time
with open(os.environ["STARTS"], "a") as f:
    f.write(os.environ["RUN_ID"] + "\\n")
print("gpu", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
"""


@pytest.fixture
def starts(tmp_path, monkeypatch):
    path = tmp_path / "starts.log"
    monkeypatch.setenv("STARTS", str(path))
    return path


def stage(sh, n, *args):
    for _ in range(n):
        result = sh("run", "s.py", "--stage", "-y", *args)
        assert result.exit_code == 0, result.stderr


def runs(home: Path) -> list[Run]:
    root = home / "runs"
    if not root.is_dir():
        return []
    return [Run.for_dir(p) for p in sorted(root.iterdir()) if not p.name.startswith(".")]


def script_runs(home: Path) -> list[Run]:
    return [r for r in runs(home) if r.op_name == "s.py"]


def queue_run(home: Path) -> Run:
    return wait_for(lambda: next((r for r in runs(home) if r.op_name == "queue"), None), what="queue run")


def output(run: Run) -> bytes:
    try:
        return run.guild_path("output").read_bytes()
    except FileNotFoundError:
        return b""


def test_workers_run_staged_runs_two_at_a_time(sh, guild_home, project, starts):
    project.write("s.py", SCRIPT)
    stage(sh, 4)
    result = sh("run", "queue", "run-once=yes", "workers=2", "-y")  # run-once: returns when done
    assert result.exit_code == 0, result.stderr
    rs = script_runs(guild_home)
    assert [r.status for r in rs] == ["completed"] * 4
    assert most_at_once(rs) == 2
    assert sorted(starts.read_text().split()) == sorted(r.id for r in rs)
    for r in rs:
        assert b"gpu None" in r.guild_path("output").read_bytes()
    q = queue_run(guild_home)
    assert q.status == "completed"
    assert all(f"Starting staged run {r.id}" in result.output for r in rs)
    assert "queue" in sh("runs").output


def test_gpus_one_run_per_gpu(sh, guild_home, project, starts):
    project.write("s.py", SCRIPT)
    stage(sh, 3)
    stage(sh, 1, "--gpus", "1")
    stage(sh, 1, "--gpus", "7")  # not the queue's: left staged
    result = sh("run", "queue", "run-once=yes", "gpus=0,1", "-y")
    assert result.exit_code == 0, result.stderr
    rs = script_runs(guild_home)
    done = [r for r in rs if r.status == "completed"]
    assert len(done) == 4
    [left] = [r for r in rs if r.status == "staged"]
    assert left.get("env")["CUDA_VISIBLE_DEVICES"] == "7"
    gpus = {r.id: r.get("env")["CUDA_VISIBLE_DEVICES"] for r in done}
    assert set(gpus.values()) == {"0", "1"}
    for r in done:
        assert f"gpu {gpus[r.id]}".encode() in r.guild_path("output").read_bytes()
    assert most_at_once(done) == 2
    for a in done:
        for b in done:
            if a is not b and overlap(a, b):
                assert gpus[a.id] != gpus[b.id]
    assert "GPU spec mismatch" in result.output


def test_queues_and_start_never_start_a_run_twice(sh, guild_home, project, starts, group):
    project.write("s.py", SCRIPT)
    stage(sh, 6)
    rs = script_runs(guild_home)
    # The newest two: still staged when the --start processes look
    # (the queues take the oldest first), claimed by whoever comes first.
    newest = sorted(rs, key=lambda r: r.get("started"))[-2:]
    ps = [spawn(group, "run", "--start", r.id, "-y") for r in newest]
    ps += [spawn(group, "run", "queue", "run-once=yes", "workers=2", "-y") for _ in range(2)]
    outs = [p.communicate(timeout=40) for p in ps]
    for p, (out, err) in zip(ps[:2], outs[:2]):
        assert p.returncode == 0 or "another process" in err or "still running" in err, err
    for p, (out, err) in zip(ps[2:], outs[2:]):
        assert p.returncode == 0, err
    started = starts.read_text().split()
    assert sorted(started) == sorted(r.id for r in rs)  # each exactly once
    assert [r.status for r in script_runs(guild_home)] == ["completed"] * 6


def test_start_refuses_a_claimed_run(sh, guild_home, project, starts):
    project.write("s.py", SCRIPT)
    stage(sh, 1)
    [r] = script_runs(guild_home)
    # Claimed by this (live) process, as a queue claims it.
    assert queue.claim(r, procs.current())
    assert not queue.claim(r)  # a second claim fails
    result = sh("run", "--start", r.id, "-y")
    assert result.exit_code == 1
    assert "another process" in result.stderr
    assert not starts.exists()


def test_stop_queue_terminates_its_runs_and_leaves_the_rest_staged(sh, guild_home, project, starts, group):
    project.write("s.py", SCRIPT.replace("else 1.0", "else 60.0"))
    q = spawn(group, "run", "queue", "workers=2", "poll-interval=1", "-y")
    qrun = queue_run(guild_home)
    wait_for(lambda: Run.for_dir(qrun.path).status == "running", what="queue running")
    # Staged after the queue started: it waits for new ones.
    stage(sh, 3)
    wait_for(lambda: [r.status for r in script_runs(guild_home)].count("running") == 2, what="two running")
    stopped = sh("stop", qrun.id, "-y")
    assert stopped.exit_code == 0, stopped.stderr
    q.wait(timeout=20)
    statuses = sorted(r.status for r in script_runs(guild_home))
    assert statuses == ["staged", "terminated", "terminated"]
    assert Run.for_dir(qrun.path).status == "terminated"
    for r in script_runs(guild_home):
        if r.status == "terminated":
            assert r.get("exit_status") < 0
            assert b"gpu" in r.guild_path("output").read_bytes()


def test_ctrl_c_stops_the_queue_and_its_runs(sh, guild_home, project, starts, group):
    project.write("s.py", SCRIPT.replace("else 1.0", "else 60.0"))
    stage(sh, 2)
    q = spawn(group, "run", "queue", "poll-interval=1", "-y")
    wait_for(lambda: [r.status for r in script_runs(guild_home)].count("running") == 1, what="one running")
    os.killpg(q.pid, signal.SIGINT)
    q.wait(timeout=20)
    assert sorted(r.status for r in script_runs(guild_home)) == ["staged", "terminated"]
    assert queue_run(guild_home).status == "terminated"


def test_wait_for_running_waits_for_other_runs(sh, guild_home, project, starts, group):
    project.write("slow.py", SCRIPT.replace("else 1.0", "else 60.0"))
    project.write("s.py", SCRIPT)
    assert sh("run", "slow.py", "-b", "-y").exit_code == 0
    [other] = [r for r in runs(guild_home) if r.op_name == "slow.py"]
    wait_for(lambda: Run.for_dir(other.path).status == "running", what="other running")
    stage(sh, 1)
    q = spawn(group, "run", "queue", "run-once=yes", "wait-for-running=yes", "poll-interval=1", "-y")
    wait_for(lambda: b"Waiting for runs to finish" in output(queue_run(guild_home)), what="queue waiting")
    assert [r.status for r in script_runs(guild_home)] == ["staged"]
    assert sh("stop", other.id, "-y").exit_code == 0
    out, err = q.communicate(timeout=30)
    assert q.returncode == 0, err
    [r] = script_runs(guild_home)
    assert r.status == "completed"
    assert r.get("started") > Run.for_dir(other.path).get("stopped")
