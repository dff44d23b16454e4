"""The Dask executor: trials as Dask tasks (``--dask``, ``dask:queue``).

Imported only when an executor is made; Dask is imported here, in
functions, so a guild without the dask extra still loads the plugin
and says what to install when ``--dask`` is used.

The traps, and what is done about each:

- Dask keys tasks by their arguments (``pure=True``): the same trial
  submitted twice would be one task. Every submission gets its own key,
  ``guild-trial-<run id>-<uuid>``, with ``pure=False``.
- Cancelling a future does not stop a running task, and a trial's
  supervisor is a worker thread that no signal reaches: `stop` signals
  each trial's script (its process group) on whichever worker runs it
  (``Client.run``), and the supervising thread records it terminated.
  Trials not started yet are claimed here first, then cancelled, so no
  worker starts them afterwards.
- A worker that dies leaves its trial's script running (trials lead
  their own session) and Dask retries the task elsewhere: the retry's
  ``execute`` finds the trial claimed and settles it (stops the orphan's
  group, records it terminated).
- A worker's nanny sets OMP_NUM_THREADS=1 and friends for the worker
  process; trials get this process's values instead (`base_env`). With
  a local cluster they are read before the cluster starts, since the
  nanny also sets them in the process that starts it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

from guild_core import executors
from guild_core.errors import GuildError
from guild_core.run import Run

ADDRESS_ENV = "GUILD_DASK_SCHEDULER"
CONNECT_TIMEOUT = 10.0
LOCAL_WORKERS = 2
STOP_TIMEOUT = 10.0
CALL_TIMEOUT = 5.0
INSTALL_HINT = "Install guild's dask extra: pip install 'guild[dask]'"
# What a nanny sets for its worker process, whatever its config says.
NANNY_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")
TAG_PREFIX = "dask:"
_RESIGNAL_INTERVAL = 0.5


def base_env() -> dict[str, str | None]:
    """This process's value (None: unset) of every name a Dask nanny
    sets for its workers, for trials to see instead of the worker's."""
    import dask

    names = set(NANNY_ENV)
    for key in ("distributed.nanny.pre-spawn-environ", "distributed.nanny.environ"):
        try:
            names.update(str(n) for n in (dask.config.get(key) or {}))
        except (KeyError, TypeError, AttributeError):
            pass
    return {name: os.environ.get(name) for name in sorted(names)}


def parse_resources(text: str, what: str) -> dict[str, float]:
    """``NAME=N [NAME=N ...]`` (a ``dask:`` tag's text) as resources."""
    import shlex

    out = {}
    try:
        parts = shlex.split(text)
    except ValueError:
        parts = [text]
    for part in parts:
        name, sep, amount = part.partition("=")
        try:
            value = float(amount) if sep else 1.0
        except ValueError:
            value = -1.0
        if not name.strip() or value <= 0:
            raise GuildError(f"invalid Dask resources {what} {text!r}: expected NAME=N, as gpu=1")
        out[name.strip()] = value
    return out


def run_resources(run: Run) -> dict[str, float]:
    """The resources a run's ``dask:NAME=N`` tags ask for (Guild AI's
    form for staged runs)."""
    out: dict[str, float] = {}
    for tag in run.get("tags") or []:
        if isinstance(tag, str) and tag.startswith(TAG_PREFIX):
            out.update(parse_resources(tag[len(TAG_PREFIX):], f"in tag of run {run.id}:"))
    return out


def describe_resources(resources: dict[str, float]) -> str:
    return " ".join(f"{n}={v:g}" for n, v in sorted(resources.items()))


class DaskExecutor:
    """`guild_core.hookspecs.Executor` on a Dask cluster."""

    shows_output = False

    def __init__(self, ctx):
        self.ctx = ctx
        self.say = ctx.say
        self.resources = {str(n): float(v) for n, v in (ctx.resources or {}).items()}
        self.cluster = None
        self.client = None
        # key -> (future, run), submitted and not reported yet
        self._futures: dict[str, tuple[Any, Run]] = {}
        self._ended: list[tuple[Run, int]] = []
        self._stop_signum: int | None = None
        self._stop_since: float | None = None
        self._last_stop_step = 0.0
        self._signalled: dict[str, int] = {}
        self._closed = False
        try:
            import dask  # noqa: F401
            import distributed  # noqa: F401
        except ImportError:
            raise GuildError("--dask needs Dask, which is not installed", hint=INSTALL_HINT) from None
        self.base_env = base_env()
        address = ctx.address or os.environ.get(ADDRESS_ENV) or None
        if address:
            self.address = address
            self.client = _connect(address)
            try:
                self._check_workers()
            except BaseException:
                self.client.close()
                raise
        else:
            self._start_local_cluster()
        self.slots = self._slots()

    # -- connecting -----------------------------------------------------

    def _start_local_cluster(self) -> None:
        import logging

        from distributed import Client, LocalCluster

        n = self.ctx.workers or LOCAL_WORKERS
        try:
            with _sigint_ignored():
                # Its worker processes start with SIGINT ignored: Ctrl-C
                # reaches the terminal's whole process group, and stops
                # trials through `stop`, not by killing the workers.
                self.cluster = LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                    # No dashboard; the scheduler's HTTP endpoints on any
                    # free port (8787 may be another cluster's).
                    dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                    silence_logs=logging.ERROR,
                    # Each local worker offers what a trial needs: trials
                    # asking for resources still run, one per worker.
                    resources=self.resources or None,
                )
            # Its nannies set their names in this process too; undone,
            # so nothing else this process starts inherits them.
            for name, value in self.base_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self.client = Client(self.cluster, set_as_default=False)
        except Exception as e:  # noqa: BLE001 - one line for the user
            if self.cluster is not None:
                self.cluster.close()
            raise GuildError(f"cannot start a local Dask cluster: {_one_line(e)}") from None
        self.address = self.cluster.scheduler_address

    def _workers(self) -> dict[str, dict]:
        kwargs = {"n_workers": -1} if _takes_n_workers() else {}
        return self.client.scheduler_info(**kwargs).get("workers") or {}

    def _check_workers(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while not self._workers():
            if time.monotonic() > deadline:
                raise GuildError(f"the Dask scheduler at {self.address} has no workers")
            time.sleep(0.1)
        if self.resources and not self._offered(self.resources):
            raise GuildError(
                f"no worker of the Dask scheduler at {self.address} has resources "
                f"{describe_resources(self.resources)} (start one with dask worker --resources)"
            )

    def _offered(self, resources: dict[str, float]) -> bool:
        return any(_fits(w, resources) for w in self._workers().values())

    def _slots(self) -> int:
        if self.ctx.workers:
            return max(1, int(self.ctx.workers))
        total = 0
        for w in self._workers().values():
            threads = int(w.get("nthreads") or 1)
            if self.resources:
                have = w.get("resources") or {}
                if not _fits(w, self.resources):
                    continue
                threads = min(threads, *(int(have[n] // v) for n, v in self.resources.items()))
            total += threads
        return max(1, total)

    def describe(self) -> str:
        n = len(self._workers())
        workers = f"{n} worker{'s' if n != 1 else ''}"
        where = "a local Dask cluster" if self.cluster is not None else f"the Dask scheduler at {self.address}"
        need = f", each trial needing {describe_resources(self.resources)}" if self.resources else ""
        return f"{where} ({workers}, {self.slots} at once{need})"

    # -- trials ---------------------------------------------------------

    def submit(self, run: Run) -> None:
        import guild_dask

        resources = {**self.resources, **run_resources(run)}
        if resources and resources != self.resources and not self._offered(resources):
            raise GuildError(f"no Dask worker has resources {describe_resources(resources)}")
        key = f"guild-trial-{run.id}-{uuid.uuid4().hex}"
        future = self.client.submit(
            guild_dask.run_trial, str(run.path), self.base_env,
            key=key, pure=False, resources=resources or None,
        )
        self._futures[key] = (future, run)

    def wait(self, timeout: float) -> list[tuple[Run, int]]:
        from distributed import wait as dask_wait

        self._stop_step()
        ended, self._ended = self._ended, []
        pending = [f for f, _run in self._futures.values()]
        if not pending and not ended:
            time.sleep(min(timeout, 0.1))
            return []
        if pending and not ended and not any(f.done() for f in pending):
            try:
                dask_wait(pending, timeout=max(timeout, 0.01), return_when="FIRST_COMPLETED")
            except Exception:  # noqa: BLE001 - a timeout: nothing ended
                pass
        for key, (future, run) in list(self._futures.items()):
            if future.done():
                del self._futures[key]
                ended.append((run, self._status_of(future, run)))
        return ended

    def _status_of(self, future, run: Run) -> int:
        status = future.status
        if status == "finished":
            try:
                result = future.result()
            except Exception as e:  # noqa: BLE001 - lost since
                self.say(f"Trial {run.short_id}: {_one_line(e)}")
                return self._conclude(run, -int(signal.SIGTERM))
            if isinstance(result, tuple) and result[:1] == ("error",):
                self.say(f"Trial {run.short_id}: {result[1]}")
                return self._conclude(run, 1)
            return int(result)
        if status == "error":
            try:
                exc = future.exception()
            except Exception as e:  # noqa: BLE001
                exc = e
            if type(exc).__name__ == "KilledWorker":
                self.say(f"Trial {run.short_id}: its Dask workers died running it")
                return self._conclude(run, -int(signal.SIGTERM))
            self.say(f"Trial {run.short_id}: {type(exc).__name__}: {_one_line(exc)}")
            return self._conclude(run, 1)
        # Cancelled (by stop, or by another client) or lost.
        return self._conclude(run, -int(signal.SIGTERM))

    def _conclude(self, run: Run, default: int) -> int:
        """The end of a trial whose task gave no exit status: `default`
        when no attempt ever claimed it (none will now), else what
        `executors.settle` makes of the attempt."""
        fresh = Run(run.id, run.path)
        try:
            mine = executors.claim(fresh)
        except OSError:
            return default  # its directory is gone
        if not mine:
            return executors.settle(fresh)
        return _record_end(fresh, default)

    # -- stopping -------------------------------------------------------

    def stop(self, signum: int) -> None:
        """Called from a signal handler: noted here, acted on by the next
        `wait` (or `close`), outside the handler."""
        if self._stop_signum is None:
            self._stop_signum = int(signum)
            self._stop_since = time.monotonic()
            self._last_stop_step = 0.0

    def _stop_step(self) -> None:
        """While stopping: trials not started are claimed and cancelled;
        started ones get SIGTERM (again for any whose script started
        since), SIGKILL after `STOP_TIMEOUT`; a trial whose task still
        has not ended after twice that is reported as it stands."""
        if self._stop_signum is None:
            return
        now = time.monotonic()
        if now - self._last_stop_step < _RESIGNAL_INTERVAL:
            return
        self._last_stop_step = now
        started = []
        for key, (future, run) in list(self._futures.items()):
            if future.done():
                continue
            if _claim(run):
                # Not started anywhere, and now never will be.
                del self._futures[key]
                future.cancel()
                self._ended.append((run, _record_end(Run(run.id, run.path), -int(signal.SIGTERM))))
            elif Run(run.id, run.path).get("exit_status") is None:
                started.append(run)
        waited = now - (self._stop_since or now)
        if waited > 2 * STOP_TIMEOUT:
            # Still no end from the cluster (its workers gone, say): the
            # batch is not kept waiting; what the trials recorded stands.
            for key, (future, run) in list(self._futures.items()):
                del self._futures[key]
                future.cancel()
                fresh = Run(run.id, run.path)
                status = fresh.get("exit_status")
                self._ended.append((run, int(status) if status is not None else _record_end(fresh, -int(signal.SIGTERM))))
            return
        signum = signal.SIGKILL if waited > STOP_TIMEOUT else signal.SIGTERM
        targets = [r for r in started if self._signalled.get(r.id) != signum]
        if targets:
            for run_dir in self._signal(targets, int(signum)):
                self._signalled[Run.for_dir(run_dir).id] = int(signum)

    def _signal(self, runs: list[Run], signum: int) -> set[str]:
        import guild_dask

        paths = [str(r.path) for r in runs]
        done: set[str] = set()
        try:
            results = self.client.run(
                guild_dask.signal_trials, paths, signum, on_error="return", callback_timeout=CALL_TIMEOUT,
            )
            for result in results.values():
                if isinstance(result, list):
                    done.update(result)
        except Exception:  # noqa: BLE001 - workers unreachable: this machine's below
            pass
        left = [p for p in paths if p not in done]
        if left:
            done.update(guild_dask.signal_trials(left, signum))
        return done

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._futures:
                # Closed with trials out (an error in the caller): they
                # are stopped, not left to run unsupervised.
                self.stop(signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT + 5
                while self._futures and time.monotonic() < deadline:
                    self.wait(0.2)
        finally:
            try:
                self.client.close()
            finally:
                if self.cluster is not None:
                    self.cluster.close()


class _sigint_ignored:
    """SIGINT ignored while in the block (processes started meanwhile
    keep ignoring it: Python leaves an ignored SIGINT ignored), in the
    main thread only."""

    def __enter__(self):
        import threading

        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _connect(address: str):
    from distributed import Client

    _probe(address)
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except Exception as e:  # noqa: BLE001 - one line for the user
        raise GuildError(f"cannot reach Dask scheduler at {address}: {_one_line(e)}") from None


def _probe(address: str) -> None:
    """A TCP address that refuses connections is said so at once (Dask
    would retry until its timeout)."""
    import socket

    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme != "tcp":
        return
    host, _, port = rest.rstrip("/").rpartition(":")
    try:
        port_num = int(port)
    except ValueError:
        raise GuildError(f"invalid Dask scheduler address {address!r}: expected tcp://HOST:PORT") from None
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", port_num), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise GuildError(f"cannot reach Dask scheduler at {address}: {reason.lower()}") from None


def _claim(run: Run) -> bool:
    try:
        return executors.claim(run)
    except OSError:
        return False


def _record_end(run: Run, status: int) -> int:
    run.clear_markers("PENDING")
    try:
        run.record_end(status)
    except Exception:  # noqa: BLE001 - the run may be gone
        pass
    return status


def _fits(worker: dict, resources: dict[str, float]) -> bool:
    have = worker.get("resources") or {}
    return all(float(have.get(n, 0)) >= v for n, v in resources.items())


_N_WORKERS: bool | None = None


def _takes_n_workers() -> bool:
    """Whether ``Client.scheduler_info`` lists only some workers unless
    asked for all (``n_workers=-1``, newer distributed)."""
    global _N_WORKERS
    if _N_WORKERS is None:
        import inspect

        from distributed import Client

        _N_WORKERS = "n_workers" in inspect.signature(Client.scheduler_info).parameters
    return _N_WORKERS


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
