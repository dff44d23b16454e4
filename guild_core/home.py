"""GUILD_HOME layout: runs/, trash/runs/, cache/."""

from __future__ import annotations

import os
from pathlib import Path


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
