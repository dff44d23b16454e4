"""Test fixtures: a temporary GUILD_HOME and the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from guild_core.cli import common
from guild_core.cli.main import guild as guild_cli


@dataclass
class Result:
    exit_code: int
    output: str
    stderr: str


@pytest.fixture(scope="session", autouse=True)
def _no_real_guild_home(tmp_path_factory):
    """No test may read or write the user's ~/.guild: without the
    guild_home fixture, GUILD_HOME is an empty session directory."""
    saved = os.environ.get("GUILD_HOME")
    os.environ["GUILD_HOME"] = str(tmp_path_factory.mktemp("session-guild-home"))
    yield
    if saved is None:
        os.environ.pop("GUILD_HOME", None)
    else:
        os.environ["GUILD_HOME"] = saved


@pytest.fixture
def guild_home(tmp_path, monkeypatch):
    home = tmp_path / "guild-home"
    home.mkdir()
    monkeypatch.setenv("GUILD_HOME", str(home))
    monkeypatch.delenv("GUILD_DISABLE_PLUGINS", raising=False)
    common.plugin_manager.cache_clear()
    yield home
    common.plugin_manager.cache_clear()
    _kill_leftover_runs(home)


def _kill_leftover_runs(home: Path) -> None:
    # A failed test must not leave a background run behind.
    for lock in home.glob("runs/*/.guild/LOCK"):
        try:
            os.kill(int(lock.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory, the cwd for the test; `write(name, text)`
    adds a file."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)

    class Project:
        path = root

        def write(self, name: str, text: str) -> Path:
            p = root / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(text).lstrip())
            return p

    return Project()


@pytest.fixture
def cli(guild_home):
    """Run ``guild ARGS`` in-process with click's CliRunner."""

    def run(*args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        result = runner.invoke(guild_cli, list(args), input=input, catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def sh(guild_home):
    """Run ``guild ARGS`` as a subprocess, as a user would."""

    def run(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 60) -> Result:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "guild_core.cli.main", *args],
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def age(path: Path, seconds: float = 30) -> None:
    """Make every file and directory under `path` look `seconds` old:
    the index trusts only times older than its racy window."""
    t = time.time() - seconds
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (t, t), follow_symlinks=False)
    os.utime(path, (t, t))


def wait_for(pred, timeout=20.0, what="condition"):
    """`pred()`'s first true value, polled until `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        val = pred()
        if val:
            return val
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def procs():
    """Processes a test starts; killed after it, even when it fails."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture
def group():
    """Background guild processes a test starts, each in its own session:
    killed, with their process groups (their runs), after it, even when
    it fails."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()


def spawn(group, *args, env=None, text=True) -> subprocess.Popen:
    """``guild ARGS`` in the background, in its own session, added to
    `group`."""
    p = subprocess.Popen(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=text, env=env,
    )
    group.append(p)
    return p


def span(run) -> tuple[int, int]:
    """A run's started and stopped times, read afresh."""
    from guild_core.run import Run

    run = Run(run.id, run.path)
    return run.get("started"), run.get("stopped")


def overlap(a, b) -> bool:
    (s1, e1), (s2, e2) = span(a), span(b)
    return s1 < e2 and s2 < e1


def most_at_once(runs) -> int:
    """The most runs running at one moment, from their started/stopped."""
    spans = [span(r) for r in runs]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = top = 0
    for _t, delta in events:
        now += delta
        top = max(top, now)
    return top
