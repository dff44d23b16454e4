"""The ``random`` optimizer: random search over a batch's flag space.

Every trial is known up front: the first ``propose(n)`` returns up to
``n`` of the batch's ``max_trials`` trials, later calls the rest. Per
flag, sorted by name so the same seed always gives the same trials:

- a fixed value is used as is;
- a list is a seeded choice among its items;
- ``("uniform", (low, high))`` samples integers in ``[low, high]``
  (inclusive) for an ``int`` flag, or an auto-typed flag with whole
  bounds, and reals otherwise;
- ``("loguniform", (low, high))`` samples ``exp(uniform(log low, log
  high))``, rounded to an integer for integer flags.

When the space is discrete (lists and integer ranges only) trials are
distinct, and there are never more of them than combinations.

The module stays cheap to import: `random` and `math` are imported by
the functions that use them.
"""

from __future__ import annotations

from typing import Any

from guild_core.errors import GuildError
from guild_core.hookspecs import hookimpl

SEARCH_FUNCTIONS = ("uniform", "loguniform")

# Flag types that cannot be searched over a numeric range.
_NON_NUMERIC = ("string", "boolean", "path", "existing-path")

# Resamples tried for a trial already proposed before looking further.
_MAX_RESAMPLES = 100

# A discrete space this small is enumerated to find unused combinations
# when resampling does not.
_MAX_ENUMERATE = 100_000

_DEFAULT_MAX_TRIALS = 20


@hookimpl(trylast=True)
def guild_register_optimizers(register):
    register(
        "random", random_optimizer, aliases=(), flags={},
        default_max_trials=_DEFAULT_MAX_TRIALS,
        description="Random search over the flag space",
    )


def random_optimizer(ctx) -> "RandomOptimizer":
    """The optimizer for a batch; the search space is checked here, so
    errors show before any run is created."""
    return RandomOptimizer(ctx)


class RandomOptimizer:
    def __init__(self, ctx):
        max_trials = getattr(ctx, "max_trials", None)
        if max_trials is None:
            max_trials = _DEFAULT_MAX_TRIALS
        dims = _dims(ctx.space or {}, getattr(ctx, "flagdefs", None) or {})
        self.trials = _trials(dims, int(getattr(ctx, "seed", 0) or 0), max(0, int(max_trials)))
        self._next = 0
        self.observed: list[tuple[dict[str, Any], float | None]] = []

    def propose(self, n: int) -> list[dict[str, Any]]:
        if n is None or n <= 0:
            return []
        out = self.trials[self._next:self._next + n]
        self._next += len(out)
        return [dict(t) for t in out]

    def observe(self, flags: dict[str, Any], objective: float | None) -> None:
        self.observed.append((dict(flags), objective))


# ---------------------------------------------------------------------
# Search dimensions
# ---------------------------------------------------------------------


class _Dim:
    """How to sample one flag.

    `kind` is ``"fixed"`` (args: the value), ``"choice"`` (args: the
    list), ``"int"`` or ``"real"`` (args: ``(low, high)``); `log` is true
    for loguniform.
    """

    def __init__(self, name: str, kind: str, args: Any, log: bool = False):
        self.name = name
        self.kind = kind
        self.args = args
        self.log = log

    def size(self) -> int | None:
        """The number of distinct values, or None for a real range."""
        if self.kind == "fixed":
            return 1
        if self.kind == "choice":
            return len({_ident(v) for v in self.args})
        if self.kind == "int":
            low, high = self.args
            return high - low + 1
        return None

    def values(self) -> list[Any]:
        """Distinct values of a discrete dimension, in order."""
        if self.kind == "fixed":
            return [self.args]
        if self.kind == "int":
            low, high = self.args
            return list(range(low, high + 1))
        seen, out = set(), []
        for v in self.args:
            if _ident(v) not in seen:
                seen.add(_ident(v))
                out.append(v)
        return out

    def sample(self, rng) -> Any:
        if self.kind == "fixed":
            return self.args
        if self.kind == "choice":
            return rng.choice(self.args)
        low, high = self.args
        if not self.log:
            if self.kind == "int":
                return rng.randint(low, high)
            return rng.uniform(low, high)
        import math

        val = math.exp(rng.uniform(math.log(low), math.log(high)))
        if self.kind == "int":
            return min(high, max(low, int(round(val))))
        return min(float(high), max(float(low), val))


def _dims(space: dict[str, Any], flagdefs: dict[str, Any]) -> list[_Dim]:
    dims = []
    for name in sorted(space):
        val = space[name]
        if isinstance(val, tuple):
            dims.append(_search_dim(name, val, flagdefs.get(name)))
        elif isinstance(val, list):
            if not val:
                raise GuildError(f"flag '{name}' has an empty list of values")
            dims.append(_Dim(name, "choice", list(val)))
        else:
            dims.append(_Dim(name, "fixed", val))
    return dims


def _is_number(val: Any) -> bool:
    return isinstance(val, (int, float)) and not isinstance(val, bool)


def _search_dim(name: str, val: tuple, fd) -> _Dim:
    import math

    if len(val) != 2 or not isinstance(val[0], str):
        raise GuildError(f"invalid search value for flag '{name}': {val!r}")
    func, args = val
    args = tuple(args) if isinstance(args, (list, tuple)) else (args,)
    spec = f"{func}[{':'.join(str(a) for a in args)}]"
    if func not in SEARCH_FUNCTIONS:
        raise GuildError(
            f"random search does not support {spec} (flag '{name}'): "
            "use uniform or loguniform"
        )
    if len(args) != 2:
        raise GuildError(f"invalid {spec}: expected {func}[LOW:HIGH]")
    ftype = getattr(fd, "type", None)
    if ftype in _NON_NUMERIC:
        raise GuildError(f"cannot use {spec} for flag '{name}': flag type is {ftype}")
    low, high = args
    if not (_is_number(low) and _is_number(high)):
        raise GuildError(f"invalid {spec}: bounds must be numbers")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise GuildError(f"invalid {spec}: bounds must be finite")
    if not low < high:
        raise GuildError(f"invalid {spec}: low must be below high")
    if func == "loguniform" and low <= 0:
        raise GuildError(f"invalid {spec}: loguniform bounds must be greater than 0")
    if ftype == "int":
        if float(low) != int(low) or float(high) != int(high):
            raise GuildError(
                f"invalid {spec} for int flag '{name}': bounds must be whole numbers"
            )
        kind = "int"
    elif ftype in ("float", "number"):
        kind = "real"
    elif (
        isinstance(low, int) and isinstance(high, int)
        and not isinstance(getattr(fd, "default", None), float)
    ):
        # Auto-typed: whole-number bounds search integers, unless the
        # flag's default says it is a float.
        kind = "int"
    else:
        kind = "real"
    bounds = (int(low), int(high)) if kind == "int" else (float(low), float(high))
    return _Dim(name, kind, bounds, log=(func == "loguniform"))


# ---------------------------------------------------------------------
# Trials
# ---------------------------------------------------------------------


def _ident(val: Any) -> tuple[str, str]:
    """A hashable identity of a value: 1, 1.0 and True differ."""
    return type(val).__name__, repr(val)


def _trial_key(trial: dict[str, Any]) -> tuple:
    return tuple((name, _ident(val)) for name, val in trial.items())


def _combinations(dims: list[_Dim], limit: int) -> int | None:
    """The number of distinct trials, capped just above `limit`, or None
    when the space is not discrete."""
    total = 1
    for dim in dims:
        size = dim.size()
        if size is None:
            return None
        total *= size
        if total > limit:
            return limit + 1
    return total


def _trials(dims: list[_Dim], seed: int, max_trials: int) -> list[dict[str, Any]]:
    import random

    rng = random.Random(seed)
    combos = _combinations(dims, max(max_trials, _MAX_ENUMERATE))
    count = max_trials if combos is None else min(max_trials, combos)
    trials: list[dict[str, Any]] = []
    seen: set = set()
    rest: list[dict[str, Any]] | None = None
    for _ in range(count):
        if rest is not None:
            trial = rest.pop()
        else:
            trial = _sample(dims, rng)
            retries = 0
            while _trial_key(trial) in seen and retries < _MAX_RESAMPLES:
                trial = _sample(dims, rng)
                retries += 1
            if _trial_key(trial) in seen:
                if combos is not None and combos <= _MAX_ENUMERATE:
                    # The space is nearly used up: draw the remaining
                    # trials from the combinations not yet proposed.
                    rest = _unused(dims, seen)
                    rng.shuffle(rest)
                    trial = rest.pop()
                # Otherwise the space is large or continuous: a duplicate
                # after this many resamples is left as is.
        seen.add(_trial_key(trial))
        trials.append(trial)
    return trials


def _sample(dims: list[_Dim], rng) -> dict[str, Any]:
    return {dim.name: dim.sample(rng) for dim in dims}


def _unused(dims: list[_Dim], seen: set) -> list[dict[str, Any]]:
    """Every combination not yet proposed, in order."""
    import itertools

    names = [dim.name for dim in dims]
    unused = []
    for combo in itertools.product(*(dim.values() for dim in dims)):
        trial = dict(zip(names, combo))
        if _trial_key(trial) not in seen:
            unused.append(trial)
    return unused
