"""Faults, races and bad files: one test (at least) per defect of the
hardening round, each through the real CLI over real run directories.
See docs/reliability.md for the promises these check."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from guild_core.run import Run

from conftest import wait_for

TRAIN = "x = 1\nprint('loss: %s' % (1.0 / x))\n"


def run_dirs(home: Path, where: str = "runs") -> list[Path]:
    root = home / where
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


def hidden(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root) if n.startswith(".")) if root.is_dir() else []


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.output, result.output


def spawn(procs, *args, cwd=None, env=None, **kw) -> subprocess.Popen:
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.Popen(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        cwd=cwd, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, **kw,
    )
    procs.append(p)
    return p


def at_prompt(p: subprocess.Popen, stream="stdout") -> None:
    """Wait until `p` (a guild command run without -y) asks to continue:
    by then it has selected its runs."""
    f = getattr(p, stream)
    seen = b""
    while b"?" not in seen:
        ch = f.read(1)
        if not ch:
            raise AssertionError(f"no prompt: {seen!r} {p.stderr.read()!r}")
        seen += ch


def answer(p: subprocess.Popen, text: str = "y\n", timeout: float = 30):
    out, err = p.communicate(text.encode(), timeout=timeout)
    return p.returncode, out.decode(), err.decode()


@pytest.fixture
def sleeper(procs):
    """A stranger's process: nothing to do with any run."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    procs.append(p)
    return p


# -- 1. a full disk --------------------------------------------------------

LOUD = "import sys\nfor i in range(200000):\n    print('line %d of output that fills the disk' % i)\nprint('loss: 0.5')\n"


@pytest.fixture
def full_disk_home(guild_home, tmp_path, monkeypatch):
    """GUILD_HOME on a 2 MB tmpfs (needs the right to mount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    monkeypatch.setenv("GUILD_HOME", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_run_ends_with_a_status(full_disk_home, project, sh):
    project.write("loud.py", LOUD)
    result = sh("run", "loud.py", "-y", timeout=120)
    no_traceback(result)
    assert "No space left on device" in result.stderr
    [run_dir] = run_dirs(full_disk_home)
    run = Run.for_dir(run_dir)
    # The script ran to its end: nothing blocked on a full pipe.
    assert run.get("exit_status") == 0 and run.get("stopped")
    assert run.status == "completed"
    assert not run.guild_path("LOCK").exists()


def test_full_disk_write_paths_are_one_line(full_disk_home, project, sh, tmp_path):
    project.write("train.py", TRAIN)
    assert sh("run", "train.py", "-y").exit_code == 0
    before = [p.name for p in run_dirs(full_disk_home)]
    filler = full_disk_home / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    for args in (
        ["run", "train.py", "-y"],
        ["run", "train.py", "--stage", "-y"],
        ["runs", "label", "-s", "a label long enough to need a new page " * 100, "-y"],
        ["runs", "comment", "-a", "a comment " * 500, "-y"],
        ["export", str(full_disk_home / "out.zip"), "-y"],
    ):
        result = sh(*args)
        no_traceback(result)
        assert result.exit_code == 1, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.startswith("guild:")]
        assert len(lines) == 1 and "No space left on device" in lines[0], (args, result.stderr)
    # Nothing half-written: the same runs, intact, and no temporary left.
    assert [p.name for p in run_dirs(full_disk_home)] == before
    assert Run.for_dir(run_dirs(full_disk_home)[0]).status == "completed"
    filler.unlink()
    assert not [n for n in hidden(full_disk_home / "runs")]
    assert sh("runs").exit_code == 0


def test_output_write_failure_keeps_the_run_going(project, sh, guild_home):
    # The same, on any machine: the output file fails with ENOSPC.
    project.write("loud.py", LOUD)
    result = sh("run", "loud.py", "-y", env={"GUILD_FAULTS": "runner.output.write=enospc@100"}, timeout=120)
    no_traceback(result)
    assert "cannot record the output of run" in result.stderr
    run = Run.for_dir(run_dirs(guild_home)[0])
    assert run.status == "completed"
    assert run.guild_path("output").read_bytes().count(b"\n") == 99


# -- 2. malformed attributes -------------------------------------------------


def _corrupt(run_dir: Path, name: str, text: str) -> None:
    (run_dir / ".guild" / "attrs" / name).write_text(text)


BAD_ATTRS = [
    ("started", "abc\n"),
    ("stopped", "[1, 2]\n"),
    ("label", "- a\n- b\n"),
    ("flags", "- x\n"),
    ("tags", "5\n"),
    ("deps", "just a string\n"),
    ("exit_status", "{a: 1}\n"),
    ("comments", "[1, 2]\n"),
    ("marked", "[yes]\n"),
    ("cmd", "{}\n"),
    ("sourcecode_digest", "{x: 1}\n"),
    ("label", "'truncated\n"),
]


@pytest.mark.parametrize("name, text", BAD_ATTRS)
def test_malformed_attribute_reads_as_missing(cli, project, guild_home, name, text):
    project.write("train.py", TRAIN)
    for x in (1, 2, 3):
        assert cli("run", "train.py", f"x={x}", "-y").exit_code == 0
    bad = run_dirs(guild_home)[0]
    _corrupt(bad, name, text)
    warned = 0
    for args in (
        ["runs"], ["runs", "-a", "--json"], ["runs", "info", bad.name[:8]], ["runs", "info", bad.name[:8], "--json"],
        ["runs", "info", bad.name[:8], "-cedmps"],
        ["runs", "-F", "x >= 1"], ["compare", "--csv", "-"], ["runs", "-Sc"], ["runs", "comment", "--list", ":"],
        ["runs", "label", "-s", "ok", "-y", ":"],
    ):
        result = cli(*args)
        no_traceback(result)
        assert result.exit_code == 0, (args, result.stderr)
        # A command that reads the bad file says so, once.
        count = result.stderr.count(f"WARNING: run {bad.name[:8]}: ignoring .guild/attrs/{name}")
        assert count <= 1, result.stderr
        warned += count
    assert warned
    listed = json.loads(cli("runs", "--json").output)
    assert len(listed) == 3
    # The command that removes the bad run works too.
    result = cli("runs", "delete", bad.name[:8], "-y")
    assert result.exit_code == 0 and "Deleted 1 run(s)" in result.stderr


def test_lock_with_a_huge_pid(cli, project, guild_home):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    run = Run.for_dir(run_dirs(guild_home)[0])
    run.del_attr("exit_status")
    run.guild_path("LOCK").write_text("99999999999999999999")
    for args in (["runs"], ["runs", "info"], ["stop", "-y"], ["runs", "delete", "-y", "--force"]):
        result = cli(*args)
        no_traceback(result)
        assert result.exit_code == 0, (args, result.stderr)
    assert run_dirs(guild_home) == []


def test_archive_with_a_bad_run_keeps_the_home_usable(cli, project, guild_home, tmp_path, monkeypatch):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    _corrupt(run_dirs(guild_home)[0], "started", "not a time\n")
    _corrupt(run_dirs(guild_home)[0], "flags", "[1, 2]\n")
    assert cli("export", str(tmp_path / "bad.zip"), "-y").exit_code == 0
    other = tmp_path / "other-home"
    monkeypatch.setenv("GUILD_HOME", str(other))
    assert cli("run", "train.py", "x=2", "-y").exit_code == 0
    assert cli("import", str(tmp_path / "bad.zip"), "-y").exit_code == 0
    result = cli("runs")
    no_traceback(result)
    assert result.exit_code == 0 and result.output.count("train.py") == 2


# -- 3. a LOCK is not proof ------------------------------------------------


def _unfinished(run: Run, pid: int) -> None:
    run.del_attr("exit_status")
    run.del_attr("stopped")
    run.guild_path("LOCK").write_text(str(pid))


def test_lock_naming_an_older_process(cli, project, guild_home, sleeper):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    run = Run.for_dir(run_dirs(guild_home)[0])
    _unfinished(run, sleeper.pid)
    assert run.status == "error"
    assert cli("stop", "-y").output.strip() == "Nothing to stop."
    assert cli("runs", "delete", "--force", "-y").exit_code == 0
    time.sleep(0.2)
    assert sleeper.poll() is None, "a stranger's process was signalled"


def test_lock_naming_a_reused_pid(cli, project, guild_home, procs):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    run = Run.for_dir(run_dirs(guild_home)[0])
    # A process that started just after the run, as a reused pid would.
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    procs.append(newer)
    _unfinished(run, newer.pid)
    assert run.status == "error"
    assert json.loads(cli("runs", "--json").output)[0]["status"] == "error"
    assert cli("stop", "-y").output.strip() == "Nothing to stop."
    time.sleep(0.2)
    assert newer.poll() is None


SLOW = "import time\nfor i in range(400):\n    print('step: %d' % i, flush=True)\n    time.sleep(0.05)\n"


def test_export_of_a_running_run(sh, cli, project, guild_home, tmp_path, monkeypatch):
    project.write("slow.py", SLOW)
    assert sh("run", "slow.py", "--background", "-y").exit_code == 0
    run = Run.for_dir(run_dirs(guild_home)[0])
    wait_for(lambda: Run.for_dir(run.path).status == "running", what="running")
    out = cli("export", str(tmp_path / "arch"), "-y")
    assert f"{run.id} is running, skipping (use --running to copy it)" in out.stderr
    assert not (tmp_path / "arch" / run.id).exists()
    out = cli("export", str(tmp_path / "arch"), "--running", "-y")
    assert "Exported 1 run(s)" in out.stderr
    copied = tmp_path / "arch" / run.id
    assert not (copied / ".guild" / "LOCK").exists()
    out = cli("export", str(tmp_path / "arch.zip"), "--running", "-y")
    with zipfile.ZipFile(tmp_path / "arch.zip") as zf:
        assert f"{run.id}/.guild/LOCK" not in zf.namelist()
        assert f"{run.id}/.guild/opref" in zf.namelist()
    # Imported elsewhere, the copy is not running and `stop` there
    # cannot reach the original.
    monkeypatch.setenv("GUILD_HOME", str(tmp_path / "elsewhere"))
    assert cli("import", str(tmp_path / "arch"), "-y").exit_code == 0
    assert json.loads(cli("runs", "--json").output)[0]["status"] != "running"
    assert cli("stop", "-y").output.strip() == "Nothing to stop."
    monkeypatch.setenv("GUILD_HOME", str(guild_home))
    assert Run.for_dir(run.path).status == "running"
    assert cli("stop", "-y").exit_code == 0


# -- 4. no ghost run directories ---------------------------------------------


def test_label_racing_delete_leaves_no_ghost(cli, project, guild_home, procs):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    run_id = run_dirs(guild_home)[0].name
    label = spawn(procs, "runs", "label", "-s", "late")
    at_prompt(label)  # selected, not yet written
    assert cli("runs", "delete", "-y").exit_code == 0
    rc, out, err = answer(label)
    assert "Traceback" not in err
    assert f"run {run_id[:8]} is gone" in err
    assert not (guild_home / "runs" / run_id).exists(), "a ghost run directory"
    result = cli("runs", "restore", "-y")
    assert result.exit_code == 0 and "Restored 1 run(s)" in result.stderr
    assert Run.for_dir(guild_home / "runs" / run_id).get("label") != "late"


def test_background_run_is_not_moved_under_its_feet(sh, cli, project, guild_home, tmp_path):
    project.write("short.py", "import time\ntime.sleep(1.5)\nprint('loss: 1')\n")
    assert sh("run", "short.py", "--background", "-y").exit_code == 0
    run = Run.for_dir(run_dirs(guild_home)[0])
    wait_for(lambda: Run.for_dir(run.path).status == "running", what="running")
    out = cli("export", "--move", str(tmp_path / "moved"), "-y")
    assert f"{run.id} is running, skipping (it cannot be moved)" in out.stderr
    wait_for(lambda: Run.for_dir(run.path).status == "completed", what="completed")
    assert not (tmp_path / "moved" / run.id).exists()
    # Once finished, it moves, whole, and leaves nothing behind.
    assert "Exported 1 run(s)" in cli("export", "--move", str(tmp_path / "moved"), "-y").stderr
    assert run_dirs(guild_home) == []
    assert Run.for_dir(tmp_path / "moved" / run.id).status == "completed"


def test_write_attr_never_recreates_a_run(tmp_path):
    from guild_core.errors import RunGone

    run = Run("a" * 32, tmp_path / ("a" * 32))
    with pytest.raises(RunGone):
        run.write_attr("label", "x")
    with pytest.raises(RunGone):
        run.del_attr("label")
    assert not run.path.exists()


# -- 5. a run whose starter is gone ----------------------------------------


def test_killed_guild_run_is_not_pending_forever(sh, cli, project, guild_home):
    project.write("train.py", TRAIN)
    result = sh("run", "train.py", "-y", env={"GUILD_FAULTS": "runner.create.renamed=kill"})
    assert result.exit_code == -9
    [run_dir] = run_dirs(guild_home)
    assert (run_dir / ".guild" / "PENDING").exists()
    assert Run.for_dir(run_dir).status == "error"
    # Killed after the start began, before the process was recorded.
    result = sh("run", "train.py", "-y", "--background", env={"GUILD_FAULTS": "runner.create.renamed=kill"})
    assert result.exit_code == -9
    assert [Run.for_dir(p).status for p in run_dirs(guild_home)] == ["error", "error"]


def test_init_trials_and_staged_runs_keep_waiting(cli, project, guild_home):
    project.write("train.py", TRAIN)
    assert cli("run", "train.py", "x=[1,2]", "--init-trials", "-y").exit_code == 0
    assert cli("run", "train.py", "--stage", "-y").exit_code == 0
    statuses = sorted(r["status"] for r in json.loads(cli("runs", "--json").output))
    assert statuses == ["pending", "pending", "pending", "staged"]


def test_background_start_hands_over_pending(sh, project, guild_home):
    # The guild that starts a background run exits at once; the run must
    # never read error in between.
    project.write("short.py", "print('loss: 1')\n")
    result = sh("run", "short.py", "--background", "-y", env={"GUILD_FAULTS": "runner.start.locked=sleep:1"})
    assert result.exit_code == 0
    run = Run.for_dir(run_dirs(guild_home)[0])
    seen = set()
    deadline = time.time() + 20
    while time.time() < deadline:
        status = Run.for_dir(run.path).status
        seen.add(status)
        if status == "completed":
            break
        time.sleep(0.02)
    assert "error" not in seen and "completed" in seen, seen


# -- 6. running until the end is recorded ------------------------------------


def test_a_finishing_run_reads_running_not_error(sh, cli, project, guild_home, procs):
    project.write("train.py", TRAIN)
    # Hold the supervisor between the script's exit and the recording of
    # its end: the window every run goes through.
    p = spawn(procs, "run", "train.py", "-y", cwd=project.path,
              env={"GUILD_FAULTS": "runner.end.before-record=sleep:2"})
    run = wait_for(lambda: run_dirs(guild_home), what="run")[0]
    wait_for(lambda: b"loss" in (run / ".guild" / "output").read_bytes() if (run / ".guild" / "output").exists() else False)
    time.sleep(0.3)
    assert not (run / ".guild" / "attrs" / "exit_status").exists()
    assert Run.for_dir(run).status == "running"
    result = cli("runs", "delete", "-Se", "-y")
    assert "Nothing to delete." in result.stderr
    p.communicate(timeout=30)
    assert Run.for_dir(run).status == "completed"


def test_delete_rechecks_what_it_selected(cli, project, guild_home, procs):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    run = Run.for_dir(run_dirs(guild_home)[0])
    run.del_attr("exit_status")  # reads error: a crashed run
    delete = spawn(procs, "runs", "delete", "-Se")
    at_prompt(delete)
    run.write_attr("exit_status", 0)  # it was only finishing
    rc, out, err = answer(delete)
    assert rc == 0, err
    assert f"run {run.short_id} changed since it was selected (now completed)" in err
    assert "Deleted 0 run(s)" in err
    assert run.path.exists()


# -- 7. guild stop -------------------------------------------------------------

GRACEFUL = """
import os, signal, sys, time
def bye(*_):
    time.sleep(1.0)
    open("cleaned-up", "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
for i in range(600):
    print("step: %d" % i, flush=True)
    time.sleep(0.05)
"""


@pytest.mark.parametrize("no_wait", [False, True])
def test_stop_lets_cleanup_run_and_records_terminated(sh, project, guild_home, no_wait):
    project.write("graceful.py", GRACEFUL)
    assert sh("run", "graceful.py", "--background", "-y").exit_code == 0
    run = Run.for_dir(run_dirs(guild_home)[0])
    wait_for(lambda: (run.path / ".guild" / "output").exists() and b"step: 2" in (run.path / ".guild" / "output").read_bytes())
    result = sh("stop", "-y", *(["-n"] if no_wait else []))
    assert result.exit_code == 0, result.stderr
    wait_for(lambda: Run.for_dir(run.path).get("exit_status") is not None, what="end recorded")
    assert (run.path / "cleaned-up").exists(), "the script's cleanup was cut off"
    fresh = Run.for_dir(run.path)
    assert fresh.status == "terminated" and fresh.get("exit_status") == -15


def test_foreground_run_stopped_from_elsewhere(sh, project, guild_home, procs):
    project.write("graceful.py", GRACEFUL)
    p = spawn(procs, "run", "graceful.py", "-y", cwd=project.path)
    run = wait_for(lambda: run_dirs(guild_home), what="run")[0]
    wait_for(lambda: Run.for_dir(run).status == "running")
    assert sh("stop", "-y").exit_code == 0
    p.communicate(timeout=30)
    assert Run.for_dir(run).status == "terminated"


# -- 8. leftovers of crashes -------------------------------------------------


def test_check_space_counts_leftovers(cli, sh, project, guild_home):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    result = sh("run", "train.py", "-y", env={"GUILD_FAULTS": "runner.create.assembled=kill"})
    assert result.exit_code == -9
    [left] = hidden(guild_home / "runs")
    assert left.startswith(".tmp-")
    out = cli("check", "--space")
    assert "leftovers:" in out.output
    assert "1 from interrupted commands" in out.output
    out = cli("runs")
    assert "Cleaned up 1 leftover of an interrupted guild command" in out.stderr
    assert hidden(guild_home / "runs") == []


def test_live_work_is_not_swept(cli, project, guild_home, procs):
    project.write("train.py", TRAIN)
    # A run being created by a live guild (held before its rename).
    p = spawn(procs, "run", "train.py", "-y", cwd=project.path, env={"GUILD_FAULTS": "runner.create.assembled=sleep:3"})
    wait_for(lambda: hidden(guild_home / "runs"), what="temporary run")
    assert cli("runs").exit_code == 0
    assert hidden(guild_home / "runs"), "work in progress was swept"
    p.communicate(timeout=30)
    assert p.returncode == 0
    assert len(run_dirs(guild_home)) == 1 and hidden(guild_home / "runs") == []


def test_old_unowned_leftovers_are_swept(cli, project, guild_home):
    runs = guild_home / "runs"
    old = runs / ".tmp-import-abc123"
    (old / "x").mkdir(parents=True)
    recent = runs / (".deleting-" + "b" * 32 + "-1234abcd")
    recent.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    cli("runs")
    assert hidden(runs) == [recent.name]


# -- 9. races between management commands ------------------------------------


@pytest.mark.parametrize(
    "first, second",
    [
        (["runs", "purge"], ["runs", "purge", "-y"]),
        (["runs", "delete", "-p"], ["runs", "delete", "-p", "-y"]),
        (["runs", "restore"], ["runs", "purge", "-y"]),
    ],
)
def test_race_loser_says_so(cli, project, guild_home, procs, first, second):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    if "restore" in first or "purge" in first:
        cli("runs", "delete", "-y")
    loser = spawn(procs, *first)
    at_prompt(loser)
    assert cli(*second).exit_code == 0
    rc, out, err = answer(loser)
    assert rc == 0 and "Traceback" not in err, err
    assert "is gone: another command deleted or moved it" in err


def test_export_move_beside_delete(cli, project, guild_home, procs, tmp_path):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    cli("run", "train.py", "x=2", "-y")
    export = spawn(procs, "export", "--move", str(tmp_path / "a.zip"))
    at_prompt(export)
    assert cli("runs", "delete", "1", "-y").exit_code == 0
    rc, out, err = answer(export)
    assert rc == 0 and "Traceback" not in err, err
    assert "is gone" in err and "Exported 1 run(s)" in err
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert len({n.split("/")[0] for n in zf.namelist()}) == 1


# -- 10. (paths outside a run: tests/test_run_files_safety.py) ---------------


def test_import_refuses_a_run_that_is_a_link(cli, project, guild_home, tmp_path):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    outside = tmp_path / "outside"
    shutil.copytree(run_dirs(guild_home)[0], outside)
    arch = tmp_path / "arch"
    arch.mkdir()
    (arch / ("c" * 32)).symlink_to(outside)
    result = cli("import", str(arch), "-y")
    assert result.exit_code == 1
    assert "the run directory is a symbolic link" in result.stderr
    assert not (guild_home / "runs" / ("c" * 32)).exists()


# -- 11. secrets ---------------------------------------------------------------

SECRET_YML = """
train:
  main: show
  env:
    API_TOKEN: tok-123-secret
    DB_PASSWORD: hunter2
    AWS_SECRET_ACCESS_KEY: aws-secret-value
    PLAIN: visible
"""
SHOW = "import os\nprint('token-len: %d' % len(os.environ.get('API_TOKEN', '')))\nprint('pw-ok: %d' % (os.environ.get('DB_PASSWORD') == 'hunter2'))\nprint('plain=' + os.environ['PLAIN'])\n"


def _grep(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.name not in ("output",):
            data = path.read_bytes()
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


def test_secret_env_stays_out_of_the_run(cli, sh, project, guild_home):
    project.write("guild.yml", SECRET_YML)
    project.write("show.py", SHOW)
    assert cli("run", "train", "-y").exit_code == 0
    assert cli("run", "train", "--stage", "-y").exit_code == 0
    staged = [p for p in run_dirs(guild_home) if Run.for_dir(p).status == "staged"][0]
    assert sh("run", "--start", staged.name, "-y").exit_code == 0
    assert sh("run", "--restart", staged.name, "-y").exit_code == 0
    for run_dir in run_dirs(guild_home):
        output = (run_dir / ".guild" / "output").read_text()
        # The script got every variable...
        assert "token-len: 14" in output and "pw-ok: 1" in output and "plain=visible" in output
        # ...and no attribute, marker or log of the run holds a secret
        # (guild.yml itself is in the source snapshot: docs/reliability.md).
        assert _grep(run_dir / ".guild", [b"tok-123-secret", b"hunter2", b"aws-secret-value"]) == []
        run = Run.for_dir(run_dir)
        assert run.get("env")["PLAIN"] == "visible"
        assert "API_TOKEN" not in run.get("env")
        assert run.get("op")["secret-env"] == ["API_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"]


# -- 12. bad input (more in tests/test_input_errors.py) ----------------------


def test_zip_with_duplicate_entries(cli, project, guild_home, tmp_path):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    assert cli("export", str(tmp_path / "a.zip"), "-y").exit_code == 0
    run_id = run_dirs(guild_home)[0].name
    with pytest.warns(UserWarning):
        with zipfile.ZipFile(tmp_path / "a.zip", "a") as zf:
            zf.writestr(f"{run_id}/.guild/attrs/label", "evil\n")
            zf.writestr(f"{run_id}/.guild/attrs/label", "twice\n")
    cli("runs", "delete", "-p", "-y")
    result = cli("import", str(tmp_path / "a.zip"), "-y")
    no_traceback(result)
    assert result.exit_code == 1
    assert f"entry '{run_id}/.guild/attrs/label' appears more than once" in result.stderr
    assert run_dirs(guild_home) == [] and hidden(guild_home / "runs") == []


def test_corrupt_zip_data(cli, project, guild_home, tmp_path):
    project.write("train.py", "print('x' * 100000)\n")
    cli("run", "train.py", "-y")
    cli("export", str(tmp_path / "a.zip"), "-y")
    data = bytearray((tmp_path / "a.zip").read_bytes())
    i = data.find(b"output") + 200
    data[i : i + 50] = b"\xff" * 50
    (tmp_path / "a.zip").write_bytes(bytes(data))
    cli("runs", "delete", "-p", "-y")
    result = cli("import", str(tmp_path / "a.zip"), "-y")
    no_traceback(result)
    assert result.exit_code == 1 and "cannot read zip archive" in result.stderr
    assert run_dirs(guild_home) == []


def test_runs_dir_that_is_a_file(cli, guild_home):
    (guild_home / "runs").write_text("oops")
    result = cli("runs")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"guild: {guild_home / 'runs'} is not a directory"


def test_previews_comments_and_errors_escape_controls(cli, project, guild_home):
    project.write("train.py", "msg = 'hi'\nprint(msg)\n")
    evil = "a\x1b[31mb\nFAKE"
    out = cli("run", "train.py", f"msg={evil}", input="n\n")
    assert "\x1b" not in out.output and "a\\x1b[31mb\\nFAKE" in out.output
    out = cli("run", "train.py", f"msg=[x,{evil}]", input="n\n")
    assert "\x1b" not in out.output and "\\nFAKE" in out.output
    cli("run", "train.py", "-y")
    cli("runs", "comment", "-a", "c\x1b[2Jx\nforged", "-y")
    out = cli("runs", "comment", "--list")
    assert "\x1b" not in out.output and "c\\x1b[2Jx" in out.output
    out = cli("runs", "label", "-s", "x\x1b[2J", input="n\n")
    assert "\x1b" not in out.stderr
    out = cli("runs", "info", "zz\x1b[2J")
    assert out.exit_code == 1 and "\x1b" not in out.stderr and "zz\\x1b[2J" in out.stderr


@pytest.mark.parametrize("damage", [b"\xff\xfe garbage", b"x\n\nonly-two\tfields\n", b""])
def test_damaged_plugin_cache_is_rebuilt(sh, guild_home, damage):
    assert sh("plugins").exit_code == 0
    [cache] = (guild_home / "cache" / "plugins").glob("*")
    head = cache.read_bytes().split(b"\n\n")[0]
    cache.write_bytes(head + b"\n\n" + damage if damage.startswith(b"x") else damage)
    result = sh("plugins")
    no_traceback(result)
    assert result.exit_code == 0 and "argparse" in result.output


def test_old_zip_temporaries_are_swept_by_the_next_export(cli, project, guild_home, tmp_path):
    project.write("train.py", TRAIN)
    cli("run", "train.py", "-y")
    old = tmp_path / ".a.zip.k2j3h4.tmp"
    old.write_bytes(b"PK partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    unrelated = tmp_path / ".b.zip.k2j3h4.tmp"
    unrelated.write_bytes(b"not ours to judge")
    os.utime(unrelated, (time.time() - 7200, time.time() - 7200))
    assert cli("export", str(tmp_path / "a.zip"), "-y").exit_code == 0
    assert not old.exists() and unrelated.exists()


def test_deeply_nested_batch_file(cli, project, guild_home):
    project.write("train.py", TRAIN)
    project.write("deep.json", '[{"x": ' + "[" * 5000 + "]" * 5000 + "}]")
    result = cli("run", "train.py", "@deep.json", "--print-trials")
    no_traceback(result)
    assert result.exit_code == 1 and "deep.json: nested too deeply to read" in result.stderr


def test_grid_too_large_is_refused_and_sampled(cli, project, guild_home):
    project.write("train.py", "a = 1\nb = 1\nc = 1\nprint(a + b + c)\n")
    big = ["a=range[1:100]", "b=range[1:100]", "c=range[1:100]"]
    result = cli("run", "train.py", *big, "--print-trials")
    assert result.exit_code == 1
    assert "the grid has 1,000,000 trials, more than 100,000" in result.stderr
    assert run_dirs(guild_home) == []
    # A sample of it is fine, and the same seed gives the same sample.
    out1 = cli("run", "train.py", *big, "-m", "3", "--random-seed", "7", "--print-trials")
    out2 = cli("run", "train.py", *big, "-m", "3", "--random-seed", "7", "--print-trials")
    assert out1.exit_code == 0 and out1.output == out2.output
    assert len(out1.output.strip().splitlines()) == 4


def test_grid_sample_matches_the_full_grid():
    import itertools
    import random

    from guild_core.batch import grid_trials

    space = {"a": [1, 2, 3], "b": ["x", "y"], "c": [0.1, 0.2, 0.3, 0.4], "d": 5}
    varying = {"a": 0, "b": 0, "c": 0}
    full = grid_trials(space, varying, None, 0)
    assert full == [
        {"a": a, "b": b, "c": c, "d": 5}
        for a, b, c in itertools.product([1, 2, 3], ["x", "y"], [0.1, 0.2, 0.3, 0.4])
    ]
    keep = sorted(random.Random(11).sample(range(len(full)), 5))
    assert grid_trials(space, varying, 5, 11) == [full[i] for i in keep]


def test_secret_env_null_is_empty(cli, project, guild_home):
    project.write("guild.yml", "train:\n  main: show\n  env:\n    API_TOKEN: null\n")
    project.write("show.py", "import os\nprint('token=[%s]' % os.environ.get('API_TOKEN', 'unset'))\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 0 and "WARNING" not in result.stderr
    assert "token=[]" in result.output
