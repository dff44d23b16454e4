"""Flag functions: sequences that expand to value lists (a grid) and
search-space functions that optimizers sample.

- ``range[start:stop:step]`` (inclusive stop, step 1 by default),
  ``linspace[a:b:n]``, ``logspace[a:b:n]`` (base-10 exponents, n 5 by
  default) expand to lists;
- ``uniform[a:b]`` (also ``[a:b]``) and ``loguniform[a:b]`` stay
  functions, ``(name, (a, b))``, for an optimizer.

Sequences are computed in decimal arithmetic, so ``range[0.1:0.3:0.1]``
is exactly 0.1, 0.2, 0.3 with no float drift.
"""

from __future__ import annotations

from typing import Any

from .errors import FlagError
from .flags import FLAG_FUNCTION_P

SEQUENCE_FUNCTIONS = ("range", "linspace", "logspace")
SEARCH_FUNCTIONS = ("uniform", "loguniform")

# A sequence is a list of trial values, computed whole: range[1:1e9]
# would take minutes and gigabytes before anything is shown. Past this
# many values a search range (uniform[LOW:HIGH]) is what is meant.
MAX_SEQUENCE = 100_000


def batch_names(user_flags: dict[str, Any], flagdefs: dict) -> list[str]:
    """Flags whose values may make a batch: only values the user gave
    (or guild.yml's list defaults, `FlagDef.batch_default`), and not
    those of a list-valued flag (a script's list default)."""
    return [
        n for n in user_flags
        if not (n in flagdefs and isinstance(flagdefs[n].default, list) and not flagdefs[n].batch_default)
    ]


def parse(val: Any) -> tuple[str, list[str]] | None:
    """``(name, args)`` for a flag-function string, else None."""
    if not isinstance(val, str):
        return None
    m = FLAG_FUNCTION_P.match(val.strip())
    if not m:
        return None
    name, body = m.group(1), m.group(2)
    if not name:
        if ":" not in body:
            return None
        name = "uniform"
    args = [a.strip() for a in body.split(":")] if body else []
    return name, args


def is_function(val: Any) -> bool:
    return parse(val) is not None


def expand(val: Any) -> Any:
    """A sequence function expanded to its list; search functions become
    ``(name, (low, high))``; anything else is returned as is."""
    parsed = parse(val)
    if parsed is None:
        return val
    name, args = parsed
    if name in SEQUENCE_FUNCTIONS:
        return _sequence(val, name, args)
    if name in SEARCH_FUNCTIONS:
        if len(args) != 2:
            raise FlagError(f"invalid {val}: expected {name}[LOW:HIGH]")
        low, high = (_number(val, a) for a in args)
        if not low < high:
            raise FlagError(f"invalid {val}: low must be less than high")
        if name == "loguniform" and low <= 0:
            raise FlagError(f"invalid {val}: loguniform bounds must be greater than 0")
        return (name, (low, high))
    raise FlagError(f"unknown flag function '{name}' in {val}")


def _number(spec: str, s: str):
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            raise FlagError(f"invalid {spec}: '{s}' is not a number") from None


def _decimal(spec: str, s: str):
    """A finite number within float's range (the values become floats),
    as a Decimal: inf, nan and 1e400 are errors, not tracebacks."""
    import math
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(s)
    except InvalidOperation:
        raise FlagError(f"invalid {spec}: '{s}' is not a number") from None
    if not d.is_finite() or not math.isfinite(float(d)):
        raise FlagError(f"invalid {spec}: '{s}' is not a finite number")
    return d


def _check_count(spec: str, count) -> None:
    if count > MAX_SEQUENCE:
        raise FlagError(
            f"invalid {spec}: more than {MAX_SEQUENCE:,} values "
            "(use uniform[LOW:HIGH] to search a range)"
        )


def _sequence(spec: str, name: str, args: list[str]) -> list:
    from decimal import Decimal
    if name == "range":
        if not 2 <= len(args) <= 3:
            raise FlagError(f"invalid {spec}: expected range[START:STOP] or range[START:STOP:STEP]")
        start, stop = _decimal(spec, args[0]), _decimal(spec, args[1])
        step = _decimal(spec, args[2]) if len(args) == 3 else Decimal(1)
        if step == 0 or (stop - start) * step < 0:
            raise FlagError(f"invalid {spec}: the step never reaches STOP")
        # Counted before anything is built (the division is exact enough:
        # Decimal keeps 28 digits, and a huge count is refused either way).
        count = int((stop - start) / step) + 1
        _check_count(spec, count)
        vals = [start + i * step for i in range(count)]
        all_ints = all(_is_int_literal(a) for a in args)
        return [int(v) if all_ints else float(v) for v in vals]
    if not 2 <= len(args) <= 3:
        raise FlagError(f"invalid {spec}: expected {name}[START:STOP:COUNT]")
    start, stop = _decimal(spec, args[0]), _decimal(spec, args[1])
    if len(args) == 3 and not _is_int_literal(args[2]):
        raise FlagError(f"invalid {spec}: COUNT must be an integer")
    count = int(args[2]) if len(args) == 3 else 5
    if count < 1:
        raise FlagError(f"invalid {spec}: COUNT must be at least 1")
    _check_count(spec, count)
    if count == 1:
        points = [start]
    else:
        points = [start + (stop - start) * i / (count - 1) for i in range(count)]
    if name == "logspace":
        try:
            return [float(10 ** float(p)) for p in points]
        except OverflowError:
            raise FlagError(f"invalid {spec}: its values are too large for a float") from None
    return [float(p) for p in points]


def _is_int_literal(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True
