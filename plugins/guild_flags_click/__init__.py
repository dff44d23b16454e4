"""Built-in plugin ``click``: flags from a script's click command.

A script that imports click has its command's options as flags, as
Guild AI 0.9 imports them (``flags-dest: args:click``, also chosen when
the script imports click). `guild_detect_flags` runs the script in a
subprocess up to the command's ``main`` (what calling a click command
does), where `guild_flags_click._bootstrap` records the command, its
options and its sub-commands (for groups) and ends the process. An
operation whose ``main`` names a sub-command (``main: tool train``) gets
that sub-command's flags (`FlagsInfo.for_args`).

Values reach the script as command-line options, ``--name value``; a
boolean option (``is_flag``) is passed as its switch. Subprocess and
cache are the argparse plugin's (`guild_flags_argparse._detect`), with
this plugin's bootstrap and its own cache directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guild_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from guild_core.flagdefs import FlagsInfo

# ``import click``, ``from click import ...``, at the start of a line.
_CLICK_PATTERN = r"^[ \t]*(?:import[ \t]+[^\n#]*\bclick\b|from[ \t]+click[ \t]+import\b)"


def uses_click(source: str) -> bool:
    if "click" not in source:
        return False
    import re

    return re.search(_CLICK_PATTERN, source, re.MULTILINE) is not None


@hookimpl(trylast=True)
def guild_detect_flags(script: Path, source: str) -> FlagsInfo | None:
    if not uses_click(source):
        return None
    from . import _detect

    return _detect.detect_flags(script, source)
