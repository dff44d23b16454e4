"""The Dask executor (``--dask``, ``dask:queue``) on a real cluster: a
``dask scheduler`` and two ``dask worker`` processes on loopback, one of
them offering the resource ``gpu=1``; the CLI driven as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import psutil  # noqa: E402

from guild_core import procs  # noqa: E402
from guild_core.run import Run, runs_in  # noqa: E402

from conftest import most_at_once, span, spawn, wait_for  # noqa: E402

# Prints the process that supervises it (a worker's, on the cluster) and
# what it sees of OMP_NUM_THREADS, then sleeps.
SCRIPT = """
import os, time
x = 1
secs = 0.3
print("x", x, "supervisor", os.getppid(), "omp", os.environ.get("OMP_NUM_THREADS"), flush=True)
time.sleep(secs)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The test cluster: `address`, and the nanny of each worker by name
    (``gpu``: the one with resource gpu=1, ``cpu``: the other)."""

    def __init__(self, root: Path):
        from distributed import Client

        self.root = root
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.nannies: dict[str, subprocess.Popen] = {}
        env = dict(os.environ, GUILD_HOME=str(root / "worker-guild-home"))
        env.pop("GUILD_DASK_SCHEDULER", None)
        bindir = Path(sys.executable).parent
        dask = [str(bindir / "dask")] if (bindir / "dask").exists() else None

        def spawn(args, log):
            cmd = (dask + args) if dask else [
                sys.executable, "-m", f"distributed.cli.dask_{args[0]}", *args[1:],
            ]
            p = subprocess.Popen(
                cmd, cwd=root, env=env, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=open(root / log, "wb"), stderr=subprocess.STDOUT,
            )
            self.procs.append(p)
            return p

        try:
            spawn(["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard",
                   "--dashboard-address", "127.0.0.1:0"], "scheduler.log")
            for name, extra in (("gpu", ["--resources", "gpu=1"]), ("cpu", [])):
                self.nannies[name] = spawn(
                    ["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                     "--name", name, "--local-directory", str(root / f"w-{name}"), *extra],
                    f"worker-{name}.log",
                )
            wait_for(lambda: _accepts(self.port), timeout=30, what="the Dask scheduler")
            self.client = Client(self.address, timeout=20, set_as_default=False)
            self.ready()
        except BaseException:
            self.kill()
            raise

    def ready(self) -> None:
        """Until both workers are connected (a killed one restarts)."""
        self.client.wait_for_workers(2, timeout=40)
        wait_for(lambda: all(self.worker_pids(n) for n in self.nannies), timeout=30, what="worker processes")

    def worker_pids(self, name: str | None = None) -> set[int]:
        """The worker processes (children of the nannies) now."""
        out = set()
        for n, nanny in self.nannies.items():
            if name is None or n == name:
                try:
                    out.update(c.pid for c in psutil.Process(nanny.pid).children())
                except psutil.NoSuchProcess:
                    pass
        return out

    def kill(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            try:
                client.close(timeout=5)
            except Exception:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask-cluster"))
    yield c
    c.kill()


@pytest.fixture
def addr(cluster, monkeypatch):
    """The cluster's address, both its workers up; the client sees no
    GUILD_DASK_SCHEDULER and no OMP_NUM_THREADS unless a test sets them."""
    cluster.ready()
    monkeypatch.delenv("GUILD_DASK_SCHEDULER", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return cluster.address


def runs(home: Path) -> list[Run]:
    return runs_in(home / "runs") if (home / "runs").is_dir() else []


def trials(home: Path) -> list[Run]:
    return [r for r in runs(home) if r.op_name == "s.py"]


def batches(home: Path) -> list[Run]:
    return [r for r in runs(home) if r.op_name == "s.py+"]


def supervisors(run: Run) -> list[int]:
    """The supervisor pids the trial printed, one per start."""
    out = run.guild_path("output").read_text() if run.guild_path("output").exists() else ""
    return [int(line.split()[3]) for line in out.splitlines() if line.startswith("x ")]


def omp(run: Run) -> str:
    out = run.guild_path("output").read_text()
    return [line.split()[5] for line in out.splitlines() if line.startswith("x ")][-1]


def status(run: Run) -> str:
    return Run(run.id, run.path).status


# ---------------------------------------------------------------------
# Batches on the cluster
# ---------------------------------------------------------------------


def test_batch_runs_its_trials_on_the_workers_two_at_once(sh, guild_home, project, addr, cluster):
    project.write("s.py", SCRIPT)
    r = sh("run", "s.py", "x=[1,2,3,4]", "secs=1", "--dask", addr, "-y")
    assert r.exit_code == 0, r.stderr
    assert f"Running trials on the Dask scheduler at {addr} (2 workers, 2 at once)" in r.output
    ts = trials(guild_home)
    assert sorted(Run(t.id, t.path).get("flags")["x"] for t in ts) == [1, 2, 3, 4]
    assert [status(t) for t in ts] == ["completed"] * 4
    [batch] = batches(guild_home)
    assert status(batch) == "completed"
    workers = cluster.worker_pids()
    for t in ts:
        # Supervised by a worker process, not by this guild; and the
        # scheduler printed each trial's output, prefixed.
        [pid] = supervisors(t)
        assert pid in workers
        assert f"[{t.short_id}] x " in r.output
    assert most_at_once(ts) == 2
    assert "Traceback" not in r.stderr


def test_scheduler_from_env_and_trials_see_the_clients_omp_num_threads(sh, guild_home, project, addr):
    project.write("s.py", SCRIPT)
    # The nanny sets OMP_NUM_THREADS=1 for its worker: a trial must see
    # what the submitting shell has (unset here), not that.
    r = sh("run", "s.py", "x=[1,2]", "secs=0", "--dask", "-y", env={"GUILD_DASK_SCHEDULER": addr})
    assert r.exit_code == 0, r.stderr
    assert f"the Dask scheduler at {addr}" in r.output
    assert sorted(omp(t) for t in trials(guild_home)) == ["None", "None"]
    r = sh("run", "s.py", "x=[3,4]", "secs=0", "--dask", addr, "-y", env={"OMP_NUM_THREADS": "3"})
    assert r.exit_code == 0, r.stderr
    assert sorted(omp(t) for t in trials(guild_home)) == ["3", "3", "None", "None"]


def test_dask_alone_starts_a_local_cluster(sh, guild_home, project, monkeypatch):
    monkeypatch.delenv("GUILD_DASK_SCHEDULER", raising=False)
    project.write("s.py", SCRIPT)
    r = sh("run", "s.py", "x=[1,2]", "secs=0", "--dask", "--workers", "2", "-y")
    assert r.exit_code == 0, r.stderr
    assert "Running trials on a local Dask cluster (2 workers, 2 at once)" in r.output
    ts = trials(guild_home)
    assert [status(t) for t in ts] == ["completed"] * 2
    pids = {pid for t in ts for pid in supervisors(t)}
    assert os.getpid() not in pids
    # The cluster closed with the batch: its workers are gone.
    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), timeout=10, what="local workers gone")


def test_each_submission_is_its_own_task(guild_home, project, addr, sh):
    """pure=False, own keys: the same trial submitted twice is two tasks
    (Dask's default keys, from the arguments, would make it one); the
    second finds the trial claimed and reports the first one's end."""
    from guild_core.plugins import get_plugin_manager
    from guild_core.registry import Registry
    from guild_core.scheduler import ExecutorContext

    project.write("s.py", SCRIPT)
    assert sh("run", "s.py", "secs=1", "--stage", "-y").exit_code == 0
    [run] = trials(guild_home)
    said: list[str] = []
    ex = Registry(get_plugin_manager()).executor("dask").value(
        ExecutorContext(workers=None, address=addr, resources={}, say=said.append)
    )
    try:
        assert ex.slots == 2 and ex.shows_output is False
        ex.submit(run)
        # Again once it runs (an attempt claims it a moment before it
        # records its supervisor).
        wait_for(lambda: Run(run.id, run.path).supervisor(), timeout=20, what="the trial running")
        ex.submit(run)
        prefix = f"guild-trial-{run.id}-"

        def tasks():
            return ex.client.run_on_scheduler(
                lambda dask_scheduler: sorted(str(k) for k in dask_scheduler.tasks if str(k).startswith(prefix))
            )

        # (The scheduler hears of submissions a moment later.)
        assert len(wait_for(lambda: len(tasks()) == 2 and tasks(), timeout=10, what="two tasks")) == 2
        ended = []
        deadline = time.time() + 30
        while len(ended) < 2 and time.time() < deadline:
            ended += ex.wait(0.2)
        assert [(r.id, st) for r, st in ended] == [(run.id, 0), (run.id, 0)], said
    finally:
        ex.close()
    assert status(run) == "completed"
    assert len(supervisors(run)) == 1  # ran once


def test_guild_stop_terminates_the_trials_and_leaves_the_workers(sh, guild_home, project, addr, cluster, group):
    project.write("s.py", SCRIPT)
    workers = cluster.worker_pids()
    p = spawn(group, "run", "s.py", "x=[1,2,3]", "secs=60", "--dask", addr, "-y")
    wait_for(lambda: [status(t) for t in trials(guild_home)].count("running") == 2, timeout=30, what="two running")
    running = [t for t in trials(guild_home) if status(t) == "running"]
    scripts = [Run(t.id, t.path).run_process() for t in running]
    [batch] = batches(guild_home)
    stopped = sh("stop", batch.id, "-y")
    assert stopped.exit_code == 0, stopped.stderr
    out, err = p.communicate(timeout=30)
    assert p.returncode != 0
    assert "Traceback" not in err, err
    assert sorted(status(t) for t in running) == ["terminated", "terminated"]
    assert "running" not in [status(t) for t in trials(guild_home)]
    assert status(batch) == "terminated"
    assert not any(procs.alive(s) for s in scripts)
    # Stopped through their scripts: the workers themselves lived on.
    assert cluster.worker_pids() == workers


def test_guild_stop_of_one_trial_stops_its_script_not_its_worker(sh, guild_home, project, addr, cluster, group):
    project.write("s.py", SCRIPT)
    workers = cluster.worker_pids()
    p = spawn(group, "run", "s.py", "x=[1,2]", "secs=60", "--dask", addr, "-y")
    wait_for(lambda: [status(t) for t in trials(guild_home)].count("running") == 2, timeout=30, what="two running")
    one, other = trials(guild_home)
    script = Run(one.id, one.path).run_process()
    stopped = sh("stop", one.id, "-y")
    assert stopped.exit_code == 0, stopped.stderr
    wait_for(lambda: status(one) == "terminated", timeout=20, what="the trial terminated")
    assert not procs.alive(script)
    # The worker that ran it lives, and so do the batch and its other trial.
    assert cluster.worker_pids() == workers
    assert status(other) == "running" and p.poll() is None
    assert sh("stop", other.id, "-y").exit_code == 0
    p.communicate(timeout=30)
    assert status(other) == "terminated"


def test_a_killed_worker_leaves_its_trial_terminated_and_restart_reruns_it(sh, guild_home, project, addr, cluster, group):
    project.write("s.py", SCRIPT)
    p = spawn(group, "run", "s.py", "x=[1,2,3]", "secs=3", "--dask", addr, "-y")

    def victim():
        for t in trials(guild_home):
            rec = Run(t.id, t.path)._recorded_processes() or {}
            if "supervisor" in rec and procs.alive(rec.get("run")):
                return t, rec
        return None

    trial, rec = wait_for(victim, timeout=30, what="a trial running on a worker")
    assert rec["supervisor"].pid in cluster.worker_pids()
    os.kill(rec["supervisor"].pid, signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert status(trial) in ("terminated", "error")
    assert not procs.alive(rec["run"])  # its script was stopped with it
    others = [t for t in trials(guild_home) if t.id != trial.id]
    assert [status(t) for t in others] == ["completed"] * 2
    [batch] = batches(guild_home)
    assert status(batch) != "running"
    before = {t.id: span(t)[0] for t in others}
    cluster.ready()  # the nanny restarted the killed worker
    r = sh("run", "--restart", batch.id, "--needed", "-y", "--dask", addr)
    assert r.exit_code == 0, r.stderr
    assert status(trial) == "completed"
    assert {t.id: span(t)[0] for t in others} == before  # not run again
    assert sorted(t.id for t in trials(guild_home)) == sorted([trial.id, *before])


def test_resources_send_trials_to_the_worker_that_has_them(sh, guild_home, project, addr, cluster):
    project.write("s.py", SCRIPT)
    r = sh("run", "s.py", "x=[1,2]", "secs=0.5", "--dask", addr, "--dask-resources", "gpu=1", "-y")
    assert r.exit_code == 0, r.stderr
    assert "1 at once, each trial needing gpu=1" in r.output
    gpu = cluster.worker_pids("gpu")
    ts = trials(guild_home)
    assert all(supervisors(t)[0] in gpu for t in ts)
    assert most_at_once(ts) == 1
    # The operation's own dask-resources, when --dask-resources is not given.
    project.write("guild.yml", """
    train:
      main: s
      flags:
        x: 1
        secs: 0
      dask-resources:
        gpu: 1
    """)
    r = sh("run", "train", "x=[5,6]", "--dask", addr, "-y")
    assert r.exit_code == 0, r.stderr
    ts = [t for t in runs(guild_home) if t.op_name == "train"]
    assert len(ts) == 2 and all(supervisors(t)[0] in gpu for t in ts)
    # Nobody has tpu: said at once, nothing written.
    n = len(runs(guild_home))
    r = sh("run", "s.py", "x=[1,2]", "--dask", addr, "--dask-resources", "tpu=1", "-y")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        f"guild: no worker of the Dask scheduler at {addr} has resources tpu=1 (start one with dask worker --resources)"
    ]
    assert len(runs(guild_home)) == n


def test_dask_resources_in_guild_yml_is_checked(sh, guild_home, project):
    project.write("s.py", SCRIPT)
    project.write("guild.yml", """
    train:
      main: s
      dask-resources: gpu
    """)
    r = sh("run", "train", "-y")
    assert r.exit_code == 1
    assert "dask-resources must be a mapping of resource names to positive numbers" in r.stderr
    assert "guild.yml:3" in r.stderr


# ---------------------------------------------------------------------
# dask:queue
# ---------------------------------------------------------------------


def test_dask_queue_starts_staged_runs_on_the_cluster(sh, guild_home, project, addr, cluster):
    project.write("s.py", SCRIPT)
    assert sh("run", "s.py", "x=1", "--stage", "-y").exit_code == 0
    assert sh("run", "s.py", "x=2", "--stage", "-y", "--tag", "dask:gpu=1").exit_code == 0
    assert sh("run", "s.py", "x=3", "--stage", "-y", "--tag", "dask:tpu=1").exit_code == 0
    r = sh("run", "dask:queue", f"scheduler={addr}", "run-once=yes", "poll-interval=1", "-y")
    assert r.exit_code == 0, r.stderr
    by_x = {Run(t.id, t.path).get("flags")["x"]: t for t in trials(guild_home)}
    assert status(by_x[1]) == "completed" and status(by_x[2]) == "completed"
    assert status(by_x[3]) == "staged"  # no worker has tpu
    assert f"Ignoring staged run {by_x[3].id} (no Dask worker has resources tpu=1)" in r.output
    assert supervisors(by_x[2])[0] in cluster.worker_pids("gpu")
    assert supervisors(by_x[1])[0] in cluster.worker_pids()
    [q] = [x for x in runs(guild_home) if x.op_name == "dask:queue"]
    assert status(q) == "completed"
    assert "dask:queue" in sh("runs").output


# ---------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------


def test_unreachable_scheduler_is_one_line_and_writes_nothing(sh, guild_home, project, monkeypatch):
    monkeypatch.delenv("GUILD_DASK_SCHEDULER", raising=False)
    project.write("s.py", SCRIPT)
    port = free_port()  # nobody listens there
    r = sh("run", "s.py", "x=[1,2]", "--dask", f"tcp://127.0.0.1:{port}", "-y")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        f"guild: cannot reach Dask scheduler at tcp://127.0.0.1:{port}: connection refused"
    ]
    root = guild_home / "runs"
    assert not root.exists() or list(root.iterdir()) == []


def test_disabled_plugin_means_no_dask_executor(sh, guild_home, project):
    project.write("s.py", SCRIPT)
    r = sh("run", "s.py", "x=[1,2]", "--dask", "tcp://127.0.0.1:1", "-y", env={"GUILD_DISABLE_PLUGINS": "dask"})
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "guild: no executor 'dask': the plugin that provides it is not installed or is disabled",
        "Plugin 'dask' is disabled by GUILD_DISABLE_PLUGINS.",
    ]
    assert "Traceback" not in r.stderr
    assert runs(guild_home) == []
    assert "dask" in sh("plugins").output.split()


def test_missing_dask_says_what_to_install(monkeypatch):
    import guild_dask
    from guild_core.errors import GuildError
    from guild_core.scheduler import ExecutorContext

    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(GuildError) as e:
        guild_dask._factory(ExecutorContext(workers=None, address=None, resources={}, say=print))
    assert "pip install 'guild[dask]'" in (e.value.hint or "")


def test_importing_the_plugin_imports_no_dask():
    code = "import sys, guild_dask; print('dask' in sys.modules, 'distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_worker_that_cannot_see_the_run_reports_one_line(tmp_path, addr):
    """No shared file system (not built): the task says so in one line,
    and the batch counts the trial failed."""
    import guild_dask
    from guild_core.scheduler import ExecutorContext

    missing = tmp_path / "elsewhere" / "0123456789abcdef"
    status, msg = guild_dask.run_trial(str(missing), {})
    assert status == "error"
    assert msg.startswith(f"run directory {missing} is not on host ")
    said: list[str] = []
    ex = guild_dask._factory(ExecutorContext(workers=None, address=addr, resources={}, say=said.append))
    try:
        ex.submit(Run(missing.name, missing))
        ended = []
        deadline = time.time() + 20
        while not ended and time.time() < deadline:
            ended += ex.wait(0.2)
    finally:
        ex.close()
    assert [(r.id, st) for r, st in ended] == [(missing.name, 1)]
    assert said == [f"Trial {missing.name[:8]}: {msg}"]
