"""Built-in plugin ``filters``: more names and operators for ``-F EXPR``.

Value names (looked up before the run's own attributes, flags and
scalars):

- ``duration``: seconds from start to stop (to now for a running run),
  a float; undefined for a run that never started.
- ``started``, ``stopped``: a `When`, which compares with dates and
  times written as text (``2026-11-23``, ``2026-11-23 14:05``,
  ``2026-11-23T14:05:00``, ``14:05`` for today, ``11-23`` for this
  year, ``26-11-23``), with epoch seconds and with another `When`. A
  target covers what it names: a date its whole day, ``HH:MM`` its
  minute, ``HH:MM:SS`` its second; ``=`` is "within", ``<`` "before it
  begins", ``>`` "after it ends".
- ``scalar:TAG.min|max|avg|count|first|last``: an aggregate over every
  value the run logged for TAG (first and last by step, as `guild
  compare` has them); undefined when it logged none.

Operators: ``NAME ~ PATTERN`` (``re.search`` in ``str(value)``) and
``NAME !~ PATTERN`` (its negation).

This module is imported at every start-up that loads plugins, so it
holds only the hook; the implementation (`guild_filters.ext`) is
imported when a filter expression is actually compiled.
"""

from __future__ import annotations

from guild_core.hookspecs import hookimpl

AGGREGATES = ("min", "max", "avg", "count", "first", "last")


@hookimpl(trylast=True)
def guild_register_filter_extensions(register):
    from . import ext

    register.value("duration", ext.duration)
    register.value("started", ext.started)
    register.value("stopped", ext.stopped)
    for agg in AGGREGATES:
        register.value(f"scalar:*.{agg}", ext.aggregate_getter(agg))
    register.operator("~", ext.matches, check=ext.check_pattern)
    register.operator("!~", ext.not_matches, check=ext.check_pattern)
