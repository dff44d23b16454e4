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

from conftest import age

from guild_core import index


def guild(*args, env=None, input=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        capture_output=True, text=True, env=full, input=input, timeout=120,
    )


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


# -- filters answered in SQL --------------------------------------------

FILTERS = [
    "loss < 0.5", "loss <= 0.25", "loss > 0.75", "loss >= 0.5 and acc > 0.3",
    "loss = 0.5", "scalar:loss < 0.4", "x < 5 or loss < 0.2", "not loss < 0.5",
    "loss < 0.5 and label contains 'x=1'", "(loss < 0.3 or acc > 0.8) and x >= 0",
    "loss != 0.5", "loss < 'a'", "loss < 1e400", "acc < 0.5 or label contains x",
]


@pytest.fixture
def many(home):
    """60 runs cloned from the three of `home`, each with its own loss
    and acc (one NaN, one infinite); some also name `loss` as a flag
    or an attribute, which a filter reads before the scalar: more than
    `index.PUSHDOWN_MIN`, so filters are answered in SQL."""
    from guild_core import tfevents, yamlutil

    runs = home / "runs"
    seeds = sorted(runs.iterdir())
    for i in range(60):
        dest = runs / uuid.uuid4().hex
        shutil.copytree(seeds[i % 3], dest, symlinks=True)
        guild_dir = dest / ".guild"
        for event in guild_dir.glob("events.out.tfevents.*"):
            event.unlink()
        loss = {7: float("nan"), 8: float("inf")}.get(i, (i % 20) / 20)
        with tfevents.EventWriter(guild_dir, f".{i}") as w:
            w.add_scalar("loss", loss + 1, 0)
            w.add_scalar("loss", loss, 1)
            w.add_scalar("acc", 1 - (i % 7) / 7, 1)
        attrs = guild_dir / "attrs"
        (attrs / "label").write_text(f"clone-{i} x={i % 4}\n")
        if i % 11 == 0:
            flags = yamlutil.decode((attrs / "flags").read_text())
            flags["loss"] = 0.01
            (attrs / "flags").write_text(yamlutil.encode(flags) + "\n")
        if i % 13 == 0:
            (attrs / "loss").write_text("0.9\n")
    age(runs)
    assert guild("runs").returncode == 0
    return home


def test_filters_match_the_same_runs_with_and_without_the_index(many):
    for expr in FILTERS:
        with_index = guild("runs", "-a", "-F", expr)
        without = guild("runs", "-a", "-F", expr, env={"GUILD_NO_INDEX": "1"})
        assert with_index.returncode == without.returncode == 0, (expr, with_index.stderr)
        assert with_index.stdout == without.stdout, expr
    # Some filters match some runs and not others: the test can fail.
    some = guild("runs", "-a", "-F", "loss < 0.5").stdout.splitlines()
    assert 10 < len(some) < 50


def test_a_filter_sees_scalars_and_labels_changed_behind_its_back(many):
    from guild_core import tfevents

    assert guild("runs", "-a", "-F", "loss < 0.5").returncode == 0
    runs = many / "runs"
    target = next(p for p in runs.iterdir() if (p / ".guild" / "attrs" / "label").read_text() == "clone-19 x=3\n")
    assert "clone-19" not in guild("runs", "-a", "-F", "loss < 0.5").stdout
    # A later step with a low loss, appended to its event file.
    event = next((target / ".guild").glob("events.out.tfevents.*"))
    with open(event, "ab") as f:
        f.write(tfevents._record(tfevents._encode_event(time.time(), 5, summary=tfevents._scalar_summary("loss", 0.05))))
    t = time.time() - 10
    os.utime(event, (t, t))
    assert "clone-19" in guild("runs", "-a", "-F", "loss < 0.5").stdout
    # A label rewritten in place, as Guild AI writes it.
    label = target / ".guild" / "attrs" / "label"
    label.write_text("renamed in place\n")
    os.utime(label, (t, t))
    out = guild("runs", "-a", "-F", "loss < 0.5 and label contains renamed").stdout
    assert "renamed in place" in out and len(out.splitlines()) == 1


def test_the_index_skips_runs_it_proves_cannot_match(many):
    from guild_core import filterexpr, select

    # The first filter stores the runs' scalar summaries.
    assert guild("runs", "-a", "-F", "loss < 0.5").returncode == 0
    runs = select.all_runs()
    pred = filterexpr.parse("loss < 0.25")
    skipped = index.pushdown(runs, filterexpr.hint_of(pred))
    assert skipped, "nothing answered in SQL"
    from guild_core.runvalues import RunValues

    matched = {run.id for run in select.all_runs() if pred(RunValues(run))}
    assert matched and not matched & skipped
    # The runs naming loss as a flag or an attribute are never skipped.
    assert len(skipped) + len(matched) < len(runs)


# -- large runs: summaries read on where the event file grew ------------


def _big_run(home, steps):
    """A run (cloned from `home`'s first) whose event file holds `steps`
    values of `loss`."""
    from guild_core import tfevents

    runs = home / "runs"
    dest = runs / uuid.uuid4().hex
    shutil.copytree(sorted(runs.iterdir())[0], dest, symlinks=True)
    for event in (dest / ".guild").glob("events.out.tfevents.*"):
        event.unlink()
    with tfevents.EventWriter(dest / ".guild", ".big") as w:
        for step in range(steps):
            w.add_scalar("loss", 1.0 / (step + 1), step)
    return dest


def _summaries_read(monkeypatch):
    """Record (file, start) of each event-file read in this process."""
    from guild_core import tfevents

    reads = []
    real = tfevents.scan_events

    def scan(path, start=0):
        reads.append((os.path.basename(path), start))
        return real(path, start)

    monkeypatch.setattr(tfevents, "scan_events", scan)
    return reads


def test_a_grown_event_file_is_read_from_where_it_was_left(home, monkeypatch):
    from guild_core import runvalues, select, tfevents

    run_dir = _big_run(home, 2000)
    age(run_dir)
    event = next((run_dir / ".guild").glob("events.out.tfevents.*"))
    size = event.stat().st_size

    def summary():
        index.flush()
        run = next(r for r in select.all_runs() if r.id == run_dir.name)
        return runvalues.RunValues(run).scalars()["loss"]

    reads = _summaries_read(monkeypatch)
    first = summary()
    assert first.count == 2000 and reads == [(event.name, 0)]
    reads.clear()
    assert summary().count == 2000 and reads == []  # stored: nothing read
    # The run logs 10 more steps.
    with open(event, "ab") as f:
        for step in range(2000, 2010):
            f.write(tfevents._record(tfevents._encode_event(time.time(), step, summary=tfevents._scalar_summary("loss", 0.5))))
    age(run_dir)
    grown = summary()
    assert reads == [(event.name, size)]
    expected = runvalues.summarize(run_dir / ".guild")["loss"]
    assert grown == expected and grown.count == 2010 and grown.last == (0.5, 2009)
    # Rewritten (not appended to): read again from the start.
    reads.clear()
    data = event.read_bytes()
    event.write_bytes(data[: size // 2] + b"\0" * (len(data) - size // 2))
    age(run_dir)
    again = summary()
    assert reads == [(event.name, 0)]
    assert again == runvalues.summarize(run_dir / ".guild")["loss"]


# -- many processes at once ---------------------------------------------


def test_runs_and_listings_at_the_same_time(home, project):
    """Runs starting and ending while other processes list, filter and
    write summaries: nobody fails, nothing waits forever, and the index
    ends as the run directories are."""
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "guild_core.cli.main", "run", "train.py", f"x={x}", "-y"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        for x in (10, 11, 12, 13)
    ]
    listers = [
        subprocess.Popen(
            [sys.executable, "-c", (
                "import subprocess, sys\n"
                "for _ in range(4):\n"
                "    for args in (['runs', '-a'], ['runs', '-a', '-F', 'loss < 0.5'], ['compare', '--csv', '-']):\n"
                "        p = subprocess.run([sys.executable, '-m', 'guild_core.cli.main', *args], capture_output=True, text=True)\n"
                "        if p.returncode or 'Traceback' in p.stderr or 'locked' in p.stderr:\n"
                "            sys.exit(p.stderr or 'exit %d' % p.returncode)\n"
            )],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        for _ in range(2)
    ]
    try:
        for p in procs + listers:
            _out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        for p in procs + listers:
            if p.poll() is None:
                p.kill()
                p.wait()
    db = sqlite3.connect(index.db_path())
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    age(home / "runs")
    for args in (["runs", "-a"], ["runs", "-a", "-F", "loss < 0.5"], ["compare", "--csv", "-"]):
        assert guild(*args).stdout == guild(*args, env={"GUILD_NO_INDEX": "1"}).stdout, args
    assert len(guild("runs", "-a").stdout.splitlines()) == 7
