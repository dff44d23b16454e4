"""The ssh remote type against a real sshd on loopback (`sshd_fixture`):
push real runs, list them remotely, pull them into an empty home and
compare every file; only changes travel; delete, restore and purge with
plain file moves and with the host's guild; a push killed mid-copy;
one connection per command; unreachable hosts and bad keys in one line;
and the same through the CLI. The host's Guild home is a temp
directory of this machine, named by an absolute path (the remote shell
is the real user's, HOME and all)."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sshd_fixture  # noqa: E402

from guild_core import remotes  # noqa: E402
from guild_core.errors import GuildError  # noqa: E402
from guild_core.run import Run  # noqa: E402

_why_not = sshd_fixture.missing()
if _why_not:
    pytest.skip(_why_not, allow_module_level=True)

from guild_remote_ssh import SSHRemote, _conn  # noqa: E402

TRAIN = """\
import os
x = 1
big = 0
print("loss: %s" % (1.0 / x))
os.makedirs("out", exist_ok=True)
open("out/result.txt", "w").write("x=%s\\n" % x)
if big:
    open("big.bin", "wb").write(os.urandom(600 * 1024))
"""

# The host's guild: this checkout's, found on the PATH only once its
# virtualenv is activated (the login shell's PATH lacks it).
ACTIVATE_SCRIPT = Path(sys.executable).parent / "activate"
ACTIVATE = f". {ACTIVATE_SCRIPT}"


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = sshd_fixture.Sshd.start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        _conn._close_all()
        server.stop()


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """Three runs made with `guild run` (x=1, 2, 4; x=4 with a 600 KB
    file), in a home of their own: each test copies them."""
    root = tmp_path_factory.mktemp("ssh-seed")
    home, project = root / "home", root / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    env = {**os.environ, "GUILD_HOME": str(home)}
    for x in (1, 2, 4):
        args = ["run", "-y", "train.py", f"x={x}"] + (["big=1"] if x == 4 else [])
        proc = subprocess.run([sys.executable, "-m", "guild_core.cli.main", *args],
                              cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    return home / "runs"


class Host:
    """The remote as the tests see it: `remote()` made through the
    core, its Guild home `home` on this machine."""

    def __init__(self, sshd, guild_home: Path, host_home: Path):
        self.sshd = sshd
        self.guild_home = guild_home
        self.home = host_home
        self.config: dict[str, dict] = {}

    def add(self, name: str = "h", **extra) -> None:
        config = {
            "type": "ssh",
            "host": "127.0.0.1",
            "port": self.sshd.port,
            "user": self.sshd.user,
            "private-key": str(self.sshd.user_key),
            "known-hosts": str(self.sshd.known_hosts),
            "guild-home": str(self.home),
            **extra,
        }
        self.config[name] = config
        (self.guild_home / "config.yml").write_text(json.dumps({"remotes": self.config}))

    def remote(self, name: str = "h"):
        return remotes.get(name)

    def runs(self, deleted: bool = False) -> list[str]:
        root = self.home / "trash" / "runs" if deleted else self.home / "runs"
        return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []

    def hidden(self) -> list[str]:
        root = self.home / "runs"
        return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


@pytest.fixture
def host(sshd, seed, guild_home, tmp_path):
    shutil.copytree(seed, guild_home / "runs")
    h = Host(sshd, guild_home, tmp_path / "host-guild-home")
    h.add("h")
    return h


class Progress:
    def __init__(self):
        self.runs = 0
        self.bytes = 0

    def update(self, runs=0, nbytes=0):
        self.runs += runs
        self.bytes += nbytes


def local_runs(guild_home: Path) -> list[Path]:
    return sorted(p for p in (guild_home / "runs").iterdir() if not p.name.startswith("."))


def by_x(guild_home: Path, x: int) -> Path:
    for run_dir in local_runs(guild_home):
        if Run(run_dir.name, run_dir).get("flags").get("x") == x:
            return run_dir
    raise AssertionError(f"no run x={x}")


def files_of(run_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Relative path -> (size, mtime in s, mode) of a run's files, but
    the process records only the machine that ran it keeps."""
    out = {}
    for p in run_dir.rglob("*"):
        if p.is_file() and p.name not in ("LOCK.proc", ".reserve"):
            st = p.stat()
            out[p.relative_to(run_dir).as_posix()] = (st.st_size, int(st.st_mtime), stat.S_IMODE(st.st_mode))
    return out


def same_run(a: Path, b: Path) -> None:
    assert files_of(a) == files_of(b)
    for rel in files_of(a):
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def one_line(e: GuildError, *texts: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    for text in texts:
        assert text in msg, msg
    return msg


# -- through the core ---------------------------------------------------------


def test_config_describe_and_status(host):
    r = host.remote()
    assert isinstance(r, SSHRemote)
    assert r.describe() == f"ssh {host.sshd.user}@127.0.0.1:{host.sshd.port} guild home {host.home}"
    assert remotes.get("ssh:bob@example.org:2222").describe() == "ssh bob@example.org:2222 guild home ~/.guild"
    assert SSHRemote("x", {"host": "h", "description": "the GPU box"}).describe() == "the GPU box"
    line = r.status()
    assert line.startswith(f"remote 'h' ({host.sshd.user}@127.0.0.1:{host.sshd.port}, guild home {host.home}) is reachable")
    assert "no runs yet" in line and "no guild on the host's PATH" in line
    with pytest.raises(GuildError) as e:
        SSHRemote("x", {"type": "ssh"})
    one_line(e, "remote 'x' needs 'host'")
    with pytest.raises(GuildError) as e:
        SSHRemote("x", {"host": "h", "port": "twenty"})
    one_line(e, "remote 'x': invalid 'port'")


def test_push_list_pull_round_trip(host, tmp_path):
    r = host.remote()
    progress = Progress()
    moved = r.push(local_runs(host.guild_home), False, progress)
    assert (moved.runs, moved.unchanged) == (3, 0)
    assert moved.files == sum(len(files_of(p)) for p in local_runs(host.guild_home))
    assert moved.bytes > 600 * 1024 and progress.runs == 3 and progress.bytes == moved.bytes
    assert host.runs() == [p.name for p in local_runs(host.guild_home)] and host.hidden() == []
    # Listing: exactly each run's metadata files, as the core reads them.
    listing = r.list_runs()
    assert sorted(listing) == host.runs()
    for run_dir in local_runs(host.guild_home):
        assert listing[run_dir.name] == remotes.meta_files(run_dir)
    viewed = remotes.view(r)
    assert sorted(run.get("flags")["x"] for run in viewed) == [1, 2, 4]
    assert r.list_runs(deleted=True) == {}
    # A second push moves nothing.
    again = r.push(local_runs(host.guild_home), False, Progress())
    assert (again.runs, again.files, again.bytes, again.unchanged) == (0, 0, 0, 3)
    # Pulled into an empty home: the same runs, file for file, times and
    # modes too.
    other = tmp_path / "other-runs"
    pulled = r.pull(sorted(listing), other, False, Progress())
    assert (pulled.runs, pulled.files) == (3, moved.files)
    assert sorted(pulled.run_ids) == sorted(listing)
    assert sorted(p.name for p in other.iterdir()) == sorted(listing)  # nothing hidden left
    for run_dir in local_runs(host.guild_home):
        same_run(run_dir, other / run_dir.name)
        assert Run(run_dir.name, other / run_dir.name).get("flags") == Run(run_dir.name, run_dir).get("flags")
    again = r.pull(sorted(listing), other, False, Progress())
    assert (again.runs, again.files, again.unchanged) == (0, 0, 3)


def test_only_changes_travel_and_delete_removes_what_is_gone(host, tmp_path):
    r = host.remote()
    r.push(local_runs(host.guild_home), False, Progress())
    run = by_x(host.guild_home, 2)
    (run / "out" / "result.txt").write_text("changed\n")
    (run / "new.txt").write_text("new\n")
    (run / ".guild" / "output").unlink()
    moved = r.push([run], False, Progress())
    assert (moved.runs, moved.files, moved.deleted_files) == (1, 2, 0)
    assert moved.bytes == len("changed\n") + len("new\n")
    there = host.home / "runs" / run.name
    assert (there / "out" / "result.txt").read_text() == "changed\n"
    assert (there / ".guild" / "output").exists()  # kept without delete
    moved = r.push(local_runs(host.guild_home), True, Progress())
    assert (moved.runs, moved.files, moved.deleted_files, moved.unchanged) == (1, 0, 1, 2)
    assert not (there / ".guild" / "output").exists()
    same_run(run, there)
    # Pull with delete: the local copy loses what the host lost.
    other = tmp_path / "other-runs"
    r.pull([run.name], other, False, Progress())
    (there / "new.txt").unlink()
    (there / "out" / "result.txt").write_text("changed on the host\n")
    pulled = r.pull([run.name], other, True, Progress())
    assert (pulled.runs, pulled.files, pulled.deleted_files) == (1, 1, 1)
    same_run(there, other / run.name)
    with pytest.raises(GuildError) as e:
        r.pull(["f" * 32], other, False, Progress())
    one_line(e, "remote 'h'", "f" * 32, "is not on 127.0.0.1")
    assert sorted(p.name for p in other.iterdir()) == [run.name]  # nothing hidden left


def test_links_are_followed_and_dangling_ones_left_out(host):
    r = host.remote()
    run = by_x(host.guild_home, 1)
    target = host.guild_home / "data.csv"
    target.write_text("a,b\n")
    os.symlink(target, run / "data.csv")
    os.symlink(host.guild_home / "gone", run / "dangling")
    moved = r.push([run], False, Progress())
    assert moved.runs == 1
    there = host.home / "runs" / run.name
    assert (there / "data.csv").read_text() == "a,b\n" and not (there / "data.csv").is_symlink()
    assert not os.path.lexists(there / "dangling")


def test_write_meta_and_fetch_run(host, tmp_path):
    r = host.remote()
    run = by_x(host.guild_home, 4)
    r.push([run], False, Progress())
    odd = bytes(range(256)) + b"'\"\\%s$(x)`\n"
    r.write_meta(run.name, {".guild/attrs/label": b"best\n", ".guild/attrs/odd": odd, ".guild/attrs/user": None})
    attrs = host.home / "runs" / run.name / ".guild" / "attrs"
    assert (attrs / "label").read_bytes() == b"best\n"
    assert (attrs / "odd").read_bytes() == odd
    assert not (attrs / "user").exists()
    assert not [p for p in attrs.iterdir() if p.name.startswith(remotes.PART_PREFIX)]
    assert r.list_runs()[run.name][".guild/attrs/label"] == b"best\n"
    with pytest.raises(GuildError) as e:
        r.write_meta("f" * 32, {".guild/attrs/label": b"x\n"})
    one_line(e, "remote 'h'", "run ffffffff is not on the host")
    with pytest.raises(GuildError) as e:
        r.write_meta(run.name, {"../escape": b"x"})
    one_line(e, "is not a path in a run")
    # fetch_run: the whole run into its mirror directory.
    mirror = tmp_path / "mirror"
    r.fetch_run(run.name, mirror)
    assert (mirror / "big.bin").stat().st_size == 600 * 1024
    assert (mirror / "out" / "result.txt").read_text() == "x=4\n"


@pytest.mark.parametrize("with_guild", [False, True], ids=["plain", "hosts-guild"])
def test_delete_list_deleted_restore_purge(host, with_guild):
    if with_guild:
        if not ACTIVATE_SCRIPT.exists():
            pytest.skip("not run from a virtualenv: no guild to put on the host's PATH")
        host.add("h", **{"venv-activate": ACTIVATE})
    r = host.remote()
    if with_guild:
        assert "guild" in r.status() and "no guild" not in r.status()
    r.push(local_runs(host.guild_home), False, Progress())
    one, two, four = (by_x(host.guild_home, x).name for x in (1, 2, 4))
    r.delete([one, two])
    assert sorted(r.list_runs()) == [four]
    assert sorted(r.list_runs(deleted=True)) == sorted([one, two])
    assert host.runs(deleted=True) == sorted([one, two])
    assert sorted(run.id for run in remotes.view(r, deleted=True)) == sorted([one, two])
    r.restore([one])
    assert sorted(r.list_runs()) == sorted([one, four])
    r.purge([two])
    assert r.list_runs(deleted=True) == {}
    r.delete([four], permanent=True)
    assert sorted(r.list_runs()) == [one] and host.runs(deleted=True) == []
    assert host.hidden() == []
    # The host's guild did the work where it was there (it keeps an
    # index of the runs under its home's cache), plain moves where not.
    assert (host.home / "cache").exists() == with_guild
    with pytest.raises(GuildError) as e:
        r.delete(["a" * 32])
    one_line(e, "remote 'h'", "aaaaaaaa")
    with pytest.raises(GuildError) as e:
        r.restore([one])
    one_line(e, "remote 'h'", one[:8])


def test_a_push_killed_mid_copy_lists_nothing_and_the_next_completes_it(host, tmp_path):
    # A slow copy (rsync's own bandwidth limit), killed once a.bin is
    # there and big.bin on its way (rsync sends a directory's files in
    # name order, its subdirectories after).
    host.add("slow", **{"rsync-options": ["--bwlimit=400"]})
    run = by_x(host.guild_home, 4)
    (run / "a.bin").write_bytes(os.urandom(100 * 1024))
    code = (
        "from pathlib import Path\nfrom guild_core import remotes\n"
        "class P:\n    def update(self, **kw): pass\n"
        f"remotes.get('slow').push([Path({str(run)!r})], False, P())\n"
    )
    # Its control socket's directory, which a killed process cannot
    # remove: short (a socket path is), and removed here.
    sockets = tempfile.mkdtemp(prefix="guild-test-")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "TMPDIR": sockets},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 30
        while not list((host.home / "runs").glob(".guild-push-*/*/*big.bin*")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "the push did not get to big.bin"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(sockets, ignore_errors=True)
    r = host.remote()
    assert r.list_runs() == {} and host.runs() == []
    (leftover,) = host.hidden()
    assert leftover.startswith(".guild-push-")
    assert (host.home / "runs" / leftover / run.name / "a.bin").stat().st_size == 100 * 1024
    # The next push takes up the copy where it stopped.
    moved = r.push([run], False, Progress())
    assert moved.runs == 1 and moved.files == len(files_of(run)) - 1
    assert sorted(r.list_runs()) == [run.name] and host.hidden() == []
    same_run(run, host.home / "runs" / run.name)


def test_one_connection_per_command(host, tmp_path):
    _conn._close_all()
    before = host.sshd.accepted()
    r = host.remote()
    r.status()
    r.list_runs()
    r.push(local_runs(host.guild_home), False, Progress())
    listing = r.list_runs()
    r.write_meta(sorted(listing)[0], {".guild/attrs/label": b"one\n"})
    r.pull(sorted(listing), tmp_path / "pulled", False, Progress())
    r.delete(sorted(listing)[:1])
    r.list_runs(deleted=True)
    assert host.sshd.accepted() - before == 1
    # The connection ends with the process (here: closed by hand).
    (sock,) = [c.control_path for c in _conn._masters.values()]
    assert os.path.exists(sock)
    _conn._close_all()
    assert not os.path.exists(sock)


def test_unreachable_hosts_and_bad_keys_give_one_line(host, tmp_path):
    refused = sshd_fixture.free_port()
    host.add("refused", port=refused)
    with pytest.raises(GuildError) as e:
        host.remote("refused").status()
    one_line(e, "remote 'refused': cannot connect to", f"127.0.0.1:{refused}", "connection refused")
    stranger = tmp_path / "stranger_key"
    sshd_fixture.keygen(stranger)
    host.add("badkey", **{"private-key": str(stranger)})
    with pytest.raises(GuildError) as e:
        host.remote("badkey").list_runs()
    one_line(e, "remote 'badkey'", "authentication failed")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host.add("unknown", **{"known-hosts": str(empty)})
    with pytest.raises(GuildError) as e:
        host.remote("unknown").push(local_runs(host.guild_home), False, Progress())
    one_line(e, "remote 'unknown'", "host key is not known")
    host.add("nokey", **{"private-key": str(tmp_path / "no-such-key")})
    with pytest.raises(GuildError) as e:
        host.remote("nokey").status()
    one_line(e, "remote 'nokey': private key", "does not exist")
    host.add("badenv", **{"venv-activate": "source /no/such/env/bin/activate"})
    with pytest.raises(GuildError) as e:
        host.remote("badenv").list_runs()
    one_line(e, "remote 'badenv': setting up the shell", "No such file")
    assert host.runs() == []


def _staged(cli, guild_home, *args) -> Path:
    before = set(local_runs(guild_home))
    assert cli("run", *args, "--stage", "-y").exit_code == 0
    (run_dir,) = set(local_runs(guild_home)) - before
    return run_dir


def _host_status(host, run_id: str) -> str:
    (run,) = [run for run in remotes.view(host.remote()) if run.id == run_id]
    return run.status


def test_start_and_stop_runs_on_the_host(host, cli, project):
    if not ACTIVATE_SCRIPT.exists():
        pytest.skip("not run from a virtualenv: no guild to put on the host's PATH")
    host.add("h", **{"venv-activate": ACTIVATE})
    project.write("nap.py", "import time\nsecs = 0.1\ntime.sleep(secs)\nprint('loss: 0.5')\n")
    quick = _staged(cli, host.guild_home, "nap.py")
    r = host.remote()
    r.start(quick)
    exit_status = host.home / "runs" / quick.name / ".guild" / "attrs" / "exit_status"
    deadline = time.time() + 30
    while not exit_status.exists():
        assert time.time() < deadline, "the run did not end on the host"
        time.sleep(0.1)
    assert _host_status(host, quick.name) == "completed"
    assert "loss: 0.5" in (host.home / "runs" / quick.name / ".guild" / "output").read_text()
    slow = _staged(cli, host.guild_home, "nap.py", "secs=60")
    r.start(slow)
    deadline = time.time() + 30
    while (status := _host_status(host, slow.name)) != "running":
        assert status == "pending" and time.time() < deadline, status
        time.sleep(0.1)
    r.stop([slow.name])
    assert _host_status(host, slow.name) == "terminated"


def test_starting_a_run_needs_the_hosts_guild(host, cli, project):
    project.write("nap.py", "print('loss: 0.5')\n")
    run = _staged(cli, host.guild_home, "nap.py")
    for call in (lambda r: r.start(run), lambda r: r.stop([run.name])):
        with pytest.raises(GuildError) as e:
            call(host.remote())
        one_line(e, "remote 'h': guild is not installed on 127.0.0.1", "venv-activate")
    assert host.runs() == []


# -- through the CLI ----------------------------------------------------------


def guild(*args, home=None, env=None):
    full = {**os.environ, **(env or {})}
    if home is not None:
        full["GUILD_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "guild_core.cli.main", *args],
                          capture_output=True, text=True, env=full, timeout=120)


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def labels(*args, home=None):
    return sorted(r["label"] for r in json.loads(ok(guild("runs", "--json", *args, home=home)).stdout))


def test_cli_push_runs_label_delete_pull(host, tmp_path):
    assert ok(guild("remotes")).stdout.split()[:2] == ["h", "ssh"]
    assert "is reachable: no runs yet" in ok(guild("remote", "status", "h")).stdout
    before = host.sshd.accepted()
    pushed = ok(guild("push", "h", "-y"))
    assert pushed.stderr.strip().splitlines()[-1].startswith("Pushed 3 runs:")
    assert host.sshd.accepted() - before == 1  # one connection for the command
    again = ok(guild("push", "h", "-y"))
    assert again.stderr.strip().splitlines()[-1] == "Pushed 0 runs: 0 files, 0 bytes (3 runs unchanged)"
    assert labels("-r", "h") == ["big=0 x=1", "big=0 x=2", "big=1 x=4"]
    assert labels("-r", "h", "-F", "loss < 0.6") == ["big=0 x=2", "big=1 x=4"]
    ok(guild("label", "-r", "h", "--set", "best", "1", "-y"))
    assert labels("-r", "h") == ["best", "big=0 x=1", "big=0 x=2"] and labels() == ["big=0 x=1", "big=0 x=2", "big=1 x=4"]
    assert "x=4" in ok(guild("cat", "-r", "h", "-p", "out/result.txt", "1")).stdout
    ok(guild("runs", "delete", "-r", "h", "-F", "loss > 0.9", "-y"))
    assert labels("-r", "h") == ["best", "big=0 x=2"] and labels("-r", "h", "-d") == ["big=0 x=1"]
    ok(guild("runs", "restore", "-r", "h", "-y"))
    assert labels("-r", "h") == ["best", "big=0 x=1", "big=0 x=2"]
    other = tmp_path / "other-home"
    other.mkdir()
    shutil.copy(host.guild_home / "config.yml", other / "config.yml")
    pulled = ok(guild("pull", "h", "-y", home=other))
    assert pulled.stderr.strip().splitlines()[-1].startswith("Pulled 3 runs:")
    assert labels(home=other) == ["best", "big=0 x=1", "big=0 x=2"]


def test_cli_errors_are_one_line(host):
    host.add("refused", port=sshd_fixture.free_port())
    for args in (("remote", "status", "refused"), ("runs", "-r", "refused"), ("push", "refused", "-y")):
        proc = guild(*args)
        assert proc.returncode != 0
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "connection refused" in lines[0], proc.stderr


def test_cli_run_watch_stop_and_pull_on_the_host(host, project, tmp_path):
    """`guild run -r` stages the run here, starts it on the host and
    returns; `watch -r` shows its output until it ends, `stop -r` stops
    one, and `pull` brings it back."""
    if not ACTIVATE_SCRIPT.exists():
        pytest.skip("not run from a virtualenv: no guild to put on the host's PATH")
    host.add("h", **{"venv-activate": ACTIVATE})
    project.write("nap.py", "import time\nsecs = 0.1\ntime.sleep(secs)\nprint('loss: 0.5')\n")
    before = set(local_runs(host.guild_home))
    started = ok(guild("run", "-r", "h", "nap.py", "-y"))
    assert "started on h as" in started.stdout
    # Nothing stays here: the run lives on the host.
    assert set(local_runs(host.guild_home)) == before
    watched = ok(guild("watch", "-r", "h"))
    assert "loss: 0.5" in watched.stdout and "status of 'completed'" in watched.stderr
    ok(guild("run", "-r", "h", "nap.py", "secs=60", "-y"))
    deadline = time.time() + 30
    while "running" not in ok(guild("runs", "-r", "h")).stdout.splitlines()[0]:
        assert time.time() < deadline, "the run did not start on the host"
        time.sleep(0.2)
    ok(guild("stop", "-r", "h", "-y"))
    assert "terminated" in ok(guild("runs", "-r", "h")).stdout.splitlines()[0]
    pulled = ok(guild("pull", "h", "-Fo", "nap.py", "-y"))
    assert pulled.stderr.strip().splitlines()[-1].startswith("Pulled 2 runs")
    listed = ok(guild("runs", "-Fo", "nap.py")).stdout.splitlines()
    assert "terminated" in listed[0] and "completed" in listed[1]
