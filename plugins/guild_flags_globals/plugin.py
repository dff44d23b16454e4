"""Built-in plugin ``globals``: flags from a script's module-level variables.

A script without argparse or click declares its flags as module-level
assignments of literals::

    lr = 0.1
    epochs: int = 10
    name = "base"
    layers = [64, 32]

Detection (`guild_detect_flags`) reads them from the AST without running
the script: see `_literals` for exactly which assignments count and how
repeated names are handled. Flag types follow the literals: ``boolean``,
``number`` (for int and float literals, as Guild AI types them: a value
keeps the type it is given in), ``string``; ``None`` and lists are
auto-typed.

Runs go through `guild_flags_globals.launch` (`guild_flags_launcher`),
which rewrites those assignments to the run's flag values before
executing the script, so ``lr = 0.1`` in the script cannot overwrite the
value given on the command line.

Both hooks are ``trylast``: an installed plugin is asked first.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from guild_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from guild_core.flagdefs import FlagsInfo

DEST = "globals"
LAUNCHER = "guild_flags_globals.launch"

# Scripts other plugins handle (their flags are command-line arguments).
# A pattern, not a compiled one: the launcher imports this package at
# every run's start-up and never uses it.
_ARGS_SCRIPT_PATTERN = (
    r"^[ \t]*(?:import[ \t]+[^\n#]*\b(?:argparse|click)\b"
    r"|from[ \t]+(?:argparse|click)[ \t]+import\b)"
)


@hookimpl(trylast=True)
def guild_detect_flags(script: Path, source: str) -> FlagsInfo | None:
    if re.search(_ARGS_SCRIPT_PATTERN, source, re.MULTILINE):
        return None
    return detect_flags(source, str(script))


def detect_flags(source: str, filename: str = "<script>") -> FlagsInfo:
    """The flags of a script's module-level literal assignments."""
    import ast

    from guild_core.flagdefs import FlagDef, FlagsInfo

    from guild_flags_globals import _literals

    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        # Not Python we can read (ValueError: null bytes): no flags; the
        # run itself will report the error.
        return FlagsInfo({}, DEST)
    flags = {}
    for name, stmts in _literals.flag_assigns(tree).items():
        value = _literals.literal_value(stmts[-1].value)
        flags[name] = FlagDef(name, type=_literals.flag_type(value), default=value)
    return FlagsInfo(flags, DEST, _literals.mapping_assigns(tree))


@hookimpl(trylast=True)
def guild_flags_launcher(dest: str) -> str | None:
    # "global:NAME" (or "dict:NAME"): the flags are the keys of the
    # module's dict NAME; "namespace:NAME", the attributes of its
    # SimpleNamespace NAME.
    return LAUNCHER if dest == DEST or dest.startswith(("global:", "dict:", "namespace:")) else None
