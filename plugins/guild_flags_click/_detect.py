"""Learn a click script's flags: its recorded command mapped to flag
definitions, through the argparse plugin's subprocess and cache.

Mapping (one `FlagDef` per option with a ``--long`` name, in order):

- ``is_flag`` options: type ``boolean``, passed as the bare switch when
  the value differs from the default; a ``True`` default with a
  ``--no-x`` form passes ``--no-x`` for ``False``.
- other options: type from click's (``integer`` -> ``int``, ``float``,
  ``text`` -> ``string``, ``boolean``; others auto), ``Choice`` choices,
  ``help``, ``required``, and the default when it is a plain value.
- Skipped: arguments (positionals), ``count``, ``multiple`` and
  multi-value options, options with no ``--long`` name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from guild_core.flagdefs import FlagDef, FlagsInfo

from guild_flags_argparse import _detect as probe

CACHE_VERSION = "click-1"
CACHE_NAME = "flags-click"
BOOTSTRAP = Path(__file__).with_name("_bootstrap.py")
DEST = "args:click"

_TYPES = {"integer": "int", "float": "float", "text": "string", "boolean": "boolean"}


def detect_flags(script: Path, source: str) -> FlagsInfo:
    """The flags of a click script; never raises (a warning on stderr
    and no flags when the command cannot be learned)."""
    script = Path(script).absolute()
    try:
        key = probe.cache_key(script, source, CACHE_VERSION)
        path = probe.cache_path(key, CACHE_NAME)
        learned = probe.read_cache(path, CACHE_VERSION)
        if learned is None:
            learned = probe.learn_parser(script, BOOTSTRAP)
            learned = {"actions": learned["actions"], "subcommands": learned.get("subcommands") or {}}
            if probe.cache_key(script, source, CACHE_VERSION) == key:
                probe.write_cache(path, script, learned, CACHE_VERSION)
        return _info(learned)
    except probe.DetectError as e:
        reason = str(e)
    except Exception as e:  # noqa: BLE001 - detection must never break a run
        reason = f"{type(e).__name__}: {e}"
    try:
        print(f"guild: cannot detect flags for {script}: {reason}", file=sys.stderr)
    except Exception:  # noqa: BLE001
        pass
    return FlagsInfo(flags={}, dest=DEST)


def _info(learned: dict[str, Any]) -> FlagsInfo:
    flags: dict[str, FlagDef] = {}
    for action in learned.get("actions") or ():
        fd = flagdef(action) if isinstance(action, dict) else None
        if fd is not None and fd.name not in flags:
            flags[fd.name] = fd
    subs = learned.get("subcommands") or {}
    return FlagsInfo(
        flags=flags,
        dest=DEST,
        subcommands={str(n): _info(sub) for n, sub in subs.items() if isinstance(sub, dict)},
    )


def flagdef(action: dict[str, Any]) -> FlagDef | None:
    kind = action.get("kind")
    longs = [o for o in action.get("options") or () if isinstance(o, str) and len(o) > 2]
    if kind not in ("switch", "store") or not longs:
        return None
    name = longs[0][2:]
    default = action.get("default")
    description = action.get("help") or ""
    if kind == "switch":
        negative = [o for o in action.get("negative") or () if isinstance(o, str)]
        if default is True and negative:
            return FlagDef(name, type="boolean", default=True, description=description,
                           arg_name=negative[0][2:], arg_switch=False)
        # Without a --no- form a True default cannot be turned off.
        return FlagDef(name, type="boolean", default=bool(default), description=description, arg_switch=True)
    choices = action.get("choices")
    return FlagDef(
        name,
        type=_TYPES.get(action.get("type")),
        default=default,
        choices=list(choices) if isinstance(choices, list) else None,
        required=bool(action.get("required")),
        description=description,
    )
