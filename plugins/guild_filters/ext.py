"""The ``filters`` plugin's value names and operators (see the package
docstring). ``datetime`` and ``guild_core.tfevents`` are imported when a
filter needs them.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any


# ---------------------------------------------------------------------
# duration
# ---------------------------------------------------------------------


def duration(run) -> float | None:
    """Seconds from start to stop; to now while the run is running."""
    start = run.get("started")
    if not start:
        return None
    stop = run.get("stopped")
    if stop:
        return (stop - start) / 1e6
    if run.status == "running":
        return (time.time_ns() // 1000 - start) / 1e6
    return None


# ---------------------------------------------------------------------
# started / stopped
# ---------------------------------------------------------------------


def started(run) -> "When | None":
    return _when(run.get("started"))


def stopped(run) -> "When | None":
    return _when(run.get("stopped"))


def _when(micros: Any) -> "When | None":
    if isinstance(micros, bool) or not isinstance(micros, (int, float)) or not micros:
        return None  # never set, or not a time (a hand-edited attribute)
    return When(micros)


class When:
    """A point in time (integer microseconds since the epoch) that
    compares with date/time text, epoch seconds and other `When`s.

    A text target is the span it names (a day, a minute, a second), so
    ``started = 2026-11-23`` holds for any time that day, ``started <
    2026-11-23`` before it begins and ``started > 2026-11-23`` after it
    ends. A target that is not a time compares as nothing: equality is
    false, an ordering raises TypeError (no match for the filter).
    """

    __slots__ = ("micros",)

    def __init__(self, micros: int):
        self.micros = int(micros)

    @property
    def datetime(self):
        """The local (naive) datetime."""
        import datetime

        secs, us = divmod(self.micros, 1_000_000)
        return datetime.datetime.fromtimestamp(secs).replace(microsecond=us)

    def __str__(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.micros // 1_000_000))

    def __repr__(self) -> str:
        return f"When({str(self)!r})"

    def __hash__(self) -> int:
        return hash(self.micros)

    def _span(self, other: Any) -> tuple[float, float] | None:
        """The target as a closed range ``[lo, hi]`` of microseconds."""
        if isinstance(other, When):
            return other.micros, other.micros
        if isinstance(other, bool):
            return None
        if isinstance(other, (int, float)):
            return other * 1_000_000, other * 1_000_000
        if isinstance(other, str):
            return _text_span(other)
        import datetime

        if isinstance(other, datetime.datetime):
            micros = _local_micros(other)
            return micros, micros
        return None

    def __eq__(self, other: Any):
        span = self._span(other)
        if span is None:
            return NotImplemented
        return span[0] <= self.micros <= span[1]

    def __ne__(self, other: Any):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __lt__(self, other: Any):
        span = self._span(other)
        return NotImplemented if span is None else self.micros < span[0]

    def __le__(self, other: Any):
        span = self._span(other)
        return NotImplemented if span is None else self.micros <= span[1]

    def __gt__(self, other: Any):
        span = self._span(other)
        return NotImplemented if span is None else self.micros > span[1]

    def __ge__(self, other: Any):
        span = self._span(other)
        return NotImplemented if span is None else self.micros >= span[0]


_DATETIME_P = re.compile(
    r"""\s*(?:
        (?:(?P<year>\d{4}|\d{2})-)?(?P<month>\d{1,2})-(?P<day>\d{1,2})
        (?:(?:\s+|T)(?P<time1>\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?))?
      | (?P<time2>\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)
    )\s*$""",
    re.VERBOSE,
)

_NUMBER_P = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _text_span(text: str) -> tuple[float, float] | None:
    if _NUMBER_P.match(text):
        secs = float(text)
        return secs * 1_000_000, secs * 1_000_000
    import datetime

    return _text_span_cached(text, datetime.date.today())


_SPANS: dict[tuple, tuple[float, float] | None] = {}


def _text_span_cached(text: str, today) -> tuple[float, float] | None:
    # A filter compares the same target with every run: parse it once.
    key = (text, today)
    try:
        return _SPANS[key]
    except KeyError:
        pass
    if len(_SPANS) > 256:
        _SPANS.clear()
    span = _SPANS[key] = _parse_span(text, today)
    return span


def _parse_span(text: str, today) -> tuple[float, float] | None:
    import datetime

    m = _DATETIME_P.match(text)
    if m is None:
        return None
    try:
        if m.group("time2"):
            date = today
            clock = m.group("time2")
        else:
            year = m.group("year")
            if year is None:
                y = today.year
            elif len(year) == 2:
                y = today.year // 100 * 100 + int(year)
            else:
                y = int(year)
            date = datetime.date(y, int(m.group("month")), int(m.group("day")))
            clock = m.group("time1")
        if clock is None:
            start = datetime.datetime(date.year, date.month, date.day)
            end = start + datetime.timedelta(days=1)
        else:
            parts = clock.split(":")
            hour, minute = int(parts[0]), int(parts[1])
            if len(parts) == 2:
                start = datetime.datetime(date.year, date.month, date.day, hour, minute)
                end = start + datetime.timedelta(minutes=1)
            else:
                secs, _, frac = parts[2].partition(".")
                us = int(frac.ljust(6, "0")) if frac else 0
                start = datetime.datetime(date.year, date.month, date.day, hour, minute, int(secs), us)
                if frac:
                    micros = _local_micros(start)
                    return micros, micros
                end = start + datetime.timedelta(seconds=1)
    except ValueError:  # month 13, 25:00 ...
        return None
    return _local_micros(start), _local_micros(end) - 1


def _local_micros(dt) -> int:
    """Microseconds since the epoch of a naive local datetime."""
    return int(dt.replace(microsecond=0).timestamp()) * 1_000_000 + dt.microsecond


# ---------------------------------------------------------------------
# scalar:TAG.AGG
# ---------------------------------------------------------------------


def aggregate_getter(agg: str):
    def get(run, tag: str):
        summ = scalar_summaries(run).get(tag.split("#", 1)[-1] if "#" in tag else tag)
        return summ.get(agg, False) if summ is not None else None

    get.__name__ = f"scalar_{agg}"
    return get


# run's .guild path -> (event files' stats, {tag: TagSummary})
_SUMMARIES: dict[str, tuple[tuple, dict]] = {}


def scalar_summaries(run) -> dict:
    """Per-tag summaries of every logged value (the core's, as `guild
    compare` shows them), read once while the run's event files are
    unchanged."""
    gpath = str(run.guild_path())
    key = _events_key(gpath)
    hit = _SUMMARIES.get(gpath)
    if hit is not None and hit[0] == key:
        return hit[1]
    from guild_core.runvalues import summarize

    summaries = summarize(gpath) if key else {}
    if len(_SUMMARIES) > 4096:
        _SUMMARIES.clear()
    _SUMMARIES[gpath] = (key, summaries)
    return summaries


def _events_key(gpath: str) -> tuple:
    try:
        names = sorted(n for n in os.listdir(gpath) if n.startswith("events.out.tfevents."))
    except OSError:
        return ()
    key = []
    for name in names:
        try:
            st = os.stat(os.path.join(gpath, name))
        except OSError:
            continue
        key.append((name, st.st_mtime_ns, st.st_size))
    return tuple(key)


# ---------------------------------------------------------------------
# ~ and !~
# ---------------------------------------------------------------------


def matches(value: Any, target: Any) -> bool:
    """``NAME ~ PATTERN``: `re.search` of PATTERN in ``str(value)`` (in
    any item of a list value); a list target matches any of its
    patterns. Undefined never matches."""
    patterns = [_compile(t) for t in (target if isinstance(target, list) else [target])]
    if value is None:
        return False
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(p.search(str(v)) is not None for p in patterns for v in values)


def not_matches(value: Any, target: Any) -> bool:
    """``NAME !~ PATTERN``: ``not (NAME ~ PATTERN)``, so, as with
    ``!=``, an undefined value is selected."""
    return not matches(value, target)


def check_pattern(target: Any) -> None:
    """Called when the filter is parsed: an invalid pattern is an error
    even if no run reaches the test."""
    for t in target if isinstance(target, list) else [target]:
        if t is not None:
            _compile(t)


def _compile(target: Any) -> re.Pattern:
    pat = _pattern_text(target)
    try:
        return re.compile(pat)
    except re.error as e:
        from guild_core.errors import GuildError

        raise GuildError(f"invalid regular expression '{pat}' in filter: {e}") from None


def _pattern_text(target: Any) -> str:
    if target is None:
        raise TypeError("no pattern")
    if isinstance(target, bool):
        return "true" if target else "false"
    return str(target)
