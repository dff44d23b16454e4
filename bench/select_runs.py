"""How fast run selection is over many runs.

Builds Guild homes of 1,000 and 10,000 runs by copying real run
directories (four runs made with `guild run`, each copied under new ids
with spread-out start times), then prints median wall times of:

- `guild runs` (the first 20 of the newest-first list);
- `guild runs -a --filter 'loss < 0.5'` (reads every run's flags and
  scalars);
- `guild compare --csv -` (every run's flags and scalars, as CSV).

Usage: python bench/select_runs.py [REPEATS] [SIZES...]   (default: 3 1000 10000)

The `guild` run is the one beside the Python running this script, so
running it with Guild AI's Python times Guild AI the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from scale import guild_exe, timed

SCRIPT = """\
import random
lr = 0.1
seed = 1
random.seed(seed)
for step in range(5):
    print("loss: %f" % (random.random() * lr * 10))
    print("acc: %f" % random.random())
"""


def make_home(home: Path, project: Path, size: int, seeds: list[Path]) -> None:
    runs = home / "runs"
    runs.mkdir(parents=True)
    base = int(time.time() * 1e6)
    for i in range(size):
        src = seeds[i % len(seeds)]
        run_id = uuid.uuid4().hex
        dest = runs / run_id
        shutil.copytree(src, dest, symlinks=True)
        attrs = dest / ".guild" / "attrs"
        (attrs / "id").write_text(run_id + "\n")
        started = base - i * 60_000_000
        (attrs / "started").write_text(f"{started}\n")
        (attrs / "stopped").write_text(f"{started + 2_000_000}\n")


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    sizes = [int(a) for a in sys.argv[2:]] or [1000, 10000]
    guild = guild_exe()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        project = tmp / "project"
        project.mkdir()
        (project / "train.py").write_text(SCRIPT)
        seed_home = tmp / "seed-home"
        seed_home.mkdir()  # Guild AI, for comparison, wants it to exist
        env = dict(os.environ, GUILD_HOME=str(seed_home))
        for i, lr in enumerate((0.01, 0.05, 0.1, 0.2)):
            subprocess.run(
                guild + ["run", "-y", "-q", "train.py", f"lr={lr}", f"seed={i}"],
                env=env, cwd=project, check=True, stdout=subprocess.DEVNULL,
            )
        seeds = sorted((seed_home / "runs").iterdir())
        print(f"{'runs':>7}  {'guild runs':>12}  {'runs -a -F loss<0.5':>20}  {'compare --csv -':>16}")
        for size in sizes:
            home = tmp / f"home-{size}"
            make_home(home, project, size, seeds)
            env = dict(os.environ, GUILD_HOME=str(home))
            list_ms = timed(guild + ["runs"], repeats, env, project)
            filter_ms = timed(guild + ["runs", "-a", "--filter", "loss < 0.5"], repeats, env, project)
            compare_ms = timed(guild + ["compare", "--csv", "-"], repeats, env, project)
            print(f"{size:>7}  {list_ms:>9.0f} ms  {filter_ms:>17.0f} ms  {compare_ms:>13.0f} ms")
            shutil.rmtree(home)


if __name__ == "__main__":
    main()
