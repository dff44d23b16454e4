"""Plugin ``best``: a summary operation's dependency on the best runs.

A dependency with a ``best:`` key selects the best N runs of a base
selection, best first, ranked by a scalar's last value (at the highest
step, as ``guild compare`` shows it)::

    summary:
      main: summary
      requires:
        - operation: train          # the base selection (see below)
          best: 3                   # keep the top 3
          objective: loss           # minimize loss (the default)
          select: completed         # optional: filter the base selection

Keys:

- ``best: N``: how many runs to keep, a positive integer. Written
  ``best: N by SCALAR`` it also names the objective (``best: 5 by loss``,
  ``best: 5 by -acc``).
- ``objective: SCALAR``: the scalar to minimize, ``loss`` when not
  given; ``-SCALAR`` maximizes it (``objective: -acc``). A tag may carry
  a prefix as in the filter language (``.guild#loss``). Give the
  objective once: in ``objective:`` or after ``by``, not both.
- One base selection, spelled as for any run dependency:

  - ``operation: NAME``: every completed run of NAME, or those matching
    ``select: EXPR`` (as with ``multi-run: yes``, which is implied);
  - ``multi-run: EXPR`` or ``run: EXPR``: every run matching EXPR (a
    bare operation name: its completed runs), narrowed by ``select:
    EXPR`` when given.

- ``multi-run: no`` with ``best: 1``: install files from the single
  best run, as a one-run ``operation:`` dependency does (``select:`` is
  then the file patterns, ``target-path:``, ``rename:`` apply); the
  candidates are every completed run of the operation.
- ``name:``, ``target-path:``, ``min:``, ``description:`` as for any
  dependency. The selected runs are linked by id in the new run and
  listed in ``guild-runs.json`` best first.

Runs that never logged the objective (or logged NaN) cannot be ranked
and are left out. Runs with equal values keep the base selection's
order (newest first). When fewer runs than N qualify, all of them are
selected; none at all is an error unless ``min: 0``.

A value on the command line narrows the candidates as it does for the
base selection, and the best N of those are kept::

    guild run summary train="where x > 1"      # best 3 among x > 1
    guild run summary train="a1b2c3d4 e5f6a7b8" # best of those runs

The dependency's name (what goes before ``=``) is its ``name:``, else
the operation's name; for ``run:`` and ``multi-run:`` spellings give it
a ``name:``.
"""

from __future__ import annotations

import math
import re

from guild_core.hookspecs import hookimpl

DEFAULT_OBJECTIVE = "loss"

# Keys this plugin owns: the base selection is the spec without them.
OWN_KEYS = ("best", "objective")

_BEST_P = re.compile(r"^\s*(\S+)\s+by\s+(\S+)\s*$", re.DOTALL)
_TAG_P = re.compile(r"^[^\s-]\S*$")


@hookimpl(trylast=True)
def guild_register_resolvers(register):
    register("best", resolve_best)


def resolve_best(dep, value, ctx):
    count, objective = _best(dep.get("best"), dep.get("objective"))
    tag, minimize = _objective(objective)
    single = dep.get("multi-run") in (False, "no")
    if single and count != 1:
        raise _error(f"'multi-run: no' installs the files of one run: use 'best: 1', not {count}")
    candidates = _candidates(dep, value, ctx, single)
    ranked = _ranked(candidates, tag, minimize)
    if candidates and not ranked and _min(dep) > 0:
        raise _error(
            f"none of the {len(candidates)} candidate run(s) logged the scalar '{tag}', so none can be ranked"
        )
    return ranked[:count]


def _best(spec, objective):
    """(N, objective) from ``best: N`` or ``best: N by SCALAR``."""
    text = spec
    if isinstance(spec, str):
        m = _BEST_P.match(spec)
        if m:
            text, by = m.group(1), m.group(2)
            if objective is not None:
                raise _error(
                    f"the objective is given twice ('best: {spec.strip()}' and 'objective: {objective}'): keep one"
                )
            objective = by
    count = _int(text)
    if count is None:
        raise _error(
            f"'best' must be a number of runs, optionally followed by 'by SCALAR' "
            f"(for example 'best: 5 by loss'), got {_show(spec)}"
        )
    if count < 1:
        raise _error(f"'best' must be a positive number of runs, got {count}")
    return count, DEFAULT_OBJECTIVE if objective is None else objective


def _int(val):
    if isinstance(val, bool):
        return None
    if isinstance(val, int):
        return val
    if isinstance(val, str) and re.fullmatch(r"\s*[-+]?\d+\s*", val):
        return int(val)
    return None


def _objective(spec):
    """(tag, minimize) for ``loss`` or ``-acc``."""
    text = spec.strip() if isinstance(spec, str) else None
    minimize = True
    if text and text.startswith("-"):
        text, minimize = text[1:], False
    if not text or not _TAG_P.match(text):
        raise _error(
            f"'objective' must name a scalar to minimize, or '-SCALAR' to maximize "
            f"(for example 'loss' or '-acc'), got {_show(spec)}"
        )
    return text, minimize


def _candidates(dep, value, ctx, single):
    """The base selection: what the spec without ``best`` selects, as
    many runs, narrowed by a command-line value the same way."""
    base = {k: v for k, v in dep.items() if k not in OWN_KEYS}
    select = base.pop("select", None)
    if single:
        select = None  # the files to install from the best run
    if base.get("multi-run") not in (None, True, False, "yes", "no"):
        pass  # multi-run: EXPR
    elif "run" in base:
        # The seed's one-run spelling: here, every run it matches.
        base["multi-run"] = base.pop("run")
    elif "operation" in base:
        base["multi-run"] = "yes"
        if select is not None:
            # As a multi-run operation dependency has it: a value given
            # on the command line replaces it.
            base["select"], select = select, None
    else:
        raise _error("'best' needs runs to choose from: add 'operation: NAME', 'multi-run: EXPR' or 'run: EXPR'")
    runs = ctx.resolve(base, value)
    if select and value is None:
        runs = ctx.select(str(select), runs)
    return runs


def _ranked(runs, tag, minimize):
    """`runs` with a value for `tag`, best first (stable on ties)."""
    from guild_core.runvalues import RunValues

    scored = []
    for run in runs:
        val = RunValues(run).scalar(tag)
        if isinstance(val, (int, float)) and not isinstance(val, bool) and not math.isnan(val):
            scored.append((val, run))
    scored.sort(key=lambda item: item[0] if minimize else -item[0])
    return [run for _val, run in scored]


def _min(dep) -> int:
    try:
        return int(dep.get("min", 1))
    except (TypeError, ValueError):
        return 1  # the core reports a bad 'min'


def _show(val) -> str:
    return repr(val) if isinstance(val, str) else str(val)


def _error(msg: str):
    from guild_core.errors import GuildError

    return GuildError(msg)
