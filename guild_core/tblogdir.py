"""The log directory `guild tensorboard` serves: one symlink per run.

Each selected run appears as a link, named as Guild AI names runs for
TensorBoard (short id, operation, start time, label), that points at
the run directory. TensorBoard follows the link and reads every event
file below it: the scalars guild logged in ``RUN/.guild/`` and any
summaries (images, histograms, ...) the script wrote itself, each
directory holding event files being one TensorBoard run
(``NAME/.guild``, ``NAME/logs``...).

`LogDir.refresh` brings the links in line with the runs selected now:
new runs get a link, runs no longer selected (deleted, filtered out)
lose theirs, and a run whose name changed (a new label) is linked
again under its new name. Nothing but links is ever made or removed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import util
from .run import Run

# A file name's limit is 255 bytes on most file systems; a long label
# is cut, never the id at its start.
MAX_NAME_BYTES = 200

_UNSAFE_P = re.compile(r"[/\\]+")
# Control characters, and the ellipsis TensorBoard's UI chokes on (as
# Guild AI replaces it).
_BAD_CHARS_P = re.compile(r"[\x00-\x1f\x7f\u2026]")


def safe_name(text: str) -> str:
    """`text` usable as one file name: runs of ``/`` and ``\\`` become
    ``_``, control characters ``?``, and it is cut to `MAX_NAME_BYTES`."""
    name = _BAD_CHARS_P.sub("?", _UNSAFE_P.sub("_", text)).strip()
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_NAME_BYTES:
        name = encoded[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip()
    return name


def run_name(run: Run, label: str | None = None) -> str:
    """Guild AI's name of a run in TensorBoard: ``SHORT_ID OP STARTED
    [LABEL]`` (`label` instead of the run's own when given)."""
    if label is None:
        label = run.get("label") or ""
    parts = [run.short_id, run.op_name or "?", util.format_timestamp(run.get("started"))]
    if label:
        parts.append(str(label))
    return safe_name(" ".join(p for p in parts if p))


@dataclass
class Changes:
    """What one refresh did, by link name."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class LogDir:
    """The links in `path` for the runs `list_runs()` returns, named by
    `name(run)`."""

    def __init__(
        self,
        path: Path | str,
        list_runs: Callable[[], Iterable[Run]],
        name: Callable[[Run], str] = run_name,
    ):
        self.path = Path(path)
        self.list_runs = list_runs
        self.name = name

    def wanted(self, runs: Iterable[Run]) -> dict[str, str]:
        """``{link name: run directory}`` for `runs`; a name two runs
        would share is told apart by the second one's full id."""
        links: dict[str, str] = {}
        for run in runs:
            name = self.name(run) or run.id
            if name in links:
                name = safe_name(f"{name} {run.id}")
            links[name] = os.path.abspath(run.path)
        return links

    def current(self) -> dict[str, str]:
        """The links there now: ``{name: target}``."""
        found = {}
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return found
        for entry in entries:
            if entry.is_symlink():
                try:
                    found[entry.name] = os.readlink(entry.path)
                except OSError:
                    continue
        return found

    def refresh(self) -> Changes:
        """Make the links match the runs selected now."""
        wanted = self.wanted(self.list_runs())
        have = self.current()
        changes = Changes()
        for name, target in sorted(have.items()):
            if wanted.get(name) != target:
                try:
                    os.unlink(self.path / name)
                except FileNotFoundError:
                    pass
                changes.removed.append(name)
        self.path.mkdir(parents=True, exist_ok=True)
        for name, target in sorted(wanted.items()):
            if have.get(name) == target:
                continue
            try:
                os.symlink(target, self.path / name, target_is_directory=True)
            except FileExistsError:
                # Not a link of ours (made by hand?): left alone.
                continue
            changes.added.append(name)
        return changes


def event_dirs(top: Path | str) -> list[Path]:
    """The directories under `top` (itself included) that hold event
    files, in walk order; links are not followed."""
    from .tfevents import FILE_PREFIX

    found = []
    for root, dirs, files in os.walk(top):
        dirs.sort()
        if any(name.startswith(FILE_PREFIX) for name in files):
            found.append(Path(root))
    return found
