"""Crash guild at every named fault point, and race its commands.

Each point in the source (``faults.point("...")``) is reached by a real
command run with ``GUILD_FAULTS=POINT=kill``: the process dies with
SIGKILL at exactly that step. Then every run must be whole in exactly one
place, list correctly, and the next command must clean up what was left.
A meta-test fails if a point has no scenario here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from guild_core.run import Run

ROOT = Path(__file__).resolve().parent.parent
TRAIN = "x = 1\nprint('loss: %s' % (1.0 / x))\n"


def guild(*args, env=None, timeout=60):
    full = dict(os.environ)
    full.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        capture_output=True, text=True, env=full, timeout=timeout,
    )
    return proc


def tree_digest(path: Path) -> str:
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, name)
            h.update(os.path.relpath(full, path).encode())
            if os.path.islink(full):
                h.update(b"->" + os.readlink(full).encode())
            else:
                with open(full, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def visible(root: Path) -> dict[str, str]:
    if not root.is_dir():
        return {}
    return {p.name: tree_digest(p) for p in root.iterdir() if not p.name.startswith(".")}


def hidden(root: Path) -> list[str]:
    return [n for n in os.listdir(root) if n.startswith(".")] if root.is_dir() else []


def zip_runs(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with zipfile.ZipFile(path) as zf:
        return {n.split("/")[0] for n in zf.namelist()}


@pytest.fixture
def home3(guild_home, project):
    """Three completed runs."""
    project.write("train.py", TRAIN)
    for x in (1, 2, 3):
        assert guild("run", "train.py", f"x={x}", "-y").returncode == 0
    return guild_home


# -- the scenarios ------------------------------------------------------------
#
# (point, command, kind). A "move" ends with each run in exactly one of
# home (runs/), trash, dir (an archive directory) or zip (an archive
# file); a "copy" keeps every run in the home, with any copy whole; a
# "remove" leaves each run in the home or nowhere.

SCENARIOS = [
    ("store.remove.hidden", ["runs", "delete", "-p", "-y"], "remove"),
    ("store.move.renamed", ["runs", "delete", "-y"], "move"),
    ("store.move.renamed", ["export", "--move", "{dir}", "-y"], "move"),
    ("store.copy.copied", ["export", "{dir}", "-y"], "copy"),
    ("archive.write.run", ["export", "{zip}", "-y"], "copy"),
    ("archive.write.written", ["export", "{zip}", "-y"], "copy"),
    ("archive.write.run", ["export", "--move", "{zip}", "-y"], "move"),
    ("archive.write.written", ["export", "--move", "{zip}", "-y"], "move"),
    ("store.depart.hidden", ["export", "--move", "{zip}", "-y"], "move"),
    ("store.depart.arrived", ["export", "--move", "{zip}", "-y"], "move"),
]


# Points crashed by other test modules: point -> where.
OTHER_POINTS = {
    "index.write": "tests/test_index.py",
    "remote.copy.file": "tests/test_remote_filesystem.py",
}

# Reached once per command; the others once per run (killed at the
# first and at the second).
ONCE = {"archive.write.written"}
KILLS = [(p, a, k, n) for p, a, k in SCENARIOS for n in ((1,) if p in ONCE else (1, 2))]


@pytest.mark.parametrize("point, args, kind, nth", KILLS, ids=[f"{p}:{' '.join(a[:2])}@{n}" for p, a, _, n in KILLS])
def test_killed_store_command(home3, tmp_path, point, args, kind, nth):
    home = home3
    dest_dir, dest_zip = tmp_path / "arch", tmp_path / "arch.zip"
    before = visible(home / "runs")
    args = [a.format(dir=dest_dir, zip=dest_zip) for a in args]
    proc = guild(*args, env={"GUILD_FAULTS": f"{point}=kill@{nth}"})
    assert proc.returncode == -9, (proc.returncode, proc.stderr)
    # An archive is whole: a new one replaces the old in one rename.
    assert not dest_zip.exists() or zipfile.ZipFile(dest_zip).testzip() is None
    # The next command that looks settles everything.
    listed = guild("runs", "-a", "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert guild("runs", "-d").returncode == 0
    if dest_dir.exists():
        assert guild("runs", "-A", str(dest_dir)).returncode == 0
    places = {
        "home": visible(home / "runs"),
        "trash": visible(home / "trash" / "runs"),
        "dir": visible(dest_dir),
        "zip": dict.fromkeys(zip_runs(dest_zip), None),
    }
    assert {r["id"] for r in json.loads(listed.stdout)} == set(places["home"])
    for run_id, digest in before.items():
        where = {name for name, found in places.items() if run_id in found}
        if kind == "move":
            assert len(where) == 1, (run_id, where)
        elif kind == "copy":
            assert "home" in where, (run_id, where)
        else:
            assert where <= {"home"}, (run_id, where)
        for name in where - {"zip"}:
            assert places[name][run_id] == digest, f"run {run_id} changed in {name}"
    for root in (home / "runs", home / "trash" / "runs", dest_dir):
        assert hidden(root) == [], hidden(root)
    # What a killed archive write left beside the zip goes with the next.
    if args[0] == "export" and str(dest_zip) in args:
        assert guild("export", str(dest_zip), "-y").returncode == 0
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


@pytest.mark.parametrize("point", ["archive.extract.entry", "store.move.renamed"])
def test_killed_import(home3, tmp_path, point, monkeypatch):
    zip_path = tmp_path / "a.zip"
    assert guild("export", str(zip_path), "-y").returncode == 0
    ids = zip_runs(zip_path)
    other = tmp_path / "other"
    monkeypatch.setenv("GUILD_HOME", str(other))
    proc = guild("import", str(zip_path), "-y", env={"GUILD_FAULTS": f"{point}=kill@2"})
    assert proc.returncode == -9
    assert guild("runs").returncode == 0
    assert hidden(other / "runs") == []
    imported = set(visible(other / "runs"))
    assert imported < ids
    # Importing again brings the rest; nothing is duplicated.
    proc = guild("import", str(zip_path), "-y")
    assert proc.returncode == 0, proc.stderr
    assert set(visible(other / "runs")) == ids


RUNNER_POINTS = [
    ("runner.create.assembled", set()),
    ("runner.create.renamed", {"error"}),
    ("runner.start.locked", {"error"}),
    ("runner.end.before-record", {"error"}),
    ("runner.output.write", {"error"}),
]


@pytest.mark.parametrize("point, statuses", RUNNER_POINTS)
@pytest.mark.parametrize("background", [False, True])
def test_killed_run(guild_home, project, point, statuses, background):
    project.write("train.py", "import time\nprint('loss: 1', flush=True)\ntime.sleep(0.3)\n")
    args = ["run", "train.py", "-y"] + (["--background"] if background else [])
    proc = guild(*args, env={"GUILD_FAULTS": f"{point}=kill"})
    if not background or point.startswith("runner.create"):
        assert proc.returncode == -9, proc.stderr
    runs_dir = guild_home / "runs"

    def settled():
        found = [Run.for_dir(p) for p in runs_dir.iterdir() if not p.name.startswith(".")]
        return found if all(r.status not in ("running", "pending") for r in found) else None

    deadline = time.time() + 20
    while time.time() < deadline and settled() is None:
        time.sleep(0.05)
    found = settled()
    assert found is not None, "a run reads running or pending with no process behind it"
    assert {r.status for r in found} == statuses
    listed = guild("runs")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert hidden(runs_dir) == []


def test_every_fault_point_has_a_scenario():
    points = set()
    for path in list((ROOT / "guild_core").rglob("*.py")) + list((ROOT / "plugins").rglob("*.py")):
        points |= set(re.findall(r'faults\.point\("([^"]+)"\)', path.read_text()))
    covered = {p for p, _a, _pl in SCENARIOS} | {p for p, _s in RUNNER_POINTS} | set(OTHER_POINTS)
    covered |= {"archive.extract.entry", "store.move.renamed"}  # test_killed_import
    assert points, "no fault points found"
    assert points - covered == set(), "fault points without a crash test"


# -- a bounded stress test ---------------------------------------------------


def test_concurrent_commands_lose_nothing(guild_home, project):
    """For a few seconds: runs that succeed and fail, listings, deletes
    of failed runs, labels and deletes of labelled runs, all at once.
    No completed run may be deleted by ``delete -Se``; no traceback."""
    project.write("ok.py", "print('loss: 1')\n")
    project.write("bad.py", "raise SystemExit(3)\n")
    stop_at = time.time() + 12
    errors: list[str] = []
    counts: dict[str, int] = {}

    def loop(name, make_args):
        i = 0
        while time.time() < stop_at:
            args = make_args(i)
            proc = guild(*args, timeout=60)
            out = proc.stdout + proc.stderr
            if "Traceback" in out or proc.returncode < 0:
                errors.append(f"{' '.join(args)}: {proc.returncode}\n{out}")
            i += 1
        counts[name] = i

    loops = [
        ("run", lambda i: ["run", "ok.py" if i % 3 else "bad.py", "-y"]),
        ("run2", lambda i: ["run", "ok.py", "--background", "-y"]),
        ("list", lambda i: ["runs", "-a", "--json"]),
        ("delete-error", lambda i: ["runs", "delete", "-Se", "-y"]),
        ("label", lambda i: ["runs", "label", "-s", "doomed", "-y", "2"]),
        ("delete-doomed", lambda i: ["runs", "delete", "-Fl", "doomed", "-y"]),
    ]
    threads = [threading.Thread(target=loop, args=loop_args) for loop_args in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert min(counts.values()) >= 2, counts
    # Wait for background runs to end before judging.
    deadline = time.time() + 20
    runs_dir, trash = guild_home / "runs", guild_home / "trash" / "runs"
    while time.time() < deadline:
        if all(Run.for_dir(p).status not in ("running", "pending") for p in runs_dir.iterdir() if not p.name.startswith(".")):
            break
        time.sleep(0.1)
    home_ids = {p.name for p in runs_dir.iterdir() if not p.name.startswith(".")}
    trash_ids = {p.name for p in trash.iterdir() if not p.name.startswith(".")} if trash.exists() else set()
    assert not home_ids & trash_ids
    for run_id in trash_ids:
        run = Run(run_id, trash / run_id)
        if run.get("label") != "doomed":
            assert run.status == "error", f"a {run.status} run was deleted as an error"
    for run_id in home_ids:
        assert (runs_dir / run_id / ".guild" / "opref").exists(), "a ghost run directory"
    assert [r["status"] for r in json.loads(guild("runs", "-a", "--json").stdout)].count("running") == 0


@pytest.fixture
def other_fs(tmp_path):
    """A directory on another file system (a tmpfs; needs the right to
    mount), so a move there is a copy and a removal."""
    mnt = tmp_path / "other-fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("point", ["store.depart.hidden", "store.copy.copied", "store.depart.arrived"])
def test_killed_move_across_file_systems(home3, other_fs, point):
    before = visible(home3 / "runs")
    dest = other_fs / "arch"
    proc = guild("export", "--move", str(dest), "-y", env={"GUILD_FAULTS": f"{point}=kill"})
    assert proc.returncode == -9, proc.stderr
    assert guild("runs").returncode == 0
    assert guild("runs", "-A", str(dest)).returncode == 0
    home, moved = visible(home3 / "runs"), visible(dest)
    for run_id, digest in before.items():
        assert (run_id in home) != (run_id in moved), run_id
        assert (home.get(run_id) or moved.get(run_id)) == digest
    assert hidden(home3 / "runs") == [] and hidden(dest) == []
    # The move, run again, completes.
    assert guild("export", "--move", str(dest), "-y").returncode == 0
    assert visible(home3 / "runs") == {} and visible(dest) == before
