"""The filesystem remote through the real CLI: push, list and filter
remotely, pull into an empty home, delete/restore/purge remotely, label
and tag remotely, a second push that moves nothing, a push killed
mid-copy, bad configs; and a third-party remote type registered by a
test plugin, driven by the same commands."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def guild(*args, env=None, input=None, home=None):
    full = dict(os.environ)
    if home is not None:
        full["GUILD_HOME"] = str(home)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        capture_output=True, text=True, env=full, input=input, timeout=120,
    )


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_line_error(proc, text):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("guild: "), proc.stderr
    assert text in lines[0], proc.stderr


@pytest.fixture
def shared(guild_home, project, tmp_path):
    """Three runs (loss 1, 0.5, 0.25) and a remote 'shared', a directory."""
    project.write("train.py", "x = 1\nprint('loss: %s' % (1.0 / x))\n")
    for x in (1, 2, 4):
        ok(guild("run", "train.py", f"x={x}", "-y"))
    root = tmp_path / "shared-drive"
    root.mkdir()
    (guild_home / "config.yml").write_text(
        f"remotes:\n  shared:\n    type: filesystem\n    root: {root}\n    description: the team drive\n"
    )
    return root


def labels(*args, home=None):
    out = ok(guild("runs", "--json", *args, home=home))
    return sorted(r["label"] for r in json.loads(out.stdout))


def same_files(a: Path, b: Path) -> None:
    """Every file of run `a` is in run `b` with the same bytes, and no
    other (but the process records only the machine that ran it keeps)."""
    def files(root):
        return {
            p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.name not in ("LOCK.proc", ".reserve")
        }

    assert files(a) == files(b)
    for rel in files(a):
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def test_remotes_and_status(shared):
    out = ok(guild("remotes"))
    assert out.stdout.split() == ["shared", "filesystem", "the", "team", "drive"]
    assert "is available: 0 runs" in ok(guild("remote", "status", "shared")).stdout


def test_push_list_pull_round_trip(shared, guild_home, tmp_path):
    pushed = ok(guild("push", "shared", "-y"))
    assert pushed.stderr.strip().splitlines()[-1].startswith("Pushed 3 runs:")
    assert labels("-r", "shared") == ["x=1", "x=2", "x=4"]
    assert labels("-r", "shared", "-F", "loss < 0.6") == ["x=2", "x=4"]
    # A second push moves nothing.
    again = ok(guild("push", "shared", "-y"))
    assert again.stderr.strip().splitlines()[-1] == "Pushed 0 runs: 0 files, 0 bytes (3 runs unchanged)"
    # Pulled into an empty home: the same runs, file for file.
    other = tmp_path / "other-home"
    other.mkdir()
    shutil.copy(guild_home / "config.yml", other / "config.yml")
    pulled = ok(guild("pull", "shared", "-y", home=other))
    assert pulled.stderr.strip().splitlines()[-1].startswith("Pulled 3 runs:")
    for run_dir in (guild_home / "runs").iterdir():
        same_files(run_dir, other / "runs" / run_dir.name)
    assert ok(guild("runs", home=other)).stdout == ok(guild("runs")).stdout
    again = ok(guild("pull", "shared", "-y", home=other))
    assert again.stderr.strip().splitlines()[-1] == "Pulled 0 runs: 0 files, 0 bytes (3 runs unchanged)"


def test_remote_label_tag_delete_restore_purge(shared):
    ok(guild("push", "shared", "-y"))
    ok(guild("label", "-r", "shared", "--set", "best", "-F", "loss < 0.3", "-y"))
    ok(guild("tag", "-r", "shared", "--add", "red", "1", "-y"))
    assert labels("-r", "shared") == ["best", "x=1", "x=2"]
    assert labels() == ["x=1", "x=2", "x=4"]  # local runs untouched
    (best,) = [p for p in (shared / "runs").iterdir() if (p / ".guild/attrs/label").read_text() == "best\n"]
    assert (best / ".guild/attrs/tags").read_text() == "- red\n"
    out = ok(guild("runs", "info", "-r", "shared", "1"))
    assert "best" in out.stdout and "red" in out.stdout
    assert "loss: 0.25" in ok(guild("cat", "-r", "shared", "--output", "1")).stdout
    assert "train.py" in ok(guild("ls", "-r", "shared", "1")).stdout
    # Delete is restorable; purge is for good.
    ok(guild("runs", "delete", "-r", "shared", "-F", "loss > 0.9", "-y"))
    assert labels("-r", "shared") == ["best", "x=2"]
    assert labels("-r", "shared", "--deleted") == ["x=1"]
    ok(guild("runs", "restore", "-r", "shared", "-y"))
    assert labels("-r", "shared") == ["best", "x=1", "x=2"]
    ok(guild("runs", "delete", "-r", "shared", "1", "-y"))
    ok(guild("runs", "purge", "-r", "shared", "-y"))
    assert labels("-r", "shared", "--deleted") == []
    assert labels("-r", "shared") == ["x=1", "x=2"]
    assert ok(guild("select", "-r", "shared")).stdout.strip() in {p.name for p in (shared / "runs").iterdir()}
    csv = ok(guild("compare", "--remote", "shared", "--csv", "-")).stdout
    assert len(csv.splitlines()) == 3


def test_a_push_killed_mid_copy_lists_nothing_and_the_next_completes_it(shared):
    killed = guild("push", "shared", "1", "-y", env={"GUILD_FAULTS": "remote.copy.file=kill@5"})
    assert killed.returncode == -9
    assert labels("-r", "shared") == []
    (leftover,) = (shared / "runs").iterdir()
    assert leftover.name.startswith(".guild-push-")
    ok(guild("push", "shared", "-y"))
    assert labels("-r", "shared") == ["x=1", "x=2", "x=4"]
    # Another machine may still be copying into a fresh one: only an
    # old leftover is removed, by the next push of that run.
    assert leftover.exists()
    old = leftover.stat().st_mtime - 3600
    os.utime(leftover, (old, old))
    ok(guild("push", "shared", "1", "-y"))
    assert not leftover.exists()


def test_a_running_run_is_not_pushed_unless_asked(shared, guild_home, project):
    project.write("slow.py", "import time\ntime.sleep(30)\n")
    ok(guild("run", "slow.py", "-b", "-y"))
    try:
        out = ok(guild("push", "shared", "-y"))
        assert "still running" in out.stderr
        assert len(labels("-r", "shared")) == 3
    finally:
        ok(guild("stop", "-y"))


def test_bad_remotes_give_one_line(shared, guild_home, tmp_path):
    one_line_error(guild("push", "nowhere", "-y"), "remote 'nowhere' is not defined")
    config = guild_home / "config.yml"
    config.write_text("remotes:\n  a:\n    type: warp\n  b:\n    type: filesystem\n")
    one_line_error(guild("runs", "-r", "a"), "remote 'a' has unknown type 'warp'")
    one_line_error(guild("runs", "-r", "b"), "remote 'b' needs 'root' in its config")
    config.write_text("remotes:\n  c: 3\n")
    one_line_error(guild("remotes"), "remote 'c'")
    config.write_text("remotes: [\n")
    one_line_error(guild("remotes"), "config.yml")
    config.write_text(f"remotes:\n  gone:\n    type: filesystem\n    root: {tmp_path / 'no-such-dir'}\n")
    one_line_error(guild("remote", "status", "gone"), "does not exist")


def test_an_ad_hoc_directory_remote(shared, tmp_path):
    target = tmp_path / "adhoc"
    ok(guild("push", str(target), "-y"))
    assert labels("-r", str(target)) == ["x=1", "x=2", "x=4"]


# -- a third-party remote type ---------------------------------------------

PLUGIN = '''
from guild_core.hookspecs import hookimpl
from guild_remote_filesystem import FilesystemRemote


class Vault(FilesystemRemote):
    """A remote type of a third party: a directory under VAULT_DIR."""

    def __init__(self, name, config):
        import os
        super().__init__(name, {"root": os.path.join(os.environ["VAULT_DIR"], config["box"])})

    def describe(self):
        return "a vault"


@hookimpl
def guild_register_remote_types(register):
    register("vault", Vault)
'''


def test_a_third_party_remote_type_works_with_every_command(shared, guild_home, tmp_path):
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "vault_plugin.py").write_text(PLUGIN)
    dist = plugin_dir / "vault_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vault-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[guild]\nvault = vault_plugin\n")
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])),
        "VAULT_DIR": str(tmp_path / "vaults"),
    }
    (guild_home / "config.yml").write_text("remotes:\n  v:\n    type: vault\n    box: one\n")
    assert "a vault" in ok(guild("remotes", env=env)).stdout
    ok(guild("push", "v", "-y", env=env))
    assert ok(guild("remote", "status", "v", env=env)).stdout.strip().endswith("3 runs")
    out = ok(guild("runs", "--json", "-r", "v", "-F", "loss < 0.6", env=env))
    assert sorted(r["label"] for r in json.loads(out.stdout)) == ["x=2", "x=4"]
    ok(guild("label", "-r", "v", "--set", "kept", "1", "-y", env=env))
    ok(guild("tag", "-r", "v", "--add", "blue", "1", "-y", env=env))
    ok(guild("mark", "-r", "v", "1", "-y", env=env))
    ok(guild("comment", "-r", "v", "1", "-m", "looks good", "-y", env=env))
    info = ok(guild("runs", "info", "-r", "v", "1", "-c", env=env)).stdout
    assert "kept" in info and "blue" in info and "looks good" in info
    assert "[marked]" in ok(guild("runs", "-r", "v", env=env)).stdout.splitlines()[0]
    assert "loss: 0.25" in ok(guild("cat", "-r", "v", "-O", "1", env=env)).stdout
    assert "train.py" in ok(guild("ls", "-r", "v", "1", env=env)).stdout
    assert len(ok(guild("compare", "--remote", "v", "--csv", "-", env=env)).stdout.splitlines()) == 4
    assert len(ok(guild("select", "-r", "v", "1", env=env)).stdout.strip()) == 32
    ok(guild("diff", "-r", "v", "1", "2", "--flags", "-c", "true", env=env))
    ok(guild("runs", "delete", "-r", "v", "2", "-y", env=env))
    assert len(json.loads(ok(guild("runs", "--json", "-r", "v", "-d", env=env)).stdout)) == 1
    ok(guild("runs", "restore", "-r", "v", "-y", env=env))
    ok(guild("runs", "delete", "-r", "v", "3", "-y", env=env))
    ok(guild("runs", "purge", "-r", "v", "-y", env=env))
    assert json.loads(ok(guild("runs", "--json", "-r", "v", "-d", env=env)).stdout) == []
    other = tmp_path / "other-home"
    other.mkdir()
    shutil.copy(guild_home / "config.yml", other / "config.yml")
    ok(guild("pull", "v", "-y", env=env, home=other))
    assert "kept" in ok(guild("runs", env=env, home=other)).stdout
    # Disabled, the type is gone and says so.
    disabled = guild("runs", "-r", "v", env={**env, "GUILD_DISABLE_PLUGINS": "vault"})
    one_line_error(disabled, "unknown type 'vault'")


def test_secrets_never_travel(shared, guild_home, project):
    project.write(
        "guild.yml",
        "train:\n  main: train\n  env:\n    API_TOKEN: hush-hush-1\n    DB_PASSWORD: hush-hush-2\n    PLAIN: visible\n",
    )
    ok(guild("run", "train", "-y"))
    ok(guild("push", "shared", "-y"))
    (run_dir,) = [p for p in (shared / "runs").iterdir() if "train" in (p / ".guild/opref").read_text().split()[-1:]]
    env = (run_dir / ".guild/attrs/env").read_text()
    assert "PLAIN: visible" in env
    # The run's records (attributes, output, logs), not the copy of the
    # project's own guild.yml among its source files.
    for path in (run_dir / ".guild").rglob("*"):
        if path.is_file() and "sourcecode" not in path.parts:
            assert b"hush-hush" not in path.read_bytes(), path


def test_a_run_pulled_while_running_there_is_synchronized_until_it_stops(shared, guild_home, tmp_path):
    ok(guild("push", "shared", "-y"))
    remote_run = next(p for p in (shared / "runs").iterdir() if (p / ".guild/attrs/label").read_text() == "x=4\n")
    # Running there: its LOCK names a process on that machine.
    (remote_run / ".guild/LOCK").write_text("12345")
    (remote_run / ".guild/attrs/exit_status").unlink()
    other = tmp_path / "other-home"
    other.mkdir()
    shutil.copy(guild_home / "config.yml", other / "config.yml")
    ok(guild("pull", "shared", "-y", home=other))
    local = other / "runs" / remote_run.name / ".guild"
    assert (local / "LOCK.remote").read_text() == "shared\n" and not (local / "LOCK").exists()
    assert "running" in ok(guild("runs", home=other)).stdout.splitlines()[0]
    # Still running: sync brings what it has so far.
    (remote_run / "progress.txt").write_text("half way\n")
    ok(guild("sync", home=other))
    assert (other / "runs" / remote_run.name / "progress.txt").exists()
    assert "running" in ok(guild("runs", home=other)).stdout.splitlines()[0]
    # It ends there; the next sync brings its end.
    (remote_run / ".guild/LOCK").unlink()
    (remote_run / ".guild/attrs/exit_status").write_text("0\n")
    ok(guild("sync", home=other))
    assert not (local / "LOCK.remote").exists()
    assert "completed" in ok(guild("runs", home=other)).stdout.splitlines()[0]
    assert "Nothing to synchronize" in ok(guild("sync", home=other)).stderr


def test_a_remote_cannot_write_outside_the_mirror(guild_home, tmp_path, capsys):
    from guild_core import remotes

    class Hostile:
        name = "hostile"

        def list_runs(self, deleted=False):
            return {
                "a" * 32: {
                    ".guild/opref": b"script:/p '' '' t.py\n",
                    ".guild/attrs/../../../../escaped": b"x",
                    "/etc/escaped": b"x",
                    ".guild/attrs/label": b"fine\n",
                    "notes.txt": b"not metadata",
                },
                "../../up": {".guild/opref": b"x"},
            }

    (run,) = remotes.view(Hostile())
    assert run.get("label") == "fine"
    found = sorted(p.relative_to(guild_home).as_posix() for p in guild_home.rglob("*") if p.is_file())
    assert not any("escaped" in f or "notes.txt" in f or "up" in f.split("/") for f in found), found
    assert capsys.readouterr().err.count("WARNING: remote 'hostile': ignoring") == 3


def test_a_progress_line_once_a_transfer_takes_more_than_a_second(monkeypatch):
    from guild_core import remotes

    now = [100.0]
    monkeypatch.setattr(remotes.time, "monotonic", lambda: now[0])
    lines = []
    progress = remotes.Progress(3, write=lines.append)
    progress.update(runs=1, nbytes=2048)
    assert lines == []  # under a second: quiet
    now[0] += 1.5
    progress.update(runs=1, nbytes=1024)
    progress.finish()
    assert lines == ["2/3 runs, 3.0 KB\n"]
