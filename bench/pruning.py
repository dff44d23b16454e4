"""Early stopping: wall time and best loss of a random search with no
pruner, with median and with ASHA.

The same 20-trial random search (`-o random -m 20`, one seed, so every
configuration samples the same trials) of a synthetic learning curve:
`lr` log-uniform in [1e-4, 1], the loss over 50 epochs falling from
1.5 towards a floor that is lowest at lr = 0.01, faster for larger
rates (so curves cross, as real ones do), each epoch sleeping a few ms.
Each configuration runs --reps times in a fresh home; printed: the
median wall time, its ratio to the unpruned search's, the best final
loss among completed trials and how far it is from the unpruned best
(the goal: at least 2x less time, best within 5%), and how many trials
were pruned.

Usage: python bench/pruning.py [--trials 20] [--epochs 50] [--sleep-ms 8] [--reps 3] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import guild_exe  # noqa: E402

CURVE = """\
import math, time
lr = 0.01
epochs = 50
sleep_ms = 8
distance = abs(math.log10(lr) + 2.0)      # 0 at lr = 0.01
floor = 0.1 + 0.12 * distance
tau = 5.0 + 3.0 * (1.0 - (math.log10(lr) + 4.0) / 4.0)    # larger lr: faster
for step in range(epochs):
    loss = floor + (1.5 - floor) * math.exp(-step / tau)
    print("step: %d" % step)
    print("loss: %.6f" % loss, flush=True)
    time.sleep(sleep_ms / 1000.0)
"""

CONFIGS = [
    ("none", []),
    ("median", ["--pruner", "median", "-Fp", "startup-trials=3", "-Fp", "warmup-steps=5"]),
    ("asha", ["--pruner", "asha", "-Fp", "min-resource=5", "-Fp", "reduction-factor=3"]),
]


def run_search(project: Path, args: list[str], opts) -> tuple[float, float | None, int]:
    with tempfile.TemporaryDirectory(prefix="guild-bench-pruning-") as tmp:
        env = dict(os.environ, GUILD_HOME=tmp)
        env.pop("GUILD_FAULTS", None)
        cmd = [*guild_exe(), "run", "curve.py", "lr=loguniform[1e-4:1]", f"epochs={opts.epochs}",
               f"sleep_ms={opts.sleep_ms}", "-o", "random", "-m", str(opts.trials),
               "--random-seed", str(opts.seed), "-y", *args]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
        table = subprocess.run([*guild_exe(), "compare", "--json", "-cc", ".status,.pruned,loss"],
                               cwd=project, env=env, capture_output=True, text=True, check=True)
        rows = json.loads(table.stdout)
        rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
        finals = [r["loss"] for r in rows if r.get("status") == "completed" and isinstance(r.get("loss"), (int, float))]
        pruned = sum(1 for r in rows if r.get("pruned") in (True, "yes", "true"))
        return wall, (min(finals) if finals else None), pruned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--sleep-ms", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="guild-bench-project-") as proj:
        project = Path(proj)
        (project / "curve.py").write_text(CURVE)
        results = {name: [] for name, _ in CONFIGS}
        # Interleaved: each repetition runs every configuration once, so
        # a slow spell of the machine falls on all of them.
        for _ in range(opts.reps):
            for name, args in CONFIGS:
                results[name].append(run_search(project, args, opts))
    print(f"{opts.trials}-trial random search, {opts.epochs} epochs of {opts.sleep_ms} ms, "
          f"seed {opts.seed}, medians of {opts.reps}")
    base_wall = statistics.median(w for w, _b, _p in results["none"])
    base_best = results["none"][0][1]
    print(f"{'pruner':8} {'wall s':>8} {'speed-up':>9} {'best loss':>10} {'vs none':>8} {'pruned':>7}")
    for name, _args in CONFIGS:
        walls = [w for w, _b, _p in results[name]]
        bests = [b for _w, b, _p in results[name] if b is not None]
        pruned = statistics.median(p for _w, _b, p in results[name])
        wall = statistics.median(walls)
        best = statistics.median(bests) if bests else float("nan")
        rel = (best - base_best) / base_best * 100 if base_best else float("nan")
        print(f"{name:8} {wall:8.2f} {base_wall / wall:8.2f}x {best:10.4f} {rel:+7.1f}% {pruned:7.0f}")


if __name__ == "__main__":
    main()
