"""GUILD_HOME layout: runs/, trash/runs/, cache/, and the hidden names
of work in progress.

Work that must not be seen half done happens under a hidden name beside
the runs, renamed into place when complete:

- ``.tmp-TAG.PID.START``: a run being created, copied or extracted;
- ``.deleting-TAG.PID.START``: a run being removed;
- ``.moving-ID.PID.START`` (and its ``.dest`` note): a run on its way to
  another file system or into a zip archive.

``PID.START`` names the process doing the work (`procs.Owner`), so a
later command can tell a leftover of a killed guild, which it cleans up,
from work still under way, which it leaves alone (`store.sweep`).
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_PREFIX = ".tmp-"
DELETING_PREFIX = ".deleting-"
MOVING_PREFIX = ".moving-"
LEFTOVER_PREFIXES = (TMP_PREFIX, DELETING_PREFIX, MOVING_PREFIX)


def guild_home() -> Path:
    """The Guild home: $GUILD_HOME, else ~/.guild."""
    env = os.environ.get("GUILD_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return Path.home() / ".guild"


def runs_dir() -> Path:
    return guild_home() / "runs"


def trash_runs_dir() -> Path:
    return guild_home() / "trash" / "runs"


def cache_dir(name: str) -> Path:
    """A cache subdirectory, e.g. ``cache_dir("flags")``; not created."""
    return guild_home() / "cache" / name


def hidden_name(prefix: str, tag: str) -> str:
    """A hidden name for work on `tag` (usually a run id) by this
    process."""
    from . import procs

    return f"{prefix}{tag}.{procs.current().encode().replace(' ', '.')}"


def hidden_owner(name: str):
    """``(tag, owner)`` of a hidden name, owner None when the name
    records none (written by an older guild)."""
    from . import procs

    for prefix in LEFTOVER_PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            break
    else:
        return name, None
    if rest.endswith(".dest"):
        rest = rest[: -len(".dest")]
    parts = rest.rsplit(".", 2)
    if len(parts) == 3:
        owner = procs.Owner.decode(f"{parts[1]} {parts[2]}")
        if owner is not None:
            return parts[0], owner
    return rest, None
