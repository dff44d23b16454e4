"""The run index's stored listing (its runs newest first, with the runs
directory's time) and `guild view`'s first page made from it: runs
added, deleted and restarted since, through the real CLI on a temporary
GUILD_HOME (never timed: see bench/view.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import age

from guild_core import index


def guild(*args, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        capture_output=True, text=True, env=full, timeout=120,
    )


def listed_ids(*args, env=None) -> list[str]:
    out = guild("runs", "--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    return [r["id"] for r in json.loads(out.stdout)]


def truth() -> list[str]:
    """The runs newest first, read from the run directories alone."""
    return listed_ids(env={"GUILD_NO_INDEX": "1"})


def stored(runs: Path) -> index.Listed:
    index._close()  # read the file as it is now
    listed = index.last_listing(runs)
    index._close()
    assert listed is not None
    return listed


@pytest.fixture
def home(guild_home, project):
    project.write("train.py", "x = 1\nprint('loss: %s' % (1.0 / x))\n")
    for x in (1, 2, 4):
        assert guild("run", "train.py", f"x={x}", "-y").returncode == 0
    age(guild_home / "runs")
    assert guild("runs").returncode == 0
    yield guild_home
    index._close()


def clone(runs: Path, started: int) -> str:
    """A copy of a run under a new id, started at `started`: added by
    plain file operations, as an import or a sync adds runs."""
    src = sorted(runs.iterdir())[0]
    new_id = uuid.uuid4().hex
    shutil.copytree(src, runs / new_id, symlinks=True)
    (runs / new_id / ".guild" / "attrs" / "started").write_text(f"{started}\n")
    (runs / new_id / ".guild" / "attrs" / "label").write_text("cloned\n")
    return new_id


def newest_start(runs: Path) -> int:
    return max(int((p / ".guild" / "attrs" / "started").read_text()) for p in runs.iterdir())


# -- the stored listing -------------------------------------------------


def test_the_stored_listing_is_the_runs_newest_first(home):
    runs = home / "runs"
    listed = stored(runs)
    assert list(listed.ids) == listed_ids() == truth()
    assert list(listed.starts) == sorted(listed.starts, reverse=True)
    # Taken before the directory was listed, and old enough to trust.
    assert listed.dir_mtime == os.stat(runs).st_mtime_ns
    assert listed.others == []


def test_the_stored_listing_follows_runs_added_deleted_and_restarted(home, project):
    runs = home / "runs"
    assert guild("run", "train.py", "x=8", "-y").returncode == 0
    ids = listed_ids()
    assert len(ids) == 4 and list(stored(runs).ids) == ids == truth()

    victim = ids[1]
    assert guild("runs", "delete", "-y", victim).returncode == 0
    ids = listed_ids()
    assert victim not in ids and list(stored(runs).ids) == ids == truth()

    # The oldest run restarted: its start time is now the newest.
    oldest = ids[-1]
    out = guild("run", "--restart", oldest, "-y")
    assert out.returncode == 0, out.stderr
    ids = listed_ids()
    assert ids[0] == oldest and list(stored(runs).ids) == ids == truth()

    # A deleted run restored is back in its place.
    assert guild("runs", "restore", "-y", victim).returncode == 0
    ids = listed_ids()
    assert victim in ids and list(stored(runs).ids) == ids == truth()


def test_a_recent_runs_directory_time_is_not_stored(home):
    runs = home / "runs"
    clone(runs, newest_start(runs) + 1)  # the directory changes now
    listed_ids()
    assert stored(runs).dir_mtime == 0
    age(runs)
    listed_ids()
    assert stored(runs).dir_mtime == os.stat(runs).st_mtime_ns


def test_a_name_that_was_not_a_run_yet_is_kept_aside(home):
    runs = home / "runs"
    pending = uuid.uuid4().hex
    (runs / pending).mkdir()  # a run being made: no .guild yet
    age(runs)
    listed_ids()
    listed = stored(runs)
    assert listed.others == [pending] and pending not in list(listed.ids)


def test_an_index_from_before_the_stored_listing(home):
    """An index of this schema written before the listing was stored
    gets the table; the output is the same."""
    before = guild("runs", "-a").stdout
    db = sqlite3.connect(str(home / "cache" / "runs-index" / "runs.sqlite"))
    db.execute("DROP TABLE ordered")
    db.commit()
    db.close()
    out = guild("runs", "-a")
    assert out.returncode == 0 and out.stdout == before and out.stderr == ""
    assert list(stored(home / "runs").ids) == truth()


def has_stored(home: Path) -> bool:
    db = sqlite3.connect(str(home / "cache" / "runs-index" / "runs.sqlite"))
    try:
        return db.execute("SELECT count(*) FROM ordered WHERE root = ?", (str(home / "runs"),)).fetchone()[0] == 1
    finally:
        db.close()


def test_facts_read_again_drop_the_stored_listing_only_when_the_start_moved(home):
    runs = home / "runs"
    ids = listed_ids()
    t = time.time() - 20
    # A label written in place, as Guild AI 0.9 writes it (no
    # directory's time changes): read again, the start time the same.
    label = runs / ids[0] / ".guild" / "attrs" / "label"
    label.write_text("relabelled\n")
    os.utime(label, (t, t))
    assert guild("runs", "-a").returncode == 0
    assert has_stored(home)
    assert "relabelled" in guild("runs").stdout
    assert list(stored(runs).ids) == ids
    # A start time edited by hand, the attrs directory touched after (as
    # docs/run-index.md says to): the next listing has it in its place.
    oldest = ids[-1]
    attrs = runs / oldest / ".guild" / "attrs"
    (attrs / "started").write_text(f"{newest_start(runs) + 1000}\n")
    os.utime(attrs / "started", (t, t))
    os.utime(attrs, (t, t))
    assert guild("runs", "-a").returncode == 0
    assert not has_stored(home)
    assert listed_ids()[0] == oldest
    assert has_stored(home) and list(stored(runs).ids) == truth()


# -- guild view's first page --------------------------------------------


def start_view(home: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, GUILD_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "guild_core.cli.main", "view", "-n", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"(http://\S+)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


def first_page(home: Path, query: str = "limit=50") -> dict:
    """The first request to a fresh `guild view` of `home`."""
    proc, url = start_view(home)
    try:
        with urllib.request.urlopen(f"{url}/api/runs?{query}", timeout=30) as resp:
            return json.loads(resp.read())
    finally:
        proc.kill()
        proc.wait()


def test_view_first_page_has_runs_added_and_removed_since_the_index_listed(home):
    runs = home / "runs"
    before = listed_ids()
    # Behind the index's back: one run added (the newest), one removed.
    new_id = clone(runs, newest_start(runs) + 1000)
    shutil.rmtree(runs / before[1])
    page = first_page(home)
    expected = truth()
    assert [r["id"] for r in page["runs"]] == expected and page["total"] == 3
    assert expected[0] == new_id and before[1] not in expected
    assert page["runs"][0]["label"] == "cloned"


def test_view_first_page_with_the_runs_directory_unchanged(home):
    """The runs directory's time is the one stored: the stored order is
    the page's, and a name that was not a run then is looked at again."""
    runs = home / "runs"
    pending = uuid.uuid4().hex
    (runs / pending).mkdir()
    age(runs)
    listed_ids()
    dir_mtime = os.stat(runs).st_mtime_ns
    # The run made inside its directory: the runs directory's time
    # does not change.
    src = runs / listed_ids()[-1]
    shutil.copytree(src / ".guild", runs / pending / ".guild", symlinks=True)
    (runs / pending / ".guild" / "attrs" / "started").write_text(f"{newest_start(runs) + 1000}\n")
    assert os.stat(runs).st_mtime_ns == dir_mtime
    page = first_page(home)
    assert [r["id"] for r in page["runs"]] == truth() and page["total"] == 4
    assert page["runs"][0]["id"] == pending
    # Oldest first, and a page further on.
    page = first_page(home, "limit=2&offset=1&desc=0")
    assert [r["id"] for r in page["runs"]] == truth()[::-1][1:3]


def test_view_first_listing_does_not_list_an_unchanged_runs_directory(home, monkeypatch):
    from guild_core.view import data as datalib

    runs = home / "runs"
    expected = listed_ids()
    real_listdir = os.listdir
    listed = []

    def listdir(path="."):
        if Path(path) == runs:
            listed.append(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    data = datalib.Data()
    data.first_listing()
    assert list(data._listing.runs) == expected and listed == []
    # Pages of it, either way round.
    for desc, offset in (("1", "0"), ("1", "2"), ("0", "0"), ("0", "1")):
        page = data.runs_page({"limit": ["2"], "offset": [offset], "desc": [desc]})
        ordered = expected if desc == "1" else expected[::-1]
        assert [r["id"] for r in page["runs"]] == ordered[int(offset) : int(offset) + 2]
        assert page["total"] == 3
    assert listed == []
    # Changed since (a run added): listed once, the new run in place.
    new_id = clone(runs, newest_start(runs) + 1000)
    listed.clear()
    data = datalib.Data()
    data.first_listing()
    assert list(data._listing.runs) == [new_id, *expected] and len(listed) == 1
    index._close()
