"""Helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import click

from guild_core.errors import GuildError


# C0 controls, DEL and C1 controls: a terminal acts on them (ESC starts
# a sequence, U+009B is a one-character CSI) or they break a line.
_CONTROL_P = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}




def printable(text) -> str:
    """`text` with each control character (C0, DEL, C1) written as an
    escape: newline as ``\\n``, tab ``\\t``, carriage return ``\\r``,
    others ``\\xHH`` (ESC is ``\\x1b``). Nothing else changes (a
    backslash stays as it is), so text without control characters is
    shown exactly. For what is printed as a table row or a ``key:
    value`` line, where a raw newline would forge a row and an escape
    sequence would drive the terminal; JSON and CSV output keep the
    values as stored."""
    text = str(text)
    if not _CONTROL_P.search(text):
        return text
    return _CONTROL_P.sub(lambda m: _NAMED.get(m.group()) or f"\\x{ord(m.group()):02x}", text)


@functools.lru_cache(maxsize=1)
def plugin_manager():
    from guild_core.plugins import get_plugin_manager

    return get_plugin_manager()


def flag_detector(pm):
    """``detect(script) -> FlagsInfo | None`` through the plugin hook."""
    from guild_core.plugins import flag_detector as detector

    return detector(pm)


def flags_launcher(pm, dest: str) -> str | None:
    from guild_core.plugins import flags_launcher as launcher

    return launcher(pm, dest)


def confirm(text: str, default: bool = True) -> bool:
    """Guild's ``Continue? (Y/n)`` prompt. End of input answers no."""
    suffix = "(Y/n)" if default else "(y/N)"
    click.echo(f"{text} {suffix} ", nl=False)
    try:
        line = sys.stdin.readline()
    except KeyboardInterrupt:
        click.echo()
        return False
    if not line:
        click.echo()
        return False
    answer = line.strip().lower()
    if not answer:
        return default
    return answer in ("y", "yes")
