"""What guild adds to a run, and how fast it starts.

Prints, as medians over several repetitions:
- `python noop.py` and `guild run -y noop.py` wall times and the difference
  (target: guild adds under 100 ms);
- `guild --help` (target: under 70 ms);
- `guild runs` on an empty Guild home.

Usage: python bench/run_overhead.py [REPEATS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def guild_exe() -> list[str]:
    exe = shutil.which("guild", path=os.path.dirname(sys.executable)) or shutil.which("guild")
    return [exe] if exe else [sys.executable, "-m", "guild_core.cli.main"]


def timed(cmd: list[str], repeats: int, env: dict, cwd: Path) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    guild = guild_exe()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        project = tmp / "project"
        project.mkdir()
        (project / "noop.py").write_text("pass\n")
        empty_home = tmp / "empty-home"
        empty_home.mkdir()
        run_home = tmp / "run-home"
        env = dict(os.environ, GUILD_HOME=str(run_home))
        # Warm caches (bytecode, flag detection) as a user's second run would.
        timed(guild + ["run", "-y", "noop.py"], 2, env, project)
        python_ms = timed([sys.executable, "noop.py"], repeats, env, project)
        run_ms = timed(guild + ["run", "-y", "noop.py"], repeats, env, project)
        help_ms = timed(guild + ["--help"], repeats, env, project)
        runs_env = dict(os.environ, GUILD_HOME=str(empty_home))
        runs_ms = timed(guild + ["runs"], repeats, runs_env, project)
    print(f"python noop.py:          {python_ms:7.1f} ms")
    print(f"guild run -y noop.py:    {run_ms:7.1f} ms")
    print(f"guild run overhead:      {run_ms - python_ms:7.1f} ms  (target < 100 ms)")
    print(f"guild --help:            {help_ms:7.1f} ms  (target < 70 ms)")
    print(f"guild runs (empty home): {runs_ms:7.1f} ms")


if __name__ == "__main__":
    main()
