"""Helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from guild_core.errors import GuildError


@functools.lru_cache(maxsize=1)
def plugin_manager():
    from guild_core.plugins import get_plugin_manager

    return get_plugin_manager()


def flag_detector(pm):
    """``detect(script) -> FlagsInfo | None`` through the plugin hook."""

    def detect(script: Path):
        try:
            source = script.read_text(errors="replace")
        except OSError as e:
            raise GuildError(f"cannot read {script}: {e.strerror}") from None
        return pm.hook.guild_detect_flags(script=script, source=source)

    return detect


def flags_launcher(pm, dest: str) -> str | None:
    if dest == "args":
        return None
    launcher = pm.hook.guild_flags_launcher(dest=dest)
    if launcher is None:
        raise GuildError(
            f"unsupported flags-dest '{dest}' (no plugin handles it; "
            "see 'guild plugins')"
        )
    return launcher


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
