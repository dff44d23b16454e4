"""The run index: freshness behind its back, damage, crashes, and the
same output with and without it (never timed: see bench/)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from guild_core import index


def guild(*args, env=None, input=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        capture_output=True, text=True, env=full, input=input, timeout=120,
    )


def age(path: Path, seconds: float = 30) -> None:
    """Make every file and directory under `path` look `seconds` old:
    the index trusts only times older than its racy window."""
    t = time.time() - seconds
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (t, t), follow_symlinks=False)
    os.utime(path, (t, t))


@pytest.fixture
def home(guild_home, project):
    project.write("train.py", "x = 1\nprint('loss: %s' % (1.0 / x))\n")
    for x in (1, 2, 4):
        assert guild("run", "train.py", f"x={x}", "-y").returncode == 0
    age(guild_home / "runs")
    first = guild("runs")
    assert first.returncode == 0
    assert index.db_path().exists()
    return guild_home


def labels(*args):
    out = guild("runs", "--json", *args)
    assert out.returncode == 0, out.stderr
    return [r["label"] for r in json.loads(out.stdout)]


def test_a_label_written_in_place_shows_next_time(home):
    """Guild AI 0.9 writes attribute files in place: no directory's time
    changes, and the index still sees it."""
    run_dir = sorted((home / "runs").iterdir())[0]
    label = run_dir / ".guild" / "attrs" / "label"
    with open(label, "w") as f:  # in place, as Guild AI writes
        f.write("edited in place\n")
    t = time.time() - 10
    os.utime(label, (t, t))
    assert "edited in place" in labels()
    assert "edited in place" in guild("runs").stdout


def test_runs_added_and_removed_by_plain_file_operations(home):
    runs = home / "runs"
    src = sorted(runs.iterdir())[0]
    new_id = uuid.uuid4().hex
    shutil.copytree(src, runs / new_id, symlinks=True)
    (runs / new_id / ".guild" / "attrs" / "label").write_text("copied\n")
    assert "copied" in labels()
    shutil.rmtree(runs / new_id)
    assert "copied" not in labels()
    assert len(labels()) == 3


def test_scalars_follow_the_event_files(home, project):
    assert len(labels("-F", "loss < 0.5")) == 1
    # A fourth run logging a low loss: found by the next filter.
    assert guild("run", "train.py", "x=8", "-y").returncode == 0
    assert sorted(labels("-F", "loss < 0.5")) == ["x=4", "x=8"]
    # An event file removed behind the index's back.
    run_dir = next(p for p in (home / "runs").iterdir() if "x=8" in (p / ".guild" / "attrs" / "label").read_text())
    for event in (run_dir / ".guild").glob("events.out.tfevents.*"):
        event.unlink()
    assert labels("-F", "loss < 0.5") == ["x=4"]


def test_a_running_run_is_live_not_stale(home, project):
    project.write("slow.py", "import time\ntime.sleep(1.5)\nprint('done')\n")
    assert guild("run", "slow.py", "-b", "-y").returncode == 0
    deadline = time.time() + 20
    while "running" not in guild("runs").stdout and time.time() < deadline:
        time.sleep(0.1)
    assert "running" in guild("runs").stdout
    while "running" in guild("runs").stdout and time.time() < deadline:
        time.sleep(0.2)
    listing = guild("runs").stdout.splitlines()
    assert listing[0].split()[1] == "slow.py" and "completed" in listing[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "newer", "foreign"])
def test_a_damaged_index_is_set_aside_and_rebuilt(home, damage):
    before = guild("runs", "-a").stdout
    path = index.db_path()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if damage == "garbage":
        path.write_bytes(b"not a database at all " * 100)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif damage == "newer":
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 999")
        db.commit()
        db.close()
    else:
        path.unlink()
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE other (x)")
        db.commit()
        db.close()
    out = guild("runs", "-a")
    assert out.returncode == 0
    assert out.stdout == before
    notices = [line for line in out.stderr.splitlines() if "run index" in line]
    if damage != "truncated" or notices:
        assert len(notices) == 1 and notices[0].startswith("guild: the run index was set aside")
    assert list(path.parent.glob(path.name + ".bad-*")) or damage == "truncated"
    again = guild("runs", "-a")
    assert again.stdout == before and "run index" not in again.stderr


def test_killed_while_writing_the_index(home, project):
    before = guild("runs", "-a").stdout
    # A new run makes the next listing write the index; it dies there.
    assert guild("run", "train.py", "x=5", "-y").returncode == 0
    dead = guild("runs", "-a", env={"GUILD_FAULTS": "index.write=kill"})
    assert dead.returncode != 0
    out = guild("runs", "-a")
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert len(out.stdout.splitlines()) == len(before.splitlines()) + 1
    assert out.stdout == guild("runs", "-a", env={"GUILD_NO_INDEX": "1"}).stdout


def test_no_index_when_the_cache_cannot_be_written(home):
    before = guild("runs", "-a").stdout
    cache = home / "cache"
    shutil.rmtree(cache)
    cache.write_text("a file where the cache directory should be\n")
    out = guild("runs", "-a")
    assert out.returncode == 0 and out.stdout == before and out.stderr == ""


COMMANDS = [
    ("runs",), ("runs", "-a"), ("runs", "--json"), ("runs", "-F", "loss < 0.5"),
    ("runs", "-Fl", "x=2"), ("runs", "info"), ("runs", "info", "--json"),
    ("compare", "--csv", "-"), ("compare", "-t"), ("select", "--min", "loss"),
    ("runs", "-c"), ("runs", "-v"), ("tag", "--list-all"),
]


def test_deleting_the_cache_changes_no_output(home):
    guild("tag", "-a", "red", "-y")
    guild("comment", "-m", "note", "-y")
    age(home / "runs")
    with_index = [guild(*cmd) for cmd in COMMANDS]
    shutil.rmtree(home / "cache")
    without = [guild(*cmd, env={"GUILD_NO_INDEX": "1"}) for cmd in COMMANDS]
    rebuilt = [guild(*cmd) for cmd in COMMANDS]
    for cmd, a, b, c in zip(COMMANDS, with_index, without, rebuilt):
        assert (a.returncode, a.stdout) == (b.returncode, b.stdout) == (c.returncode, c.stdout), cmd
