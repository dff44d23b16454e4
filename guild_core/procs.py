"""Which processes belong to a run, and signalling only those.

A pid alone proves nothing: pids are reused, and a LOCK file may name
any process at all (a stale file, a copied run, a hand-edited one). So
guild identifies a process by its pid *and* its start time, the kernel's
count of clock ticks since boot when it was created, which no later
process with the same pid can share. The process that starts a run
records that pair (an `Owner`) in the run's markers, and a run counts as
running, or may be signalled, only while a process with the very same
pair is alive.

Runs written by Guild AI 0.9 record only a pid; for those, a process
counts only if its environment names the run (``RUN_ID``, which Guild AI
and guild both set for a run's process).
"""

from __future__ import annotations

import os
import signal as signallib
from dataclasses import dataclass

# Linux pid_max is at most 2**22; anything outside a C int is no pid.
_MAX_PID = 2**31 - 1


@dataclass(frozen=True)
class Owner:
    """A process, exactly: its pid and its start time (an opaque token
    compared for equality)."""

    pid: int
    start: str

    def encode(self) -> str:
        return f"{self.pid} {self.start}"

    @classmethod
    def decode(cls, text: str) -> "Owner | None":
        parts = text.split()
        if len(parts) != 2:
            return None
        pid = parse_pid(parts[0])
        return cls(pid, parts[1]) if pid else None


def parse_pid(text: str) -> int | None:
    """A pid from marker text, or None for anything that is not one
    (``abc``, ``-1``, ``99999999999999999999``)."""
    text = text.strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if 0 < pid <= _MAX_PID else None


def _stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat after the command name, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces.
    return data[data.rfind(b")") + 2 :].split()


def start_token(pid: int) -> str | None:
    """`pid`'s start time as an opaque token, or None if there is no
    such live process."""
    if not 0 < pid <= _MAX_PID:
        return None
    fields = _stat(pid)
    if fields is not None:
        # state is field 3 of stat, starttime field 22 (1-based).
        if len(fields) < 20 or fields[0] in (b"Z", b"X"):
            return None
        return "t" + fields[19].decode()
    if os.path.isdir("/proc/self"):
        return None
    try:  # no procfs (macOS): psutil's create time, to the 10 ms
        import psutil

        return "c%.2f" % psutil.Process(pid).create_time()
    except Exception:
        return None


_current: Owner | None = None


def current() -> Owner:
    """This process."""
    global _current
    pid = os.getpid()
    if _current is None or _current.pid != pid:  # (a fork is another process)
        _current = Owner(pid, start_token(pid) or "")
    return _current


def owner_of(pid: int) -> Owner | None:
    """The live process `pid`, identified; None if there is none."""
    token = start_token(pid)
    return Owner(pid, token) if token else None


def alive(owner: Owner | None) -> bool:
    """Whether the very process `owner` names is still alive."""
    if owner is None or not owner.start:
        return False
    return start_token(owner.pid) == owner.start


def names_run(pid: int, run_id: str) -> bool:
    """Whether process `pid`'s environment says it is run `run_id`'s
    (how a Guild AI 0.9 run's pid is checked: it records no start time)."""
    if start_token(pid) is None:
        return False
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        try:
            import psutil

            return psutil.Process(pid).environ().get("RUN_ID") == run_id
        except Exception:
            return False
    return b"\0RUN_ID=" + run_id.encode() + b"\0" in b"\0" + env + b"\0"


def send(owner: Owner, signum: int) -> bool:
    """Send `signum` to `owner` if it is still that very process; False
    when it is gone. Where the kernel offers process handles (pidfd), the
    check and the signal are about one process, with no window for the
    pid to be reused between them."""
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(owner.pid)
        except OSError:
            pidfd = None
    try:
        # Checked after the handle is open: if this is still the
        # process, the handle is its, whatever happens to the pid later.
        if not alive(owner):
            return False
        try:
            if pidfd is not None:
                signallib.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(owner.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def send_group(owner: Owner, signum: int) -> bool:
    """`send`, to the whole process group `owner` leads (a run started
    in its own session); to `owner` alone when it leads none."""
    if not alive(owner):
        return False
    try:
        if os.getpgid(owner.pid) == owner.pid:
            os.killpg(owner.pid, signum)
            return True
    except (ProcessLookupError, PermissionError):
        return False
    return send(owner, signum)
