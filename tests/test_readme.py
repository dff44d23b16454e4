"""Every line of the README's tour runs as written, in order: each
``bash`` block after "A short tour" runs line by line in a copy of the
examples, with a temporary guild home, answering the prompts yes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def tour_blocks() -> list[list[str]]:
    text = README.read_text()
    tour = text.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", tour, re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def test_the_tour_has_lines():
    blocks = tour_blocks()
    assert len(blocks) >= 2 and all(block[0].startswith("cd examples/") for block in blocks)


def test_every_tour_line_runs_as_written(guild_home, tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, GUILD_HOME=str(guild_home), PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    for block in tour_blocks():
        cwd = tmp_path
        for line in block:
            command = line.split("  #", 1)[0].strip()
            if command.startswith("cd "):
                cwd = cwd / command[3:].strip()
                continue
            proc = subprocess.run(
                ["bash", "-c", command], cwd=cwd, env=env, input="y\n" * 4,
                capture_output=True, text=True, timeout=120,
            )
            assert proc.returncode == 0, f"{line!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, f"{line!r}:\n{proc.stderr}"
