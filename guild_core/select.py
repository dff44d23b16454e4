"""Run selection, for every command that takes runs.

Selection has two steps, always in this order:

1. `filter_runs` keeps the runs of a root (the home's runs, its trash,
   or an archive directory) that pass a `RunFilter`: the filter
   expression, operation, label, tag, comment, marked, start time,
   source digest and status filters.
2. `select` resolves RUN arguments against what is left: a full id, a
   unique id prefix, a 1-based index (1 is the newest) or a
   ``START:END`` range of indexes (either end optional, inclusive).

So ``guild runs info 1 -Sc -Fo train`` is the newest completed train run.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import home
from .errors import GuildError, NoSuchRun
from .run import Run, runs_in

if TYPE_CHECKING:
    from .filterexpr import Extensions

_RANGE_P = re.compile(r"^(\d*):(\d*)$")

STATUSES = ("running", "completed", "error", "terminated", "pending", "staged")


def runs_root(deleted: bool = False, archive: str | Path | None = None) -> Path:
    if archive is not None and deleted:
        raise GuildError("--archive and --deleted cannot both be used")
    if archive is not None:
        path = Path(archive).expanduser()
        if not path.is_dir():
            raise GuildError(f"archive directory '{archive}' does not exist")
        return path.absolute()
    return home.trash_runs_dir() if deleted else home.runs_dir()


def all_runs(deleted: bool = False, archive: str | Path | None = None) -> list[Run]:
    return runs_in(runs_root(deleted, archive))


@dataclass(frozen=True)
class RunFilter:
    """The filter options every run-taking command shares; all combine
    (and), and each multi-valued option matches any of its values."""

    expr: str | None = None
    operations: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    unlabeled: bool = False
    tags: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    marked: bool = False
    unmarked: bool = False
    started: str | None = None
    digest: str | None = None
    status_in: frozenset[str] = frozenset()
    status_not_in: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        return self == RunFilter()


def filter_runs(
    runs: list[Run],
    rf: RunFilter,
    extensions: "Extensions | None" = None,
    now: datetime.datetime | None = None,
) -> list[Run]:
    """The runs that pass `rf`, in their order. Raises GuildError for
    an invalid expression or time range before reading any run."""
    tests = _tests(rf, extensions, now)
    if not tests:
        return list(runs)
    from .runvalues import RunValues

    skip = None
    if rf.expr:
        from . import filterexpr, index

        # The run index answers what it can: runs it proves cannot
        # match are not read.
        skip = index.pushdown(runs, filterexpr.hint_of(tests[-1]))
    out = []
    for run in runs:
        if skip and run.id in skip:
            continue
        rv = RunValues(run)
        if all(test(rv) for test in tests):
            out.append(run)
    return out


def _tests(rf: RunFilter, extensions, now) -> list:
    if rf.labels and rf.unlabeled:
        raise GuildError("--label and --unlabeled cannot both be used")
    if rf.marked and rf.unmarked:
        raise GuildError("--marked and --unmarked cannot both be used")
    tests = []
    # Cheap tests first: status and attributes before flags and scalars.
    if rf.status_in:
        tests.append(lambda rv: rv.attr("status") in rf.status_in)
    if rf.status_not_in:
        tests.append(lambda rv: rv.attr("status") not in rf.status_not_in)
    if rf.operations:
        tests.append(lambda rv: any(_op_match(ref, rv.run.op_name) for ref in rf.operations))
    if rf.labels:
        tests.append(lambda rv: any(_label_match(val, _label(rv.run)) for val in rf.labels))
    if rf.unlabeled:
        tests.append(lambda rv: not _label(rv.run))
    if rf.tags:
        tests.append(lambda rv: any(tag in (rv.run.get("tags") or []) for tag in rf.tags))
    if rf.comments:
        tests.append(lambda rv: any(_comment_match(val, rv.run) for val in rf.comments))
    if rf.marked:
        tests.append(lambda rv: bool(rv.run.get("marked")))
    if rf.unmarked:
        tests.append(lambda rv: not rv.run.get("marked"))
    if rf.digest:
        tests.append(lambda rv: (rv.run.get("sourcecode_digest") or "").startswith(rf.digest))
    if rf.started:
        tests.append(_started_test(rf.started, now))
    if rf.expr:
        from . import filterexpr

        pred = filterexpr.parse(rf.expr, extensions or filterexpr.NO_EXTENSIONS)
        tests.append(pred)
    return tests


def _op_match(ref: str, op_name: str) -> bool:
    """The seed's rule (and Guild AI's): a run matches when any part of
    its full operation name (``model:op``) contains `ref` (``-Fo trai``
    matches ``train``). ``^...`` or ``...$`` is a regular expression;
    with ``*``, ``?`` or ``[...]`` it is a wildcard pattern each part
    given (``model:op``) must match (``t*``: operations starting with
    t)."""
    if ref.startswith("^") or ref.endswith("$"):
        try:
            return re.search(ref, op_name) is not None
        except re.error:
            return False
    if not any(c in ref for c in "*?["):
        return ref in op_name
    ref_model, _, ref_op = ref.rpartition(":")
    model, _, op = op_name.rpartition(":")
    for want, have in ((ref_model, model), (ref_op, op)):
        if want and (not have or not fnmatch.fnmatchcase(have, want)):
            return False
    return True


def _label(run: Run) -> str:
    return str(run.get("label") or "").strip()


def _label_match(val: str, label: str) -> bool:
    if val == "-":
        return not label
    return val in label


def _comment_match(val: str, run: Run) -> bool:
    comments = run.get("comments") or []
    text = "\n".join(
        "\n".join(str(c.get(k) or "").lower() for k in ("user", "host", "body"))
        for c in comments
        if isinstance(c, dict)
    )
    if val == "-":
        return not text
    return val.lower() in text


def _started_test(spec: str, now: datetime.datetime | None):
    from . import timerange

    try:
        rng = timerange.parse(spec, now or datetime.datetime.now())
    except timerange.TimeRangeError as e:
        raise GuildError(
            f"invalid RANGE: {e}", "See 'guild runs list --help' for valid time ranges."
        ) from None

    def test(rv) -> bool:
        started = rv.run.get("started")
        if not started:
            return False
        return timerange.contains(rng, datetime.datetime.fromtimestamp(started / 1e6))

    return test


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
        if 1 <= i <= len(runs):
            return [runs[i - 1]]
        # As in Guild AI, digits that are no index may be an id prefix.
        by_prefix = [run for run in runs if run.id.startswith(spec)]
        if not by_prefix:
            raise NoSuchRun(f"could not find run for index {spec} ({len(runs)} runs)")
        return _unique(by_prefix, spec)
    matches = [run for run in runs if run.id.startswith(spec)]
    if not matches:
        raise NoSuchRun(
            f"could not find a run matching '{spec}'",
            "Try 'guild runs list' for a list.",
        )
    return _unique(matches, spec)


def _unique(matches: list[Run], spec: str) -> list[Run]:
    if len(matches) > 1:
        ids = ", ".join(run.short_id for run in matches[:5])
        raise NoSuchRun(f"'{spec}' is ambiguous: it matches {len(matches)} runs ({ids})")
    return matches
