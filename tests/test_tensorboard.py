"""`guild tensorboard`: the log directory of run links
(`guild_core.tblogdir`), the command's options, and TensorBoard itself
serving a run's scalars over HTTP while runs come and go."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for

from guild_core import select, tblogdir
from guild_core.run import Run

if importlib.util.find_spec("tensorboard") is None:
    pytest.skip("TensorBoard is not installed", allow_module_level=True)

TRAIN = """
lr = 0.1
steps = 3
for i in range(steps):
    print("loss: %s" % (lr * (steps - i)))
"""


@pytest.fixture
def proj(project):
    project.write("train.py", TRAIN)
    return project


def all_runs() -> list[Run]:
    return select.all_runs()


def make_run(cli, *flags: str, label: str | None = None) -> Run:
    args = ["run", "train.py", *flags, "-y"]
    if label is not None:
        args += ["--label", label]
    out = cli(*args)
    assert out.exit_code == 0, out.stderr
    return all_runs()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- names ------------------------------------------------------------


def test_a_run_is_named_as_guild_ai_names_it(cli, proj):
    run = make_run(cli, "lr=0.5")
    started = run.get("started")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started / 1e6))
    assert tblogdir.run_name(run) == f"{run.short_id} train.py {stamp} lr=0.5 steps=3"
    assert tblogdir.run_name(run, label="") == f"{run.short_id} train.py {stamp}"


def test_names_are_one_file_name():
    assert tblogdir.safe_name("a/b\\c//d") == "a_b_c_d"
    assert tblogdir.safe_name("x\ny\x1bz\u2026") == "x?y?z?"
    long = tblogdir.safe_name("8a1b2c3d " + "é" * 300)
    assert long.startswith("8a1b2c3d ")
    assert len(long.encode()) <= tblogdir.MAX_NAME_BYTES
    long.encode("utf-8")  # no half character


def test_a_label_with_a_slash_is_one_link(cli, proj, tmp_path):
    run = make_run(cli, label="a/b")
    logdir = tblogdir.LogDir(tmp_path / "logdir", all_runs)
    logdir.refresh()
    (name,) = os.listdir(logdir.path)
    assert name.endswith(" a_b") and name.startswith(run.short_id)


# -- refresh ----------------------------------------------------------


def test_refresh_links_each_run_to_its_directory(cli, proj, tmp_path):
    a = make_run(cli, "lr=0.1")
    b = make_run(cli, "lr=0.2")
    logdir = tblogdir.LogDir(tmp_path / "logdir", all_runs)
    changes = logdir.refresh()
    assert sorted(changes.added) == sorted([tblogdir.run_name(a), tblogdir.run_name(b)])
    for run in (a, b):
        link = logdir.path / tblogdir.run_name(run)
        assert link.is_symlink()
        assert Path(os.readlink(link)) == run.path.resolve()
        # What TensorBoard reads through it: guild's event file.
        assert list((link / ".guild").glob("events.out.tfevents.*"))
    assert not logdir.refresh()  # nothing changed


def test_refresh_adds_new_runs_and_removes_deleted_ones(cli, proj, tmp_path):
    a = make_run(cli, "lr=0.1")
    logdir = tblogdir.LogDir(tmp_path / "logdir", all_runs)
    logdir.refresh()
    b = make_run(cli, "lr=0.2")
    assert logdir.refresh().added == [tblogdir.run_name(b)]
    assert cli("runs", "rm", "-y", a.id).exit_code == 0
    changes = logdir.refresh()
    assert changes.removed == [tblogdir.run_name(a)] and not changes.added
    assert os.listdir(logdir.path) == [tblogdir.run_name(b)]


def test_a_new_label_relinks_the_run(cli, proj, tmp_path):
    run = make_run(cli, "lr=0.1")
    logdir = tblogdir.LogDir(tmp_path / "logdir", all_runs)
    logdir.refresh()
    old = tblogdir.run_name(run)
    assert cli("label", "-s", "best", run.id, "-y").exit_code == 0
    new = tblogdir.run_name(Run.for_dir(run.path))
    assert new.endswith(" best")
    changes = logdir.refresh()
    assert (changes.removed, changes.added) == ([old], [new])
    assert os.listdir(logdir.path) == [new]


def test_refresh_follows_the_selection_and_leaves_other_files(cli, proj, tmp_path):
    a = make_run(cli, "lr=0.1", label="keep")
    make_run(cli, "lr=0.2")
    rf = select.RunFilter(labels=("keep",))
    logdir = tblogdir.LogDir(tmp_path / "logdir", lambda: select.filter_runs(all_runs(), rf))
    logdir.path.mkdir()
    (logdir.path / "notes.txt").write_text("mine\n")
    logdir.refresh()
    assert sorted(os.listdir(logdir.path)) == sorted(["notes.txt", tblogdir.run_name(a)])


def test_two_runs_with_one_name_get_two_links(cli, proj, tmp_path):
    a = make_run(cli)
    b = make_run(cli)
    logdir = tblogdir.LogDir(tmp_path / "logdir", all_runs, name=lambda run: "same")
    logdir.refresh()
    assert len(os.listdir(logdir.path)) == 2
    assert {os.readlink(logdir.path / n) for n in os.listdir(logdir.path)} == {
        str(a.path.resolve()), str(b.path.resolve())
    }


# -- the command's options ---------------------------------------------


def test_export_scalars_writes_every_scalar(cli, proj):
    run = make_run(cli, "lr=0.5")
    out = cli("tensorboard", "--export-scalars", "-")
    assert out.exit_code == 0, out.stderr
    lines = out.output.splitlines()
    assert lines[0] == "run,path,tag,value,step"
    rows = [line.split(",") for line in lines[1:]]
    assert [(r[0], r[1], r[2], float(r[3]), int(r[4])) for r in rows] == [
        (run.id, ".guild", "loss", pytest.approx(v), step) for step, v in enumerate([1.5, 1.0, 0.5])
    ]


def test_batch_runs_only_with_include_batch(cli, proj):
    from guild_core.cli.tensorboard import _runs_lister

    assert cli("run", "train.py", "lr=[0.1,0.2]", "-y").exit_code == 0
    rf = select.RunFilter()
    assert len(_runs_lister(rf, (), include_batch=False)()) == 2
    assert len(_runs_lister(rf, (), include_batch=True)()) == 3


def test_run_name_flags_name_runs_by_those_flags(cli, proj):
    from guild_core.cli.tensorboard import _run_namer

    project = proj.path
    (project / "train.py").write_text("lr = 0.1\nsteps = 3\nprint('loss: 1')\n")
    run = make_run(cli, "lr=0.5", "steps=2")
    name = _run_namer("steps,lr")(run)
    assert name.endswith(" steps=2 lr=0.5") and name.startswith(run.short_id)


def test_missing_tensorboard_is_one_line_with_a_hint(cli, proj, monkeypatch):
    make_run(cli)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("tensorboard") else real(name, *a)
    )
    out = cli("tensorboard", "-n")
    assert out.exit_code == 1
    assert out.stderr.splitlines() == [
        "guild: TensorBoard is not installed",
        "Try: pip install 'guild[tensorboard]'",
    ]


def test_a_port_in_use_is_one_line(cli, proj):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = cli("tensorboard", "-n", "-p", str(port))
    assert out.exit_code == 1
    assert out.stderr == f"guild: port {port} is already in use on 127.0.0.1 (choose another with --port)\n"


def test_a_passed_option_needs_a_value(cli, proj):
    out = cli("tensorboard", "-n", "-O", "samples_per_plugin")
    assert out.exit_code == 1
    assert out.stderr == "guild: invalid TensorBoard option 'samples_per_plugin': use OPTION=VALUE\n"


def test_the_browser_opens_with_the_desktop_opener(tmp_path, monkeypatch):
    from guild_core.cli.tensorboard import _open_browser

    bindir = tmp_path / "bin"
    bindir.mkdir()
    opened = tmp_path / "opened"
    opener = bindir / ("open" if sys.platform == "darwin" else "xdg-open")
    opener.write_text(f"#!/bin/sh\necho \"$@\" > {opened}\n")
    opener.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    _open_browser("http://127.0.0.1:1234#scalars")
    assert wait_for(lambda: opened.exists() and opened.read_text(), 10) == "http://127.0.0.1:1234#scalars\n"


# -- end to end ---------------------------------------------------------


def _get(port: int, path: str, **query):
    url = f"http://127.0.0.1:{port}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _poll(fn, timeout: float, what: str):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            val = fn()
        except OSError as e:  # not serving yet
            last = e
            val = None
        if val:
            return val
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def _processes_under(marker: str):
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


@pytest.fixture
def tb_tmp(tmp_path):
    """TMPDIR of the command under test; whatever runs with it in its
    command line is killed after the test, passed or failed."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    yield tmp
    for proc in _processes_under(str(tmp)):
        try:
            proc.kill()
        except Exception:
            pass


def test_tensorboard_serves_runs_as_they_come_and_stops(cli, proj, guild_home, tb_tmp, procs):
    import psutil

    first = make_run(cli, "lr=0.5")
    # Summaries the script wrote itself, in the run directory.
    from guild_core.tfevents import EventWriter

    with EventWriter(first.path / "logs") as writer:
        writer.add_scalar("acc", 0.75, 7)
    port = free_port()
    env = dict(os.environ, GUILD_HOME=str(guild_home), TMPDIR=str(tb_tmp))
    with open(tb_tmp.parent / "tb.out", "wb") as out, open(tb_tmp.parent / "tb.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guild_core.cli.main", "tensorboard", "-n",
             "--port", str(port), "--refresh-interval", "1"],
            stdout=out, stderr=err, env=env, start_new_session=True,
        )
    procs.append(proc)
    try:
        name = tblogdir.run_name(first) + "/.guild"
        _poll(lambda: name in _get(port, "/data/runs"), 60, "TensorBoard to serve the run")
        line = _poll(lambda: (tb_tmp.parent / "tb.err").read_text(), 10, "guild's address line")
        assert line.startswith("Running TensorBoard ")
        assert line.endswith(f" at http://127.0.0.1:{port} (Type Ctrl+C to quit)\n")
        tags = _poll(lambda: _get(port, "/data/plugin/scalars/tags").get(name), 30, "the run's tags")
        assert "loss" in tags
        points = _poll(
            lambda: _get(port, "/data/plugin/scalars/scalars", run=name, tag="loss"), 30, "the loss scalars"
        )
        assert [(step, value) for _wall, step, value in points] == [
            (0, pytest.approx(1.5)), (1, pytest.approx(1.0)), (2, pytest.approx(0.5))
        ]
        own = tblogdir.run_name(first) + "/logs"
        assert own in _get(port, "/data/runs")
        assert [(s, v) for _w, s, v in _get(port, "/data/plugin/scalars/scalars", run=own, tag="acc")] == [(7, 0.75)]

        # A run made while TensorBoard runs appears after a refresh.
        second = make_run(cli, "lr=0.2")
        name2 = tblogdir.run_name(second) + "/.guild"
        _poll(lambda: name2 in _get(port, "/data/runs"), 30, "the new run")
        points = _poll(
            lambda: _get(port, "/data/plugin/scalars/scalars", run=name2, tag="loss"), 30, "its scalars"
        )
        assert [round(value, 5) for _wall, _step, value in points] == [0.6, 0.4, 0.2]

        # A deleted run goes, a relabelled one is there under its new name.
        assert cli("runs", "rm", "-y", first.id).exit_code == 0
        assert cli("label", "-s", "best", second.id, "-y").exit_code == 0
        relabelled = tblogdir.run_name(Run.for_dir(second.path)) + "/.guild"
        _poll(lambda: _get(port, "/data/runs") == [relabelled], 30, "the runs to follow")

        tb = [p for p in psutil.Process(proc.pid).children(recursive=True)]
        assert tb, "TensorBoard runs as guild's child"
        tb_group = os.getpgid(tb[0].pid)
        assert tb_group != os.getpgid(proc.pid)  # its own process group
        (logdir_parent,) = list(tb_tmp.glob("guild-tensorboard-*"))
        assert (logdir_parent / "logdir").is_dir()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    # TensorBoard's process group is gone: at most a zombie that
    # init has not reaped yet (TensorBoard's data server, whose parent
    # died with it).
    assert _live_in_group(tb_group) == []
    assert not list(tb_tmp.glob("guild-tensorboard-*"))


def _live_in_group(pgid: int) -> list:
    import psutil

    live = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                live.append(proc)
        except OSError:
            continue
    return live
