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
