"""Parallel trials: the wall time of a batch of sleeping trials.

Runs `guild run sleep.py i=range[1:N]` (each trial sleeps SECS) serially,
with `--workers 2`, and on Dask: a 2-worker cluster started beforehand
(`dask scheduler` and `dask worker` on 127.0.0.1, as a cluster a user
already has), and `--dask --workers 2`, which also starts its own
LocalCluster. Prints each configuration's median wall time over REPS
batches and its ratio to the ideal, N x SECS / 2 for two workers (the
goal: within 1.15 of it).

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


def batch_seconds(guild: list[str], project: Path, home: Path, trials: int, secs: float, extra: list[str]) -> float:
    env = dict(os.environ, GUILD_HOME=str(home))
    cmd = guild + ["run", "sleep.py", f"i=range[1:{trials}]", f"secs={secs}", "-y", "-q", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - t0


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
            times: dict[str, list[float]] = {name: [] for name, _ in configs}
            for rep in range(args.reps):
                # Interleaved, so a busy moment of the machine hits all alike.
                for name, extra in configs:
                    home = tmp / f"home-{rep}-{len(times[name])}-{abs(hash(name))}"
                    times[name].append(batch_seconds(guild, project, home, args.trials, args.secs, extra))
            print(f"{args.trials} trials of {args.secs:g} s; ideal for 2 workers {ideal:.2f} s; median of {args.reps}")
            for name, _ in configs:
                med = statistics.median(times[name])
                print(f"  {name:<36} {med:6.2f} s   {med / ideal:5.2f} x ideal")
    finally:
        stop_cluster(procs)


if __name__ == "__main__":
    main()
