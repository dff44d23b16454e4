"""The examples the README points at run end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart(sh, guild_home, tmp_path, monkeypatch):
    project = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", project)
    monkeypatch.chdir(project)
    ops = sh("operations")
    assert ops.output.splitlines() == [
        "prepare  Write a data set",
        "train    Fit a line with gradient descent",
    ]
    help_op = sh("run", "train.py", "--help-op").output
    assert "  lr      Learning rate (default is 0.05)" in help_op
    ran = sh("run", "train.py", "lr=0.1", "-y")
    assert ran.exit_code == 0, ran.stderr
    info = json.loads(sh("runs", "info", "--json").output)
    assert info["flags"] == {"lr": 0.1, "epochs": 100, "noise": 0.1, "seed": 0}
    assert info["status"] == "completed"
    assert info["scalars"]["loss"][1] == 99
    assert abs(info["scalars"]["w"][0] - 3.0) < 0.3
    assert (Path(info["run_dir"]) / "weights.npy").exists()
    prep = sh("run", "prepare", "samples=10", "name=small", "-y")
    assert prep.exit_code == 0, prep.stderr
    assert prep.output == "wrote 10 samples to small.json\ntotal: 112.5\n"
    info = json.loads(sh("runs", "info", "--json").output)
    assert info["flags"] == {"samples": 10, "scale": 2.5, "name": "small"}
    assert info["operation"] == "prepare"


def test_summary(sh, guild_home, tmp_path, monkeypatch):
    """The README's summary tour: trials, a summary of all of them, the
    best two, and a selection made on the command line."""
    project = tmp_path / "summary"
    shutil.copytree(EXAMPLES / "summary", project)
    monkeypatch.chdir(project)
    assert sh("run", "train", "lr=[0.01,0.05,0.1,0.5]", "-y").exit_code == 0
    preview = sh("run", "summary", input="n\n")
    assert preview.exit_code == 0  # declining is not an error, as in Guild AI
    assert preview.output.count("  train  ") == 4
    assert "The following runs are selected:" in preview.output
    ran = sh("run", "summary", "-y")
    assert ran.exit_code == 0, ran.stderr
    assert "runs: 4\n" in ran.output
    summary = json.loads(sh("runs", "info", "--json").output)
    run_dir = Path(summary["run_dir"])
    rows = (run_dir / "summary.csv").read_text().splitlines()
    assert rows[0] == "run,lr,loss,model" and len(rows) == 5
    entries = json.loads((run_dir / "guild-runs.json").read_text())
    for entry in entries:
        assert (run_dir / entry["id"]).is_symlink()
        upstream = json.loads(sh("runs", "info", entry["id"], "--json").output)
        assert entry["flags"] == upstream["flags"]
        assert abs(entry["scalars"]["loss"]["last"] - upstream["scalars"]["loss"][0]) < 1e-9
    best_loss = min(e["scalars"]["loss"]["last"] for e in entries)
    assert abs(summary["scalars"]["best_loss"][0] - best_loss) < 1e-6
    best = sh("run", "best", "-y")
    assert best.exit_code == 0, best.stderr
    assert "runs: 2\n" in best.output
    chosen = sh("run", "summary", "train=where lr < 0.2", "-y")
    assert chosen.exit_code == 0, chosen.stderr
    assert "runs: 3\n" in chosen.output
