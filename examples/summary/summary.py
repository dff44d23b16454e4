"""Read the runs guild linked here (guild-runs.json) and summarize them.

No guild import: each selected run is a directory link named by its id,
and guild-runs.json lists their flags and scalars.
"""

import csv
import json

with open("guild-runs.json") as f:
    runs = json.load(f)

with open("summary.csv", "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["run", "lr", "loss", "model"])
    for run in runs:
        with open(f"{run['dir']}/model.txt") as model:
            loss = run["scalars"]["loss"]["last"]
            out.writerow([run["id"][:8], run["flags"]["lr"], f"{loss:.6f}", model.read().strip()])

best = min(runs, key=lambda r: r["scalars"]["loss"]["last"])
print(f"runs: {len(runs)}")
print(f"best_run: {best['id'][:8]} (lr={best['flags']['lr']})")
print(f"best_loss: {best['scalars']['loss']['last']:.6f}")
