"""Parse `--started RANGE` time ranges (Guild AI 0.9 syntax).

A range is `(start, end)`: naive local datetimes, start inclusive, end
exclusive, `None` for an open end. Everything is relative to a `now`
passed in by the caller, so results are reproducible.

Forms (case-insensitive; any amount of whitespace between words):

    DATETIME                  a date: that whole day; HH:MM: that minute;
                              HH:MM:SS: that second
    after DATETIME            from DATETIME on (a date means its midnight,
                              so `after 7-1` includes July 1)
    before DATETIME           up to DATETIME (`before 7-1` excludes July 1)
    between A and B           A and B in either order; a date end includes
                              that whole day, a time end is exclusive
    last N minutes|hours|days rolling window back from now (`min`, `hr`,
                              singular forms, and `last hour` = `last 1 hour`)
    today | yesterday
    this minute|hour|day|week|month|year     the calendar unit holding now
    last week|month|year      the previous calendar week/month/year
    N minutes|hours|days|weeks|months|years ago
                              the single calendar unit N units back
                              (`3 days ago` is that whole day, not a window)

    after/before/between also take the calendar forms above: `after X`
    starts when X ends, `before X` ends when X starts, and `between X and
    Y` runs from the start of the earlier to the end of the later.

DATETIME is `DATE`, `TIME` or `DATE TIME`. DATE is YYYY-MM-DD, YY-MM-DD
(current century) or MM-DD (current year). TIME is HH:MM or HH:MM:SS on a
24-hour clock; without a date it means today. Weeks start on Monday.
"""

from __future__ import annotations

import datetime
import re

__all__ = ["TimeRangeError", "parse", "contains", "Range"]

Range = tuple["datetime.datetime | None", "datetime.datetime | None"]

_DAY = datetime.timedelta(days=1)
_MINUTE = datetime.timedelta(minutes=1)
_SECOND = datetime.timedelta(seconds=1)


class TimeRangeError(ValueError):
    """A RANGE the user typed is not valid; str() is a one-line message."""


def parse(spec: str, now: datetime.datetime) -> Range:
    """(start, end) as naive local datetimes; start inclusive, end exclusive;
    None = open end."""
    return _Parser(spec, now).parse()


def contains(rng: Range, when: datetime.datetime) -> bool:
    """True if `when` falls in `rng`: start <= when < end, None is open."""
    start, end = rng
    if start is not None and when < start:
        return False
    if end is not None and when >= end:
        return False
    return True


# ---------------------------------------------------------------------------
# Tokens

_UNITS = {
    "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
    "day": "day", "days": "day",
    "week": "week", "weeks": "week",
    "month": "month", "months": "month",
    "year": "year", "years": "year",
}
_KEYWORDS = frozenset(
    ["today", "yesterday", "this", "last", "ago", "before", "after", "between", "and"]
)
# `last N <unit>` is a sliding window; Guild only allows units of fixed
# length, because "the last 2 months" has no single obvious length.
_ROLLING_UNITS = ("minute", "hour", "day")

_TOKEN_RE = re.compile(
    r"""
    (?P<date>(?:(?P<year>\d{4}|\d{2})-)?(?P<month>\d{1,2})-(?P<day>\d{1,2}))
  | (?P<time>(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)
  | (?P<num>\d+)
  | (?P<word>[a-z]+)
    """,
    re.IGNORECASE | re.VERBOSE,
)
# What may not directly follow a numeric token: otherwise `2019-5-1-3`
# would quietly read as `2019-5-1` and a stray `-3`, and `1:2` as `1` `:2`.
_NUMERIC_TAIL_RE = re.compile(r"[\d:-]")


def _days_in_month(year: int, month: int) -> int:
    # Not calendar.monthrange: importing calendar pulls in locale, which
    # costs more than everything else here.
    if month == 12:
        return 31
    return (datetime.date(year, month + 1, 1) - datetime.date(year, month, 1)).days


class _Token:
    # Not a dataclass or NamedTuple: this module is imported on every
    # `guild runs` and should cost no more than re and datetime.
    __slots__ = ("kind", "text", "pos", "word", "num", "date", "time", "precision")

    def __init__(self, kind: str, text: str, pos: int) -> None:
        self.kind = kind  # "date", "time", "num", "unit" or "word"
        self.text = text  # as typed, for messages
        self.pos = pos
        self.word = ""  # canonical keyword, or unit name ("minute", ...)
        self.num = 0
        self.date = datetime.date.min
        self.time = datetime.time()
        self.precision = _MINUTE  # of a time: HH:MM or HH:MM:SS


class _Moment:
    """A DATETIME as written, with how precisely it was written: a bare
    date covers a day, HH:MM a minute, HH:MM:SS a second."""

    __slots__ = ("at", "precision")

    def __init__(self, at: datetime.datetime, precision: datetime.timedelta) -> None:
        self.at = at
        self.precision = precision


_Span = tuple[datetime.datetime, datetime.datetime]


# ---------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, spec: str, now: datetime.datetime) -> None:
        self.spec = spec
        self.now = now
        self.tokens = self._tokenize()
        self.i = 0

    # Errors

    def _error(self, problem: str) -> TimeRangeError:
        return TimeRangeError(f"invalid time range {self.spec!r}: {problem}")

    def _prefix(self, pos: int) -> str:
        return " ".join(self.spec[:pos].split())

    def _unexpected(self, text: str, pos: int, hint: str = "") -> TimeRangeError:
        prefix = self._prefix(pos)
        msg = f"unexpected '{text}'"
        if prefix:
            msg += f" after '{prefix}'"
        if hint:
            msg += f"; {hint}"
        return self._error(msg)

    # Tokenizer

    def _tokenize(self) -> list[_Token]:
        spec = self.spec
        tokens: list[_Token] = []
        pos = 0
        while True:
            while pos < len(spec) and spec[pos].isspace():
                pos += 1
            if pos == len(spec):
                return tokens
            m = _TOKEN_RE.match(spec, pos)
            if m is None or (
                m.lastgroup != "word" and _NUMERIC_TAIL_RE.match(spec, m.end())
            ):
                bad = spec[pos:].split()[0]
                # `5/1` is the likeliest slip: say how dates are written.
                hint = "write dates as YYYY-MM-DD or MM-DD" if "/" in bad else ""
                raise self._unexpected(bad, pos, hint)
            tokens.append(self._token(m, pos))
            pos = m.end()

    def _token(self, m: re.Match[str], pos: int) -> _Token:
        text = m.group()
        if m.group("date"):
            tok = _Token("date", text, pos)
            tok.date = self._date(m, text)
        elif m.group("time"):
            tok = _Token("time", text, pos)
            tok.time = self._time(m, text)
            tok.precision = _SECOND if m.group("second") else _MINUTE
        elif m.group("num"):
            if len(text) > 9:
                raise self._error(f"number '{text}' is too large")
            tok = _Token("num", text, pos)
            tok.num = int(text)
        elif text.lower() in _UNITS:
            tok = _Token("unit", text, pos)
            tok.word = _UNITS[text.lower()]
        elif text.lower() in _KEYWORDS:
            tok = _Token("word", text, pos)
            tok.word = text.lower()
        else:
            raise self._unexpected(text, pos)
        return tok

    def _date(self, m: re.Match[str], text: str) -> datetime.date:
        year_s = m.group("year")
        if year_s is None:
            year = self.now.year
        elif len(year_s) == 2:
            # Guild's rule: a two-digit year is in now's century. Run start
            # times are never far in the past, so no pivot year is needed.
            year = self.now.year // 100 * 100 + int(year_s)
        else:
            year = int(year_s)
        month, day = int(m.group("month")), int(m.group("day"))
        if not 1 <= year <= 9999:
            raise self._error(f"bad date '{text}' (year must be 1..9999)")
        if not 1 <= month <= 12:
            raise self._error(f"bad date '{text}' (month must be 1..12)")
        days = _days_in_month(year, month)
        if not 1 <= day <= days:
            raise self._error(
                f"bad date '{text}' ({year:04d}-{month:02d} has {days} days)"
            )
        return datetime.date(year, month, day)

    def _time(self, m: re.Match[str], text: str) -> datetime.time:
        hour, minute = int(m.group("hour")), int(m.group("minute"))
        second = int(m.group("second") or 0)
        # Guild's lexer takes 24:00 and then crashes in datetime(); say why.
        for name, value, top in (("hour", hour, 23), ("minute", minute, 59),
                                 ("second", second, 59)):
            if value > top:
                raise self._error(f"bad time '{text}' ({name} must be 0..{top})")
        return datetime.time(hour, minute, second)

    # Token stream

    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self, expected: str) -> _Token:
        tok = self._peek()
        if tok is None:
            raise self._error(f"expected {expected} after '{self._prefix(len(self.spec))}'")
        self.i += 1
        return tok

    def _expect_word(self, word: str) -> None:
        tok = self._next(f"'{word}'")
        if tok.kind != "word" or tok.word != word:
            raise self._unexpected(tok.text, tok.pos, f"expected '{word}'")

    def _expect_end(self) -> None:
        tok = self._peek()
        if tok is not None:
            raise self._unexpected(tok.text, tok.pos)

    def _is_word(self, tok: _Token | None, *words: str) -> bool:
        return tok is not None and tok.kind == "word" and tok.word in words

    # Grammar

    def parse(self) -> Range:
        if not self.tokens:
            raise self._error("it is empty")
        try:
            rng = self._spec()
        except (OverflowError, ValueError) as e:
            if isinstance(e, TimeRangeError):
                raise
            # Dates and times are validated as they are read, so only the
            # extremes get here: "100000 years ago", or a day ending after
            # 9999-12-31.
            raise self._error("that reaches outside years 1..9999") from None
        self._expect_end()
        return rng

    def _spec(self) -> Range:
        tok = self.tokens[0]
        # With after/before a date means its midnight, as in Guild:
        # `after 7-1` includes July 1 and `before 7-1` excludes it, which is
        # how people read those words.
        if self._is_word(tok, "after"):
            self.i += 1
            target = self._target()
            if isinstance(target, _Moment):
                return target.at, None
            return target[1], None
        if self._is_word(tok, "before"):
            self.i += 1
            target = self._target()
            if isinstance(target, _Moment):
                return None, target.at
            return None, target[0]
        if self._is_word(tok, "between"):
            self.i += 1
            a = self._between_end(self._target())
            self._expect_word("and")
            b = self._between_end(self._target())
            # Order by (start, end) so the result doesn't depend on which was
            # typed first, even when both start together (`0:00` and today's
            # date): the span reaching further provides the end.
            first, last = sorted([a, b])
            return first[0], last[1]
        if self._is_word(tok, "last"):
            rolling = self._rolling()
            if rolling is not None:
                return rolling
        target = self._target()
        if isinstance(target, _Moment):
            return target.at, target.at + target.precision
        return target

    def _rolling(self) -> Range | None:
        """`last [N] minute|hour|day`, or None for `last week|month|year`,
        which is a calendar unit and left to `_target`."""
        nxt = self.tokens[1] if len(self.tokens) > 1 else None
        if nxt is not None and nxt.kind == "unit" and nxt.word not in _ROLLING_UNITS:
            return None
        self.i += 1
        n = 1
        tok = self._next("a number or a unit")
        if tok.kind == "num":
            n = tok.num
            tok = self._next("minutes, hours or days")
        if tok.kind != "unit":
            raise self._unexpected(tok.text, tok.pos, "expected a number or a unit")
        if tok.word not in _ROLLING_UNITS:
            # Guild refuses these too: how long "2 months" is depends on
            # which months.
            raise self._error(
                f"'last N' takes minutes, hours or days, not '{tok.text}'; "
                f"use 'last {tok.word}' or '{n} {tok.word}s ago'"
            )
        if n == 0:
            # Guild returns (now, None) here, which only matches runs from
            # the future: far more likely a typo than a wish.
            raise self._error(
                f"'last 0 {tok.word}s' would match nothing; N must be at least 1"
            )
        return self.now - datetime.timedelta(**{f"{tok.word}s": n}), None

    def _between_end(self, target: _Moment | _Span) -> _Span:
        if isinstance(target, _Moment):
            if target.precision == _DAY:
                # Departure from Guild, which ends `between 1-1 and 4-30`
                # at 4-30 00:00, dropping April 30 itself (and making
                # `between 5-1 and 5-1` empty). A date names a day, as it
                # does everywhere else, so the range runs through it.
                return target.at, target.at + _DAY
            # A time names an instant: `between 10:00 and 15:00` ends at
            # 15:00, as in Guild.
            return target.at, target.at
        return target

    def _target(self) -> _Moment | _Span:
        """A DATETIME or a calendar unit range: what after/before/between
        take and what may stand alone."""
        tok = self._next("a date, time or range")
        if tok.kind == "date":
            nxt = self._peek()
            if nxt is not None and nxt.kind == "time":
                self.i += 1
                return self._moment(tok.date, nxt)
            return _Moment(datetime.datetime.combine(tok.date, datetime.time()), _DAY)
        if tok.kind == "time":
            return self._moment(self.now.date(), tok)
        if self._is_word(tok, "today"):
            return self._unit_span("day", 0)
        if self._is_word(tok, "yesterday"):
            return self._unit_span("day", -1)
        if self._is_word(tok, "last"):
            nxt = self._peek()
            if nxt is not None and nxt.kind == "num":
                # A window ending now can't be something to be after or
                # before, and `between` already says what the window is.
                raise self._unexpected(
                    f"{tok.text} {nxt.text}", tok.pos,
                    "'last N ...' can only be used on its own",
                )
        if self._is_word(tok, "this", "last"):
            unit = self._unit()
            if tok.word == "this":
                return self._unit_span(unit.word, 0)
            if unit.word in _ROLLING_UNITS:
                # `last hour` alone is a window ending now; reading it as
                # "the previous clock hour" here would give it two meanings.
                raise self._unexpected(
                    f"{tok.text} {unit.text}", tok.pos,
                    f"'last {unit.word}' can only be used on its own",
                )
            return self._unit_span(unit.word, -1)
        if tok.kind == "num":
            unit = self._unit()
            self._expect_word("ago")
            return self._unit_span(unit.word, -tok.num)
        raise self._unexpected(tok.text, tok.pos)

    def _unit(self) -> _Token:
        tok = self._next("a unit")
        if tok.kind != "unit":
            raise self._unexpected(tok.text, tok.pos, "expected a unit")
        return tok

    def _moment(self, date: datetime.date, tok: _Token) -> _Moment:
        return _Moment(datetime.datetime.combine(date, tok.time), tok.precision)

    def _unit_span(self, unit: str, shift: int) -> _Span:
        """The calendar `unit` holding now, moved `shift` units (<= 0)."""
        now = self.now
        if unit == "minute":
            start = now.replace(second=0, microsecond=0) + shift * _MINUTE
            return start, start + _MINUTE
        if unit == "hour":
            hour = datetime.timedelta(hours=1)
            start = now.replace(minute=0, second=0, microsecond=0) + shift * hour
            return start, start + hour
        midnight = datetime.datetime.combine(now.date(), datetime.time())
        if unit == "day":
            start = midnight + shift * _DAY
            return start, start + _DAY
        if unit == "week":
            # Weeks start on Monday, as in Guild (date.weekday()).
            start = midnight - now.weekday() * _DAY + shift * 7 * _DAY
            return start, start + 7 * _DAY
        if unit == "month":
            # Departure from Guild, whose month ranges end at 00:00 on the
            # month's *last* day, so `this month` in May misses May 31. The
            # end here is the first of the next month.
            index = now.year * 12 + now.month - 1 + shift
            start = datetime.datetime(index // 12, index % 12 + 1, 1)
            index += 1
            return start, datetime.datetime(index // 12, index % 12 + 1, 1)
        assert unit == "year", unit
        start = datetime.datetime(now.year + shift, 1, 1)
        return start, datetime.datetime(now.year + shift + 1, 1, 1)
