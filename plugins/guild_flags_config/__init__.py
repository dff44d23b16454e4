"""Built-in plugin ``config``: flags that live in a config file.

An operation with ``flags-dest: config:FILE`` (YAML, JSON or INI, by the
file's extension, as Guild AI reads them) takes its flags from FILE:
every value, nested keys as dotted names (``train.lr``; INI as
``section.key``), imported as guild.yml's ``flags-import`` says. When
the run starts, `guild_flags_config.launch` writes the run's copy of
FILE with the run's flag values, then runs the script with no flag
arguments: the script reads its config file as it always does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guild_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from guild_core.flagdefs import FlagsInfo

LAUNCHER = "guild_flags_config.launch"
SUFFIXES = (".yml", ".yaml", ".json", ".ini", ".cfg")


@hookimpl
def guild_detect_flags(script: Path, source: str) -> FlagsInfo | None:
    if script.suffix.lower() not in SUFFIXES:
        return None
    from guild_core.flagdefs import FlagDef, FlagsInfo

    from guild_core.flags import dotted

    values = dotted(load(script.suffix, source, str(script)))
    flags = {name: FlagDef(name, default=val, type=_type_of(val)) for name, val in values.items()}
    return FlagsInfo(flags=flags, dest=f"config:{script.name}")


@hookimpl
def guild_flags_launcher(dest: str) -> str | None:
    return LAUNCHER if dest.startswith("config:") else None


class ConfigError(Exception):
    pass


def load(suffix: str, text: str, where: str) -> dict[str, Any]:
    """A config file's data, by its suffix."""
    suffix = suffix.lower()
    try:
        if suffix == ".json":
            import json

            data = json.loads(text) if text.strip() else {}
        elif suffix in (".ini", ".cfg"):
            import configparser

            parser = configparser.ConfigParser(interpolation=None)
            parser.optionxform = str  # keep the keys' case
            parser.read_string(text)
            data = {s: {k: _ini_value(v) for k, v in parser[s].items()} for s in parser.sections()}
        else:
            import yaml

            data = yaml.safe_load(text) if text.strip() else {}
    except Exception as e:
        from guild_core.errors import GuildError

        raise GuildError(f"{where}: cannot read config file: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        from guild_core.errors import GuildError

        raise GuildError(f"{where}: a config file for flags must hold a mapping")
    return data


def _ini_value(text: str) -> Any:
    from guild_core.flags import decode_auto

    return decode_auto(text)


def _type_of(val: Any) -> str | None:
    if isinstance(val, bool):
        return "boolean"
    if isinstance(val, int):
        return "int"
    if isinstance(val, float):
        return "float"
    if isinstance(val, str):
        return "string"
    return None
