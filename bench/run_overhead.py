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
import sys
import tempfile
from pathlib import Path

from scale import guild_exe, timed


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
