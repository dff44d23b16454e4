"""bench/scale.py runs end to end at a tiny size (no figure is checked
for its value: timings belong to the bench scripts, not the tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_scale_builds_a_home_and_prints_a_figure(tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, str(BENCH / "scale.py"), "--sizes", "30", "--reps", "1",
           "--commands", "runs", "--cache-dir", str(cache)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^  guild runs +[\d,.]+ ms +\d+ MB$", out.stdout, re.M), out.stdout
    (runs_dir,) = cache.glob("scale-v*/home-30/runs")
    runs = list(runs_dir.iterdir())
    assert len(runs) == 30
    for run in runs:
        assert (run / ".guild" / "attrs" / "id").read_text() == run.name + "\n"
    # A second time the home is reused, not built.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "built a home" not in again.stdout


def test_view_bench_prints_first_page_figures(tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, str(BENCH / "view.py"), "--sizes", "30", "--servers", "1", "--reps", "1",
           "--cache-dir", str(cache)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^  first page, cold +[\d,]+ ms$", out.stdout, re.M), out.stdout
    assert re.search(r"^  first page, warm +[\d,]+ ms$", out.stdout, re.M), out.stdout


def test_pruning_bench_prints_each_pruner(tmp_path):
    cmd = [sys.executable, str(BENCH / "pruning.py"), "--trials", "4", "--epochs", "6", "--sleep-ms", "1", "--reps", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in ("none", "median", "asha"):
        assert re.search(rf"^{name} +[\d.]+ +[\d.]+x +[\d.]+ +[+-][\d.]+% +\d+$", out.stdout, re.M), out.stdout
