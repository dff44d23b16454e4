"""Parallel trials: the wall time of a batch of sleeping trials.

Runs `guild run sleep.py i=range[1:N]` (each trial sleeps SECS) serially,
with `--workers 2`, and on Dask: a 2-worker cluster started beforehand
(`dask scheduler` and `dask worker` on 127.0.0.1, as a cluster a user
already has), and `--dask --workers 2`, which also starts its own
LocalCluster. Prints each configuration's median wall time over REPS
batches and its ratio to the ideal, N x SECS / 2 for two workers (the
goal: within 1.15 of it), and the same for the span of the trials alone,
from the first trial's start to the last one's end.

Usage: python bench/parallel.py [--trials 16] [--secs 0.5] [--reps 3] [--no-dask]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import guild_exe

SCRIPT = """
import time
i = 1
secs = 0.5
time.sleep(secs)
print("loss: %s" % i)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(workers: int) -> tuple[str, list[subprocess.Popen]]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )]
    for _ in range(workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads", "1",
             "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, procs


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except OSError:
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def batch_seconds(guild: list[str], project: Path, home: Path, trials: int, secs: float, extra: list[str]) -> tuple[float, float]:
    """The batch's wall time, and the span of its trials: from the first
    trial's start to the last one's end (without guild's start-up and
    the executor's own, such as importing Dask)."""
    env = dict(os.environ, GUILD_HOME=str(home))
    cmd = guild + ["run", "sleep.py", f"i=range[1:{trials}]", f"secs={secs}", "-y", "-q", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    wall = time.perf_counter() - t0
    starts, stops = [], []
    for run_dir in (home / "runs").iterdir():
        attrs = run_dir / ".guild" / "attrs"
        if (run_dir / ".guild" / "proto").exists():
            continue
        starts.append(int((attrs / "started").read_text()))
        stops.append(int((attrs / "stopped").read_text()))
    return wall, (max(stops) - min(starts)) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--secs", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    guild = guild_exe()
    ideal = args.trials * args.secs / 2
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            project = tmp / "project"
            project.mkdir()
            (project / "sleep.py").write_text(SCRIPT)
            configs = [("serial", []), ("--workers 2", ["--workers", "2"])]
            if not args.no_dask:
                address, procs = start_cluster(2)
                configs += [("Dask, 2 workers", ["--dask", address]), ("--dask --workers 2 (own cluster)", ["--dask", "--workers", "2"])]
            # Warm caches (bytecode, flag detection).
            batch_seconds(guild, project, tmp / "warm", 2, 0.0, [])
            times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in configs}
            for rep in range(args.reps):
                # Interleaved, so a busy moment of the machine hits all alike.
                for i, (name, extra) in enumerate(configs):
                    home = tmp / f"home-{rep}-{i}"
                    times[name].append(batch_seconds(guild, project, home, args.trials, args.secs, extra))
            print(f"{args.trials} trials of {args.secs:g} s; ideal for 2 workers {ideal:.2f} s; median of {args.reps}")
            print(f"  {'':<36} {'wall':>8}   {'ratio':>5}     {'trials':>8}   {'ratio':>5}")
            for name, _ in configs:
                wall = statistics.median(t[0] for t in times[name])
                span = statistics.median(t[1] for t in times[name])
                print(f"  {name:<36} {wall:6.2f} s   {wall / ideal:5.2f} x   {span:6.2f} s   {span / ideal:5.2f} x")
    finally:
        stop_cluster(procs)


if __name__ == "__main__":
    main()
