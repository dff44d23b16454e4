"""What a run's attributes, flags and scalars read as, in one place for
the filter language, `guild compare` and `guild select`.

Attributes are Guild AI 0.9's (``id``, ``run``, ``operation``,
``status``, ``started``/``stopped`` as text, ``time``...) and then any
attribute file. A scalar is summarized over its whole series as Guild
AI's run index does, so ``loss`` is its value at the highest step in a
filter and in a compare column alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from . import util
from .run import Run


@dataclass
class TagSummary:
    """A scalar series summarized as Guild AI's run index does: `first`
    is the value at the lowest step, `last` at the highest (the later
    record on a tie)."""

    first: tuple[float, int] | None = None
    last: tuple[float, int] | None = None
    min: tuple[float, int] | None = None
    max: tuple[float, int] | None = None
    total: float = 0.0
    count: int = 0

    def add(self, val: float, step: int) -> None:
        if self.first is None or step < self.first[1]:
            self.first = (val, step)
        if self.last is None or step >= self.last[1]:
            self.last = (val, step)
        if self.min is None or val < self.min[0]:
            self.min = (val, step)
        if self.max is None or val > self.max[0]:
            self.max = (val, step)
        self.total += val
        self.count += 1

    def get(self, qualifier: str | None, step: bool) -> Any:
        qual = qualifier or "last"
        if qual == "count":
            return self.count
        if qual == "total":
            return self.total
        if qual == "avg":
            return self.total / self.count if self.count else None
        pair = getattr(self, qual)
        if pair is None:
            return None
        return pair[1] if step else pair[0]


def summarize(guild_dir) -> dict[str, TagSummary]:
    """Tag -> summary of every scalar logged under a run's ``.guild``,
    in order of first appearance."""
    from . import tfevents

    summaries: dict[str, TagSummary] = {}
    for tag, val, step, _wall in tfevents.read_scalars(guild_dir):
        summ = summaries.get(tag)
        if summ is None:
            summ = summaries[tag] = TagSummary()
        summ.add(val, step)
    return summaries


class RunValues:
    """One run's values, each read at most once."""

    def __init__(self, run: Run, now: float | None = None):
        self.run = run
        self._now = now
        self._scalars: dict[str, TagSummary] | None = None
        self._attrs: dict[str, Any] = {}
        self._flags: dict[str, Any] | None = None

    def scalars(self) -> dict[str, TagSummary]:
        if self._scalars is None:
            from . import index

            summaries = index.scalar_summaries(self.run) if index_of(self.run) else None
            self._scalars = summaries if summaries is not None else summarize(self.run.guild_path())
        return self._scalars

    def scalar(self, key: str, qualifier: str | None = None, step: bool = False) -> Any:
        """``[PREFIX#]TAG``'s last value (or `qualifier`'s), None if
        never logged."""
        prefix, _, tag = key.rpartition("#")
        # Our runs log scalars in .guild only (Guild AI's prefix ".guild").
        if prefix and not ".guild".startswith(prefix):
            return None
        if self._scalars is None and index_of(self.run):
            from . import index

            # One tag, read for every run of a filter in one query.
            summ = index.tag_summary(self.run, tag)
            if summ is index.NO_INDEX:
                summ = self.scalars().get(tag)
        else:
            summ = self.scalars().get(tag)
        return summ.get(qualifier, step) if summ else None

    def flag(self, name: str) -> Any:
        if self._flags is None:
            if self.run.lacks_flag(name):
                return None
            flags = self.run.get("flags")
            self._flags = flags if isinstance(flags, dict) else {}
        return self._flags.get(name)

    def attr(self, name: str) -> Any:
        try:
            return self._attrs[name]
        except KeyError:
            pass
        compute = _COMPUTED.get(name)
        if compute is not None:
            val = compute(self)
        elif "/" in name or name.startswith(".") or name in ("flags", "attrs"):
            val = None
        else:
            val = self.run.get(name)
        self._attrs[name] = val
        return val


def index_of(run: Run) -> bool:
    """Whether `run`'s scalar summaries may come from the run index."""
    from . import index

    return index.is_indexed(run)


def _opref_part(part: str):
    def get(rv: RunValues) -> Any:
        opref = rv.run.opref
        return getattr(opref, part) if opref else None

    return get


def _from(rv: RunValues) -> Any:
    opref = rv.run.opref
    return util.format_dir(opref.location) if opref else None


def _sourcecode(rv: RunValues) -> Any:
    digest = rv.run.get("sourcecode_digest")
    return digest[:8] if isinstance(digest, str) and digest else None


def _time(rv: RunValues) -> Any:
    run = rv.run
    return run_duration(run.status, run.get("started"), run.get("stopped"), rv._now)


# Guild AI 0.9's computed attributes, each read only when asked for: a
# filter on a scalar must not pay for a run's status or source digest.
_COMPUTED: dict[str, Callable[[RunValues], Any]] = {
    "id": lambda rv: rv.run.id,
    "run": lambda rv: rv.run.short_id,
    "short_id": lambda rv: rv.run.short_id,
    "model": _opref_part("model"),
    "operation": lambda rv: rv.run.op_name,
    "op": _opref_part("op"),
    "from": _from,
    "sourcecode": _sourcecode,
    "started": lambda rv: _timestamp(rv.run.get("started")),
    "stopped": lambda rv: _timestamp(rv.run.get("stopped")),
    "status": lambda rv: rv.run.status,
    "time": _time,
}


def _timestamp(micros: Any) -> str | None:
    if not isinstance(micros, int):
        return None
    return util.format_timestamp(micros) or None


def run_duration(status: str, started: Any, stopped: Any, now: float | None = None) -> str | None:
    """Guild AI's ``time``: until now for a running run, else until it
    stopped; whole seconds, truncated, as H:MM:SS."""
    if not isinstance(started, int):
        return None
    if status == "running":
        end = (now if now is not None else time.time()) * 1e6
    elif isinstance(stopped, int):
        end = stopped
    else:
        return None
    secs = int((end - started) // 1_000_000)
    m, s = divmod(secs, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"
