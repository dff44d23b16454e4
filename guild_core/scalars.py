"""Scalars from run output: Guild AI's output-scalar rules.

By default a line ``loss: 0.25`` logs ``loss``; ``loss: 0.25 (step 3)``
also sets the step, and a ``step: N`` line sets it for what follows.
Where Guild AI logs every repeat of a key at the same step, we imply the
step: a key logged again with no step given advances its own step, so
``progress: 1``, ``progress: 2``... plot as a curve.

guild.yml's ``output-scalars`` replaces the default patterns: a list of
regexes (two groups: key and value) or mappings ``key: regex`` (one
group: the value); ``\\key``, ``\\value`` and ``\\step`` are aliases.
``output-scalars: no`` turns scalar logging off.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from .errors import OpDefError

ALIASES = [
    (re.compile(r"\\key"), r"[^ \t]+"),
    (re.compile(r"\\value"), r"[-+]?[0-9\.]+(?:[eE][-+]?[0-9]+)?|[-+]?inf|nan"),
    (re.compile(r"\\step"), r"[0-9]+"),
]

DEFAULT_OUTPUT_SCALARS = [
    r"^(\key):\s+(\value)\s+\((?:step\s+)?(?P<step>\step)\)$",
    r"^(\key):\s+(\value)(?:\s+\(.*\))?$",
]


def compile_patterns(config: Any) -> list[tuple[str | None, re.Pattern]]:
    """Compile an ``output-scalars`` config (None means the defaults)."""
    if config is None:
        config = DEFAULT_OUTPUT_SCALARS
    if config is False:
        return []
    if isinstance(config, (str, dict)):
        config = [config]
    if not isinstance(config, list):
        raise OpDefError(f"invalid output-scalars: {config!r}")
    patterns = []
    for item in config:
        if isinstance(item, str):
            patterns.append((None, _compile(item)))
        elif isinstance(item, dict):
            for key, val in item.items():
                if not isinstance(val, str):
                    raise OpDefError(f"invalid output-scalars pattern for {key!r}: {val!r}")
                patterns.append((str(key), _compile(val)))
        else:
            raise OpDefError(f"invalid output-scalars item: {item!r}")
    return patterns


def _compile(pattern: str) -> re.Pattern:
    for alias, repl in ALIASES:
        pattern = alias.sub(lambda _m, r=repl: f"(?:{r})", pattern)
    try:
        return re.compile(pattern)
    except re.error as e:
        raise OpDefError(f"invalid output-scalars pattern {pattern!r}: {e}") from None


class OutputScalars:
    """Turns output lines into ``(key, value, step)`` records."""

    def __init__(self, config: Any = None):
        self._patterns = compile_patterns(config)
        self._step: int | None = None
        self._counts: dict[str, int] = {}

    def lines(self, lines: Iterable[str]) -> list[tuple[str, float, int]]:
        out = []
        for line in lines:
            out.extend(self.line(line))
        return out

    def line(self, line: str) -> list[tuple[str, float, int]]:
        vals, step = _match(line.rstrip(), self._patterns)
        if "step" in vals:
            # A ``step: N`` line moves the step; it is not itself a scalar.
            step = int(vals.pop("step"))
        if step is not None:
            self._step = step
        records = []
        for key, val in sorted(vals.items()):
            count = self._counts.get(key, 0)
            self._counts[key] = count + 1
            use_step = self._step if self._step is not None else count
            records.append((key, val, use_step))
        return records


def _match(line: str, patterns) -> tuple[dict[str, float], int | None]:
    vals: dict[str, float] = {}
    step = None
    for key, p in patterns:
        for m in p.finditer(line):
            groupdict = {k: v for k, v in m.groupdict().items() if v is not None}
            if "step" in groupdict:
                step = int(groupdict.pop("step"))
            if "_key" in groupdict and "_val" in groupdict:
                _apply(vals, groupdict["_key"], groupdict["_val"])
                continue
            if groupdict and not m.re.groups - len(m.groupdict()):
                for name, s in groupdict.items():
                    _apply(vals, name, s)
                continue
            groups = [g for i, g in enumerate(m.groups(), 1) if i not in _named_indexes(m.re)]
            if key is not None and len(groups) >= 1:
                _apply(vals, key, groups[0])
            elif len(groups) >= 2:
                _apply(vals, groups[0], groups[1])
    return vals, step


def _named_indexes(p: re.Pattern) -> set[int]:
    return set(p.groupindex.values())


def _apply(vals: dict[str, float], key: str, s: str) -> None:
    try:
        vals[key] = float(s)
    except (TypeError, ValueError):
        pass
