"""Table-driven tests for guild_core.timerange, always against a fixed now."""

from __future__ import annotations

import datetime

import pytest

from guild_core import timerange
from guild_core.timerange import TimeRangeError, contains, parse


def dt(s: str) -> datetime.datetime:
    """'2019-05-01' or '2019-05-01 14:35[:23]' -> naive datetime."""
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(s, fmt)
        except ValueError:
            pass
    raise AssertionError(f"bad test datetime {s!r}")


# Wednesday afternoon, mid-year; the reference time of Guild's own tests.
NOW = dt("2019-05-01 14:35:23")
MONDAY = dt("2019-04-29 09:00")
SUNDAY = dt("2019-05-05 23:59:59")
JANUARY = dt("2020-01-15 10:00")
NEW_YEARS_DAY = dt("2020-01-01 00:00:30")  # a Wednesday
LEAP_YEAR = dt("2024-03-10 12:00")

# (spec, now, start, end) with start/end as strings for dt(), or None.
CASES = [
    # --- bare DATETIME: a date is that day, a time is that minute/second
    ("2018-10-31", NOW, "2018-10-31", "2018-11-01"),
    ("2018-1-5", NOW, "2018-01-05", "2018-01-06"),
    ("18-10-31", NOW, "2018-10-31", "2018-11-01"),  # YY-MM-DD: this century
    ("19-1-2", NOW, "2019-01-02", "2019-01-03"),
    ("10-31", NOW, "2019-10-31", "2019-11-01"),  # MM-DD: this year
    ("4-30", NOW, "2019-04-30", "2019-05-01"),
    ("12-31", NOW, "2019-12-31", "2020-01-01"),
    ("2-29", LEAP_YEAR, "2024-02-29", "2024-03-01"),
    ("14:30", NOW, "2019-05-01 14:30", "2019-05-01 14:31"),
    ("0:00", NOW, "2019-05-01 00:00", "2019-05-01 00:01"),
    ("9:05", NOW, "2019-05-01 09:05", "2019-05-01 09:06"),
    ("23:59", NOW, "2019-05-01 23:59", "2019-05-02 00:00"),
    ("14:30:05", NOW, "2019-05-01 14:30:05", "2019-05-01 14:30:06"),
    ("2018-10-31 14:30", NOW, "2018-10-31 14:30", "2018-10-31 14:31"),
    ("2018-10-31 14:30:05", NOW, "2018-10-31 14:30:05", "2018-10-31 14:30:06"),
    ("18-10-31 9:00", NOW, "2018-10-31 09:00", "2018-10-31 09:01"),
    ("4-28 15:45", NOW, "2019-04-28 15:45", "2019-04-28 15:46"),
    # --- after DATETIME: from that moment; a date means its midnight
    ("after 7-1", NOW, "2019-07-01", None),
    ("after 2018-4-29", NOW, "2018-04-29", None),
    ("after 18-4-29", NOW, "2018-04-29", None),
    ("after 9:00", NOW, "2019-05-01 09:00", None),
    ("after 4-28 15:45", NOW, "2019-04-28 15:45", None),
    ("after 2019-4-29 9:35", NOW, "2019-04-29 09:35", None),
    ("after 2019-4-29 9:35:05", NOW, "2019-04-29 09:35:05", None),
    # --- before DATETIME: up to that moment; a date means its midnight
    ("before 7-1", NOW, None, "2019-07-01"),
    ("before 2018-4-29", NOW, None, "2018-04-29"),
    ("before 19-4-29 9:35", NOW, None, "2019-04-29 09:35"),
    ("before 23:30", NOW, None, "2019-05-01 23:30"),
    ("before 4-28 15:45", NOW, None, "2019-04-28 15:45"),
    # --- after/before a calendar range: after it ends / before it starts
    ("after yesterday", NOW, "2019-05-01", None),
    ("after today", NOW, "2019-05-02", None),
    ("after 1 day ago", NOW, "2019-05-01", None),
    ("after 3 days ago", NOW, "2019-04-29", None),
    ("after 5 minutes ago", NOW, "2019-05-01 14:31", None),
    ("after 2 weeks ago", NOW, "2019-04-22", None),
    ("after 1 month ago", NOW, "2019-05-01", None),
    ("after 12 months ago", NOW, "2018-06-01", None),
    ("after 1 year ago", NOW, "2019-01-01", None),
    ("after last week", NOW, "2019-04-29", None),
    ("before today", NOW, None, "2019-05-01"),
    ("before this week", NOW, None, "2019-04-29"),
    ("before 10 minutes ago", NOW, None, "2019-05-01 14:25"),
    ("before 2 days ago", NOW, None, "2019-04-29"),
    ("before last month", NOW, None, "2019-04-01"),
    # --- between: either order; a date end covers its whole day
    ("between 1-1 and 4-30", NOW, "2019-01-01", "2019-05-01"),
    ("between 4-30 and 1-1", NOW, "2019-01-01", "2019-05-01"),
    ("between 1-1 and 1-31", NOW, "2019-01-01", "2019-02-01"),
    ("between 5-1 and 5-1", NOW, "2019-05-01", "2019-05-02"),
    ("between 2018-12-30 and 19-1-2", NOW, "2018-12-30", "2019-01-03"),
    ("between 10:00 and 15:00", NOW, "2019-05-01 10:00", "2019-05-01 15:00"),
    ("between 15:00 and 10:00", NOW, "2019-05-01 10:00", "2019-05-01 15:00"),
    ("between 0:00:05 and 12:00:45", NOW, "2019-05-01 00:00:05", "2019-05-01 12:00:45"),
    ("between 1-1 9:00 and 1-2 17:30", NOW, "2019-01-01 09:00", "2019-01-02 17:30"),
    ("between 1-2 17:30 and 1-1 9:00", NOW, "2019-01-01 09:00", "2019-01-02 17:30"),
    # a date and a time on that date: midnight up to the time
    ("between 5-1 and 10:00", NOW, "2019-05-01", "2019-05-01 10:00"),
    ("between 10:00 and 5-1", NOW, "2019-05-01", "2019-05-01 10:00"),
    # same start: the one reaching further gives the end, in either order
    ("between 0:00 and 5-1", NOW, "2019-05-01", "2019-05-02"),
    ("between 5-1 and 0:00", NOW, "2019-05-01", "2019-05-02"),
    ("between 4-1 and 10:00", NOW, "2019-04-01", "2019-05-01 10:00"),
    # calendar ranges as ends: start of the earlier to end of the later
    ("between yesterday and today", NOW, "2019-04-30", "2019-05-02"),
    ("between today and yesterday", NOW, "2019-04-30", "2019-05-02"),
    ("between 10 minutes ago and 5 minutes ago", NOW, "2019-05-01 14:25", "2019-05-01 14:31"),
    ("between 2018-1-1 and 10 days ago", NOW, "2018-01-01", "2019-04-22"),
    ("between 10 days ago and today", NOW, "2019-04-21", "2019-05-02"),
    ("between last month and this month", NOW, "2019-04-01", "2019-06-01"),
    # --- last N minutes|hours|days: a window reaching back from now
    ("last 30 min", NOW, "2019-05-01 14:05:23", None),
    ("last 30 mins", NOW, "2019-05-01 14:05:23", None),
    ("last 2 minute", NOW, "2019-05-01 14:33:23", None),
    ("last 2 minutes", NOW, "2019-05-01 14:33:23", None),
    ("last 6 hours", NOW, "2019-05-01 08:35:23", None),
    ("last 6 hour", NOW, "2019-05-01 08:35:23", None),
    ("last 6 hr", NOW, "2019-05-01 08:35:23", None),
    ("last 6 hrs", NOW, "2019-05-01 08:35:23", None),
    ("last 10 days", NOW, "2019-04-21 14:35:23", None),
    ("last 1 day", NOW, "2019-04-30 14:35:23", None),
    ("last 48 hours", JANUARY, "2020-01-13 10:00", None),
    ("last minute", NOW, "2019-05-01 14:34:23", None),
    ("last min", NOW, "2019-05-01 14:34:23", None),
    ("last hour", NOW, "2019-05-01 13:35:23", None),
    ("last hr", NOW, "2019-05-01 13:35:23", None),
    ("last day", NOW, "2019-04-30 14:35:23", None),
    ("last 1 min", NEW_YEARS_DAY, "2019-12-31 23:59:30", None),
    # --- today | yesterday
    ("today", NOW, "2019-05-01", "2019-05-02"),
    ("yesterday", NOW, "2019-04-30", "2019-05-01"),
    ("yesterday", NEW_YEARS_DAY, "2019-12-31", "2020-01-01"),
    ("today", dt("2019-05-01 00:00"), "2019-05-01", "2019-05-02"),
    # --- this minute|hour|day|week|month|year: the unit holding now
    ("this minute", NOW, "2019-05-01 14:35", "2019-05-01 14:36"),
    ("this hour", NOW, "2019-05-01 14:00", "2019-05-01 15:00"),
    ("this day", NOW, "2019-05-01", "2019-05-02"),
    ("this week", NOW, "2019-04-29", "2019-05-06"),
    ("this week", MONDAY, "2019-04-29", "2019-05-06"),  # weeks start Monday
    ("this week", SUNDAY, "2019-04-29", "2019-05-06"),  # ... and end Sunday
    ("this week", NEW_YEARS_DAY, "2019-12-30", "2020-01-06"),
    ("this month", NOW, "2019-05-01", "2019-06-01"),  # includes May 31
    ("this month", dt("2019-12-31 23:00"), "2019-12-01", "2020-01-01"),
    ("this month", LEAP_YEAR.replace(month=2), "2024-02-01", "2024-03-01"),
    ("this year", NOW, "2019-01-01", "2020-01-01"),
    # --- last week|month|year: the previous calendar unit
    ("last week", NOW, "2019-04-22", "2019-04-29"),
    ("last week", MONDAY, "2019-04-22", "2019-04-29"),
    ("last week", SUNDAY, "2019-04-22", "2019-04-29"),
    ("last week", NEW_YEARS_DAY, "2019-12-23", "2019-12-30"),
    ("last month", NOW, "2019-04-01", "2019-05-01"),
    ("last month", JANUARY, "2019-12-01", "2020-01-01"),  # across new year
    ("last month", LEAP_YEAR, "2024-02-01", "2024-03-01"),
    ("last year", NOW, "2018-01-01", "2019-01-01"),
    ("last year", NEW_YEARS_DAY, "2019-01-01", "2020-01-01"),
    # --- N units ago: that single calendar unit, not a window
    ("1 day ago", NOW, "2019-04-30", "2019-05-01"),
    ("1 days ago", NOW, "2019-04-30", "2019-05-01"),
    ("2 days ago", NOW, "2019-04-29", "2019-04-30"),
    ("10 days ago", NOW, "2019-04-21", "2019-04-22"),
    ("0 days ago", NOW, "2019-05-01", "2019-05-02"),
    ("1 day ago", NEW_YEARS_DAY, "2019-12-31", "2020-01-01"),
    ("1 week ago", NOW, "2019-04-22", "2019-04-29"),
    ("3 weeks ago", NOW, "2019-04-08", "2019-04-15"),
    ("10 weeks ago", NOW, "2019-02-18", "2019-02-25"),
    ("1 week ago", SUNDAY, "2019-04-22", "2019-04-29"),
    ("1 month ago", NOW, "2019-04-01", "2019-05-01"),
    ("3 months ago", NOW, "2019-02-01", "2019-03-01"),
    ("15 months ago", NOW, "2018-02-01", "2018-03-01"),
    ("39 months ago", NOW, "2016-02-01", "2016-03-01"),
    ("1 month ago", JANUARY, "2019-12-01", "2020-01-01"),
    ("13 months ago", JANUARY, "2018-12-01", "2019-01-01"),
    ("1 year ago", NOW, "2018-01-01", "2019-01-01"),
    ("5 years ago", NOW, "2014-01-01", "2015-01-01"),
    ("1 minute ago", NOW, "2019-05-01 14:34", "2019-05-01 14:35"),
    ("5 min ago", NOW, "2019-05-01 14:30", "2019-05-01 14:31"),
    ("1 hour ago", NOW, "2019-05-01 13:00", "2019-05-01 14:00"),
    ("24 hours ago", NOW, "2019-04-30 14:00", "2019-04-30 15:00"),
    ("1 hr ago", NEW_YEARS_DAY, "2019-12-31 23:00", "2020-01-01 00:00"),
    # --- case and whitespace
    ("TODAY", NOW, "2019-05-01", "2019-05-02"),
    ("This Week", NOW, "2019-04-29", "2019-05-06"),
    ("  LAST   6   HOURS  ", NOW, "2019-05-01 08:35:23", None),
    ("\tbetween  1-1\n and   4-30 ", NOW, "2019-01-01", "2019-05-01"),
    ("3 WEEKS Ago", NOW, "2019-04-08", "2019-04-15"),
    ("After 9:00", NOW, "2019-05-01 09:00", None),
    ("last30min", NOW, "2019-05-01 14:05:23", None),
]


def _opt(s: str | None) -> datetime.datetime | None:
    return None if s is None else dt(s)


@pytest.mark.parametrize(
    "spec, now, start, end", CASES, ids=[f"{c[0]!r}@{c[1]:%Y-%m-%d}" for c in CASES]
)
def test_parse(spec, now, start, end):
    assert parse(spec, now) == (_opt(start), _opt(end))


def test_every_form_is_covered():
    # Guards the table above against losing a whole form in an edit.
    specs = [c[0].lower().split() for c in CASES]
    firsts = {s[0] for s in specs}
    assert {"after", "before", "between", "last", "today", "yesterday", "this"} <= firsts
    assert any(s[-1] == "ago" for s in specs)
    for unit in ("minute", "hour", "day", "week", "month", "year"):
        assert any(s[0] == "this" and s[1] == unit for s in specs), unit
    for unit in ("week", "month", "year"):
        assert any(s == ["last", unit] for s in specs), unit
        assert any(s[-2:] in ([unit, "ago"], [unit + "s", "ago"]) for s in specs), unit


def test_parse_does_not_read_the_clock(monkeypatch):
    class Clock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            raise AssertionError("timerange read the clock")

        @classmethod
        def today(cls):
            raise AssertionError("timerange read the clock")

    monkeypatch.setattr(timerange.datetime, "datetime", Clock)
    assert parse("today", NOW) == (dt("2019-05-01"), dt("2019-05-02"))
    assert parse("last hour", NOW) == (dt("2019-05-01 13:35:23"), None)


def test_results_are_naive():
    for spec, now, *_ in CASES:
        for edge in parse(spec, now):
            assert edge is None or edge.tzinfo is None, spec


def test_now_microseconds_kept_by_rolling_window_dropped_by_units():
    now = NOW.replace(microsecond=123456)
    assert parse("last 1 min", now) == (dt("2019-05-01 14:34:23").replace(microsecond=123456), None)
    assert parse("this minute", now) == (dt("2019-05-01 14:35"), dt("2019-05-01 14:36"))


# (spec, fragment of the message)
INVALID = [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("lst week", "unexpected 'lst'"),
    ("last wek", "unexpected 'wek' after 'last'"),
    ("aftr last week", "unexpected 'aftr'"),
    ("after the equinox", "unexpected 'the' after 'after'"),
    ("yearsss", "unexpected 'yearsss'"),
    ("last", "expected a number or a unit after 'last'"),
    ("last 3", "expected minutes, hours or days after 'last 3'"),
    ("last today", "unexpected 'today' after 'last'"),
    ("last 0 days", "N must be at least 1"),
    ("last 0 min", "N must be at least 1"),
    ("last 2 weeks", "'last N' takes minutes, hours or days, not 'weeks'"),
    ("last 1 month", "use 'last month' or '1 months ago'"),
    ("last 3 years", "not 'years'"),
    ("last 3 days ago", "unexpected 'ago' after 'last 3 days'"),
    ("this", "expected a unit after 'this'"),
    ("this 5", "unexpected '5' after 'this'; expected a unit"),
    ("3 days", "expected 'ago' after '3 days'"),
    ("3 ago", "unexpected 'ago' after '3'; expected a unit"),
    ("3", "expected a unit after '3'"),
    ("days ago", "unexpected 'days'"),
    ("ago", "unexpected 'ago'"),
    ("after", "expected a date, time or range after 'after'"),
    ("before", "expected a date, time or range after 'before'"),
    ("after after 1-1", "unexpected 'after' after 'after'"),
    ("after last hour", "'last hour' can only be used on its own"),
    ("between last 2 days and today", "unexpected 'last 2' after 'between'; 'last N ...' can only"),
    ("before last 3 hours", "unexpected 'last 3' after 'before'"),
    ("between", "expected a date, time or range after 'between'"),
    ("between 1-1", "expected 'and' after 'between 1-1'"),
    ("between 1-1 and", "expected a date, time or range after 'between 1-1 and'"),
    ("between 1-1 or 2-2", "unexpected 'or' after 'between 1-1'"),
    ("between 1-1 and 2-2 and 3-3", "unexpected 'and' after 'between 1-1 and 2-2'"),
    ("and 1-1", "unexpected 'and'"),
    ("today yesterday", "unexpected 'yesterday' after 'today'"),
    ("today 10:00", "unexpected '10:00' after 'today'"),
    ("10:00 5-1", "unexpected '5-1' after '10:00'"),
    ("10:00am", "unexpected 'am' after '10:00'"),
    ("13:99", "bad time '13:99' (minute must be 0..59)"),
    ("24:00", "bad time '24:00' (hour must be 0..23)"),
    ("12:00:60", "bad time '12:00:60' (second must be 0..59)"),
    ("after 9:60", "bad time '9:60'"),
    ("1:2", "unexpected '1:2'"),
    ("10:", "unexpected '10:'"),
    ("2-30", "bad date '2-30' (2019-02 has 28 days)"),
    ("2-29", "bad date '2-29' (2019-02 has 28 days)"),
    ("4-31", "bad date '4-31' (2019-04 has 30 days)"),
    ("1-32", "bad date '1-32' (2019-01 has 31 days)"),
    ("1-0", "bad date '1-0'"),
    ("13-1", "bad date '13-1' (month must be 1..12)"),
    ("0-1", "month must be 1..12"),
    ("2018-13-01", "bad date '2018-13-01' (month must be 1..12)"),
    ("0000-1-1", "year must be 1..9999"),
    ("before 2018-4-31", "bad date '2018-4-31' (2018-04 has 30 days)"),
    ("between 11:00 and 24:00", "bad time '24:00'"),
    ("2015-01-03-01", "unexpected '2015-01-03-01'"),
    ("123-1-1", "unexpected '123-1-1'"),
    ("2019-5", "unexpected '2019-5'"),
    ("5/1", "unexpected '/1' after '5'; write dates as YYYY-MM-DD or MM-DD"),
    ("after 2019/5/1", "write dates as YYYY-MM-DD or MM-DD"),
    ("last 6 hours!", "unexpected '!' after 'last 6 hours'"),
    ("last 9999999999 days", "number '9999999999' is too large"),
    ("last 999999999 days", "outside years 1..9999"),
    ("100000 years ago", "outside years 1..9999"),
    ("9999-12-31", "outside years 1..9999"),
]


@pytest.mark.parametrize("spec, fragment", INVALID, ids=[repr(c[0]) for c in INVALID])
def test_invalid(spec, fragment):
    with pytest.raises(TimeRangeError) as info:
        parse(spec, NOW)
    msg = str(info.value)
    assert msg.startswith(f"invalid time range {spec!r}: "), msg
    assert fragment in msg, msg
    assert "\n" not in msg


def test_error_message_example():
    with pytest.raises(TimeRangeError) as info:
        parse("lst week", NOW)
    assert str(info.value) == "invalid time range 'lst week': unexpected 'lst'"


def test_error_is_value_error_and_one_line_for_multiline_spec():
    with pytest.raises(ValueError) as info:
        parse("last\n0 days", NOW)
    assert isinstance(info.value, TimeRangeError)
    assert "\n" not in str(info.value)


def test_error_quotes_what_the_user_typed():
    with pytest.raises(TimeRangeError) as info:
        parse("LAST  3   Fortnights", NOW)
    assert "unexpected 'Fortnights' after 'LAST 3'" in str(info.value)


# (range, when, expected)
CONTAINS = [
    ((dt("2019-05-01"), dt("2019-05-02")), dt("2019-05-01"), True),  # start in
    ((dt("2019-05-01"), dt("2019-05-02")), dt("2019-05-02"), False),  # end out
    ((dt("2019-05-01"), dt("2019-05-02")), dt("2019-05-01 23:59:59.999999"), True),
    ((dt("2019-05-01"), dt("2019-05-02")), dt("2019-04-30 23:59:59.999999"), False),
    ((dt("2019-05-01"), None), dt("2019-05-01"), True),
    ((dt("2019-05-01"), None), dt("9999-12-31"), True),
    ((dt("2019-05-01"), None), dt("2019-04-30 23:59:59"), False),
    ((None, dt("2019-05-01")), dt("2019-05-01"), False),
    ((None, dt("2019-05-01")), dt("0001-01-01"), True),
    ((None, dt("2019-05-01")), dt("2019-04-30 23:59:59.999999"), True),
    ((None, None), dt("2019-05-01"), True),
    ((dt("2019-05-01 10:00"), dt("2019-05-01 10:00")), dt("2019-05-01 10:00"), False),
]


@pytest.mark.parametrize("rng, when, expected", CONTAINS)
def test_contains(rng, when, expected):
    assert contains(rng, when) is expected


@pytest.mark.parametrize(
    "spec, inside, outside",
    [
        # the last minute of a whole-day end is in, the next midnight is not
        ("between 1-1 and 4-30", ["2019-01-01", "2019-04-30 23:59:59"], ["2018-12-31 23:59:59", "2019-05-01"]),
        ("14:30", ["2019-05-01 14:30", "2019-05-01 14:30:59"], ["2019-05-01 14:29:59", "2019-05-01 14:31"]),
        ("after 7-1", ["2019-07-01", "2030-01-01"], ["2019-06-30 23:59:59"]),
        ("before 7-1", ["2019-06-30 23:59:59", "2000-01-01"], ["2019-07-01"]),
        ("this month", ["2019-05-31 23:59:59"], ["2019-06-01", "2019-04-30 23:59:59"]),
        ("last 1 hour", ["2019-05-01 13:35:23", "2019-05-01 14:35:23", "2019-05-02"], ["2019-05-01 13:35:22"]),
    ],
)
def test_parse_then_contains(spec, inside, outside):
    rng = parse(spec, NOW)
    for s in inside:
        assert contains(rng, dt(s)), (spec, s)
    for s in outside:
        assert not contains(rng, dt(s)), (spec, s)


def test_contains_run_timestamp_the_way_the_caller_converts_it():
    rng = parse("today", NOW)
    start_us = int(dt("2019-05-01 00:00").timestamp() * 1_000_000)
    assert contains(rng, datetime.datetime.fromtimestamp(start_us / 1e6))
    assert not contains(rng, datetime.datetime.fromtimestamp((start_us - 1) / 1e6))
