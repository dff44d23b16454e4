"""Named fault-injection points, so tests can crash guild at each step.

Code that moves, copies, extracts or records runs calls
``faults.point("store.move.renamed")`` between its steps. Normally that
is one comparison against None. With ``GUILD_FAULTS`` set, as in::

    GUILD_FAULTS="store.remove.hidden=kill"
    GUILD_FAULTS="runner.output.write=enospc@3,archive.write.entry=eio"

the process acts at that point: ``kill`` sends itself SIGKILL (a
``kill -9`` at exactly that moment), ``enospc`` and ``eio`` raise the
OSError a full or failing disk raises, ``sleep:SECS`` holds the process
there (to widen a race window a test wants to look into). ``@N`` acts
on the Nth time the point is reached (default: the first). Names are ``module.step``; a test
(``tests/test_faults.py``) finds every point in the source and crashes
each one.
"""

from __future__ import annotations

import errno
import os
import signal

_SPEC = os.environ.get("GUILD_FAULTS") or None
_PLAN: dict[str, tuple[str, int]] | None = None
_HITS: dict[str, int] = {}


def point(name: str) -> None:
    """A step where a fault may be injected (see the module docstring)."""
    if _SPEC is None:
        return
    _maybe_fail(name)


def _plan() -> dict[str, tuple[str, int]]:
    global _PLAN
    if _PLAN is None:
        _PLAN = {}
        for item in (_SPEC or "").split(","):
            name, _, action = item.strip().partition("=")
            action, _, nth = action.partition("@")
            if name and action:
                _PLAN[name] = (action, int(nth) if nth.isdigit() else 1)
    return _PLAN


def _maybe_fail(name: str) -> None:
    planned = _plan().get(name)
    if planned is None:
        return
    action, nth = planned
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    elif action == "eio":
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    elif action.startswith("sleep:"):
        import time

        time.sleep(float(action[len("sleep:"):]))
