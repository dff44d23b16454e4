"""Built-in plugin ``argparse``: flags from a script's argparse parser.

`guild_detect_flags` runs the script in a subprocess up to its call of
``ArgumentParser.parse_args`` (or ``parse_known_args``), where a
bootstrap (`guild_flags_argparse._bootstrap`) records the parser's
options and ends the process before the script does any work. Each
``--long-option`` becomes a flag (see `_detect` for the mapping); the
result is cached by the script's content and path, so an unchanged
script is only run once.

A script that fails, hangs or never parses its arguments has no flags:
detection warns on stderr and returns an empty `FlagsInfo`; it never
raises.

The hook is ``trylast`` (an installed plugin is asked first) and
declines scripts that do not import argparse, which the built-in
``globals`` plugin handles. Only the hook marker is imported here: the
subprocess, JSON and hashing machinery is imported when a script is
actually detected, so loading plugins stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guild_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from guild_core.flagdefs import FlagsInfo

DEST = "args"

# ``import argparse``, ``import os, argparse``, ``import argparse as ap``,
# ``from argparse import ArgumentParser``: at the start of a line
# (indented imports inside ``main()`` count too).
_ARGPARSE_PATTERN = (
    r"^[ \t]*(?:import[ \t]+[^\n#]*\bargparse\b|from[ \t]+argparse[ \t]+import\b)"
)


def uses_argparse(source: str) -> bool:
    """Whether `source` imports argparse."""
    if "argparse" not in source:
        return False
    import re

    return re.search(_ARGPARSE_PATTERN, source, re.MULTILINE) is not None


@hookimpl(trylast=True)
def guild_detect_flags(script: Path, source: str) -> FlagsInfo | None:
    if not uses_argparse(source):
        return None
    from . import _detect

    return _detect.detect_flags(script, source)
