"""Parallel trials (``--workers N``, ``--gpus`` slots), through the real CLI."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from guild_core.run import Run, runs_in

from conftest import most_at_once, overlap, spawn, wait_for

# Sleeps `secs` (longer while the file $SLOW names exists), printing a
# line before and after, and loss = x.
SCRIPT = """
import os, time
x = 1
secs = 0.6
print("begin", x, flush=True)
slow = os.environ.get("SLOW")
deadline = time.time() + secs
while time.time() < deadline or (slow and x >= 3 and os.path.exists(slow)):
    time.sleep(0.05)
print("gpu", os.environ.get("CUDA_VISIBLE_DEVICES"))
print("loss: %s" % x)
print("end", x, flush=True)
"""

BRANIN = """
import math
x1 = 0.0
x2 = 0.0
b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
loss = (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10
print("loss: %f" % loss)
"""
BRANIN_MIN = 0.397887


def batch_and_trials(home: Path) -> tuple[Run, list[Run]]:
    runs = runs_in(home / "runs")
    batches = [r for r in runs if r.batch_proto is not None]
    assert len(batches) == 1, [r.op_name for r in runs]
    # Its links name its trials (in this home, whichever is current).
    trials = [Run(link.name, home / "runs" / link.name) for link in batches[0].path.iterdir() if link.is_symlink()]
    return batches[0], trials


def start_slow_batch(group, project, tmp_path, grid: str):
    """``guild run sleepy.py GRID --workers 2`` in the background, its
    trials with x >= 3 running until the returned file is removed."""
    project.write("sleepy.py", SCRIPT)
    slow = tmp_path / "slow"
    slow.touch()
    p = spawn(group, "run", "sleepy.py", grid, "--workers", "2", "-y", env=dict(os.environ, SLOW=str(slow)), text=False)
    return p, slow


def flag(run: Run, name: str):
    return (Run(run.id, run.path).get("flags") or {}).get(name)


def test_grid_with_two_workers_overlaps_and_caps(sh, guild_home, project):
    project.write("sleepy.py", SCRIPT)
    r = sh("run", "sleepy.py", "x=[1,2,3,4]", "--workers", "2", "-y")
    assert r.exit_code == 0, r.stderr
    _batch, trials = batch_and_trials(guild_home)
    assert len(trials) == 4
    assert all(t.status == "completed" for t in trials)
    by_x = {flag(t, "x"): t for t in trials}
    assert overlap(by_x[1], by_x[2]) and overlap(by_x[3], by_x[4])
    assert most_at_once(trials) == 2
    # Every line on the terminal names its trial; each trial's own
    # output holds its lines only, whole.
    for t in trials:
        x = flag(t, "x")
        own = t.guild_path("output").read_text()
        assert own == f"begin {x}\ngpu None\nloss: {x}\nend {x}\n"
        for word in ("begin", "end"):
            assert f"[{t.short_id}] {word} {x}\n" in r.output
    assert "Running trials on 2 local workers" in r.output


def test_gpu_slots_one_trial_per_gpu(sh, guild_home, project):
    project.write("sleepy.py", SCRIPT)
    r = sh("run", "sleepy.py", "x=[1,2,3,4]", "--workers", "2", "--gpus", "0,1", "-y")
    assert r.exit_code == 0, r.stderr
    _batch, trials = batch_and_trials(guild_home)
    gpus = {}
    for t in trials:
        gpus[t.id] = (Run(t.id, t.path).get("env") or {}).get("CUDA_VISIBLE_DEVICES")
        assert f"gpu {gpus[t.id]}" in t.guild_path("output").read_text()
    assert set(gpus.values()) == {"0", "1"}
    for a in trials:
        for b in trials:
            if a is not b and overlap(a, b):
                assert gpus[a.id] != gpus[b.id]


def test_random_and_batch_file_in_parallel(sh, guild_home, project, tmp_path):
    project.write("sleepy.py", SCRIPT)
    # random search knows nothing of parallel trials: it still works.
    r = sh("run", "sleepy.py", "x=uniform[1:2]", "-m", "4", "--workers", "2", "-y")
    assert r.exit_code == 0, r.stderr
    _batch, trials = batch_and_trials(guild_home)
    assert len(trials) == 4 and most_at_once(trials) == 2
    project.write("rows.csv", "x\n5\n6\n7\n")
    home2 = tmp_path / "home2"
    r = sh("run", "sleepy.py", "@rows.csv", "--workers", "3", "-y", env={"GUILD_HOME": str(home2)})
    assert r.exit_code == 0, r.stderr
    _batch, trials = batch_and_trials(home2)
    assert sorted(flag(t, "x") for t in trials) == [5, 6, 7]
    assert most_at_once(trials) == 3


def _best_distance(home: Path) -> tuple[float, list[tuple]]:
    _batch, trials = batch_and_trials(home)
    points = [(flag(t, "x1"), flag(t, "x2")) for t in trials]
    losses = [Run(t.id, t.path).last_scalars()["loss"][0] for t in trials]
    return min(losses) - BRANIN_MIN, points


def test_gp_with_two_workers_proposes_distinct_points_and_searches(sh, guild_home, project, tmp_path):
    project.write("branin.py", BRANIN)
    args = ["run", "branin.py", "x1=uniform[-5:10]", "x2=uniform[0:15]", "-o", "gp", "-m", "14", "--random-seed", "3", "-y"]
    serial_home, parallel_home = tmp_path / "serial", tmp_path / "parallel"
    r = sh(*args, env={"GUILD_HOME": str(serial_home)}, timeout=120)
    assert r.exit_code == 0, r.stderr
    r = sh(*args, "--workers", "2", env={"GUILD_HOME": str(parallel_home)}, timeout=120)
    assert r.exit_code == 0, r.stderr
    serial, _ = _best_distance(serial_home)
    parallel, points = _best_distance(parallel_home)
    assert len(points) == 14 and len(set(points)) == 14
    # Random search over this box rarely comes within 3 of the minimum in
    # 14 trials; gp, serial or parallel, does.
    assert serial < 3.0 and parallel < 3.0, (serial, parallel)


def test_gp_propose_concurrent_uses_constant_liar():
    from guild_core.batch import BatchContext
    from guild_opt_gp import SkoptOptimizer

    ctx = BatchContext(space={"x": ("uniform", (0.0, 10.0))}, seed=5, max_trials=10, opt_flags={"random-starts": 2})
    opt = SkoptOptimizer("gp", ctx)
    for x in (1.0, 9.0, 5.0):
        opt.observe({"x": x}, (x - 5.0) ** 2)
    running = opt.propose_concurrent(1, [])
    assert len(running) == 1
    more = opt.propose_concurrent(2, running)
    xs = [t["x"] for t in running + more]
    assert len(set(xs)) == 3
    # The model's own data are untouched by the lies.
    assert opt._opt.yi == [16.0, 16.0, 0.0]
    assert opt.proposed == 3


def test_ctrl_c_terminates_every_trial_and_needed_reruns_the_rest(sh, guild_home, project, tmp_path, group):
    p, slow = start_slow_batch(group, project, tmp_path, "x=[1,2,3,4]")

    def slow_ones_running():
        try:
            _b, trials = batch_and_trials(guild_home)
        except AssertionError:
            return False
        running = [t for t in trials if flag(t, "x") >= 3 and t.status == "running"]
        return len(running) == 2 and all(t.guild_path("output").exists() and t.guild_path("output").read_text() for t in running)

    wait_for(slow_ones_running, timeout=30, what="trials 3 and 4 running")
    # Ctrl-C in a terminal: SIGINT to the whole foreground group.
    os.killpg(p.pid, signal.SIGINT)
    p.wait(timeout=30)
    assert p.returncode != 0
    batch, trials = batch_and_trials(guild_home)
    status = {flag(t, "x"): Run(t.id, t.path).status for t in trials}
    assert status == {1: "completed", 2: "completed", 3: "terminated", 4: "terminated"}
    assert Run(batch.id, batch.path).status == "terminated"
    started = {t.id: Run(t.id, t.path).get("started") for t in trials}
    slow.unlink()
    r = sh("run", "--restart", batch.id, "--needed", "--workers", "2", "-y")
    assert r.exit_code == 0, r.stderr
    _b, after = batch_and_trials(guild_home)
    assert sorted(t.id for t in after) == sorted(started)
    for t in after:
        fresh = Run(t.id, t.path)
        assert fresh.status == "completed"
        if flag(t, "x") <= 2:
            assert fresh.get("started") == started[t.id]
        else:
            assert fresh.get("started") != started[t.id]


def test_guild_stop_stops_a_parallel_batch(sh, guild_home, project, tmp_path, group):
    p, slow = start_slow_batch(group, project, tmp_path, "x=[3,4,5]")

    def two_running():
        try:
            _b, trials = batch_and_trials(guild_home)
        except AssertionError:
            return False
        return sum(1 for t in trials if t.status == "running") == 2

    wait_for(two_running, timeout=30, what="two trials running")
    batch, _ = batch_and_trials(guild_home)
    r = sh("stop", batch.id, "-y")
    assert r.exit_code == 0, r.stderr
    p.wait(timeout=30)
    _b, trials = batch_and_trials(guild_home)
    # The third trial, created ahead for the first free worker, waits.
    assert sorted(Run(t.id, t.path).status for t in trials) == ["pending", "terminated", "terminated"]
    assert Run(batch.id, batch.path).status == "terminated"


@pytest.mark.parametrize(
    "args, message",
    [
        (["x=[1,2]", "--workers", "0"], "guild: invalid --workers 0: give a number of trials to run at once, 1 or more"),
        (["x=1", "--workers", "2"], "guild: --workers and --dask run a batch's trials, and this is a single run"),
        (["x=[1,2]", "--dask-resources", "gpu=1"], "guild: --dask-resources needs --dask"),
        (["x=[1,2]", "--dask", "--dask-resources", "gpu=lots"], "guild: invalid --dask-resources 'gpu=lots': expected NAME=N, as gpu=1"),
    ],
)
def test_bad_parallel_options_are_one_line_and_start_nothing(sh, guild_home, project, args, message):
    project.write("sleepy.py", SCRIPT)
    r = sh("run", "sleepy.py", *args, "-y")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == message
    assert "Traceback" not in r.stderr
    assert not list((guild_home / "runs").glob("*")) if (guild_home / "runs").exists() else True


def test_guild_stop_of_one_trial_leaves_the_batch_going(sh, guild_home, project, tmp_path, group):
    p, slow = start_slow_batch(group, project, tmp_path, "x=[3,4]")

    def both_running():
        try:
            _b, trials = batch_and_trials(guild_home)
        except AssertionError:
            return None
        return len(trials) == 2 and all(t.status == "running" for t in trials) and trials

    one, other = wait_for(both_running, timeout=30, what="two trials running")
    r = sh("stop", one.id, "-y")
    assert r.exit_code == 0, r.stderr
    wait_for(lambda: Run(one.id, one.path).status == "terminated", timeout=20, what="the trial terminated")
    assert p.poll() is None and Run(other.id, other.path).status == "running"
    slow.unlink()
    out, err = p.communicate(timeout=30)
    assert Run(other.id, other.path).status == "completed"
    batch, _ = batch_and_trials(guild_home)
    # One trial failed (terminated): the batch ends in error, as serially.
    assert Run(batch.id, batch.path).status == "error"


def test_repeated_batch_file_rows_are_trials_of_their_own(sh, guild_home, project):
    project.write("sleepy.py", SCRIPT)
    project.write("rows.csv", "x\n1\n1\n2\n")
    r = sh("run", "sleepy.py", "@rows.csv", "--workers", "2", "-y")
    assert r.exit_code == 0, r.stderr
    batch, trials = batch_and_trials(guild_home)
    assert sorted(flag(t, "x") for t in trials) == [1, 1, 2]
    assert all(Run(t.id, t.path).status == "completed" for t in trials)
    # A restart with --needed finds all three, and reruns none.
    started = {t.id: Run(t.id, t.path).get("started") for t in trials}
    r = sh("run", "--restart", batch.id, "--needed", "--workers", "2", "-y")
    assert r.exit_code == 0, r.stderr
    _b, after = batch_and_trials(guild_home)
    assert {t.id: Run(t.id, t.path).get("started") for t in after} == started
