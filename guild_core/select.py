"""Run selection: RUN arguments resolved against a list of runs.

A RUN is a full id, a unique id prefix, a 1-based index into the list
(1 is the newest) or a ``START:END`` range of indexes (either end
optional, inclusive). Every command that takes runs resolves them here.
"""

from __future__ import annotations

import re

from . import home
from .errors import NoSuchRun
from .run import Run, runs_in

_RANGE_P = re.compile(r"^(\d*):(\d*)$")


def all_runs(deleted: bool = False) -> list[Run]:
    root = home.trash_runs_dir() if deleted else home.runs_dir()
    return runs_in(root)


def select(runs: list[Run], specs: list[str]) -> list[Run]:
    """The runs named by `specs`, in list order, each at most once."""
    chosen: dict[str, Run] = {}
    for spec in specs:
        for run in _resolve(runs, spec):
            chosen.setdefault(run.id, run)
    order = {run.id: i for i, run in enumerate(runs)}
    return sorted(chosen.values(), key=lambda r: order[r.id])


def select_one(runs: list[Run], spec: str | None) -> Run:
    """One run: `spec`, or the newest when `spec` is None."""
    if spec is None:
        if not runs:
            raise NoSuchRun("no matching runs")
        return runs[0]
    matches = _resolve(runs, spec)
    if len(matches) > 1:
        raise NoSuchRun(f"'{spec}' matches {len(matches)} runs, expected one")
    return matches[0]


def _resolve(runs: list[Run], spec: str) -> list[Run]:
    spec = spec.strip()
    m = _RANGE_P.match(spec)
    if m:
        start = int(m.group(1)) if m.group(1) else 1
        end = int(m.group(2)) if m.group(2) else len(runs)
        if start < 1 or start > end:
            raise NoSuchRun(f"invalid RUN range '{spec}'")
        return runs[start - 1 : end]
    if spec.isdigit() and len(spec) < 8:
        i = int(spec)
        if i < 1 or i > len(runs):
            raise NoSuchRun(f"could not find run for index {spec} ({len(runs)} runs)")
        return [runs[i - 1]]
    matches = [run for run in runs if run.id.startswith(spec)]
    if not matches:
        raise NoSuchRun(f"could not find run matching '{spec}'")
    if len(matches) > 1:
        ids = ", ".join(run.short_id for run in matches[:5])
        raise NoSuchRun(f"'{spec}' is ambiguous: it matches {len(matches)} runs ({ids})")
    return matches
