"""YAML encoding exactly as Guild AI 0.9 writes run attributes.

Writing a run's attributes is on every run's start-up path, and
importing PyYAML costs more than the rest of the write. `encode` emits
the common shapes (numbers, plain words, and mappings and lists of
them) itself, byte for byte as PyYAML would, and hands anything it is
not sure about to PyYAML. A test checks the two agree.
"""

from __future__ import annotations

import re
from typing import Any

_PLAIN_P = re.compile(r"^[A-Za-z_/$][A-Za-z0-9_./${}+-]*$")
# Words YAML 1.1 readers take for something other than a string.
_RESERVED = {
    "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "true", "True",
    "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    "null", "Null", "NULL",
}
_FLOAT_P = re.compile(r"^-?[0-9]+\.[0-9]+$")


class _Unsure(Exception):
    pass


def encode(val: Any, flow: bool = False) -> str:
    """`val` as YAML text without the document-end marker PyYAML adds to
    scalars."""
    if not flow:
        try:
            return "\n".join(_block(val, 0))
        except _Unsure:
            pass
    return _pyyaml_encode(val, flow)


def _scalar(val: Any) -> str:
    if val is None:
        return "null"
    if val is True:
        return "true"
    if val is False:
        return "false"
    if isinstance(val, int):
        return str(val)
    if isinstance(val, float):
        s = repr(val)
        if _FLOAT_P.match(s):
            return s
        raise _Unsure
    if isinstance(val, str):
        if val in ("y", "Y", "n", "N"):
            return f"'{val}'"
        if val == "":
            return "''"
        if _PLAIN_P.match(val) and val not in _RESERVED:
            return val
        return _str(val)
    raise _Unsure


# PyYAML's implicit resolvers: a plain scalar matching one of these would
# read back as something other than a string, so it must be quoted.
_IMPLICIT = (
    r"""^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
    |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
    |<<|~|null|Null|NULL|=
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?.*)$"""
)
_IMPLICIT_P = None  # compiled on first use: most runs never need it
_PRINTABLE_P = re.compile(r"^[\x20-\x7e]+$")


def _str(val: str) -> str:
    """A string that is not a simple word: plain if PyYAML would write it
    plain, else single-quoted; anything subtler goes to PyYAML."""
    global _IMPLICIT_P
    if not _PRINTABLE_P.match(val) or len(val) > 70:
        raise _Unsure
    if _IMPLICIT_P is None:
        _IMPLICIT_P = re.compile(_IMPLICIT, re.X)  # non-ASCII, line breaks, or long enough to be folded
    plain = not (
        val[0] == " "
        or val[-1] == " "
        or val[0] in "#,[]{}&*!|>'\"%@`"
        or (val[0] in "?:-" and (len(val) == 1 or val[1] == " "))
        or ": " in val
        or val.endswith(":")
        or " #" in val
        or _IMPLICIT_P.match(val)
    )
    if plain:
        return val
    return "'" + val.replace("'", "''") + "'"


def _block(val: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(val, dict):
        if not val:
            return [pad + "{}"]
        lines = []
        for key in sorted(val):
            if not isinstance(key, str):
                raise _Unsure
            k = _scalar(key)
            item = val[key]
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{k}:")
                lines.extend(_block(item, indent + 2))
            elif isinstance(item, list) and item:
                lines.append(f"{pad}{k}:")
                lines.extend(_block(item, indent))
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}{k}: {'{}' if isinstance(item, dict) else '[]'}")
            else:
                lines.append(f"{pad}{k}: {_scalar(item)}")
        return lines
    if isinstance(val, list):
        if not val:
            return [pad + "[]"]
        lines = []
        for item in val:
            if isinstance(item, (dict, list)):
                raise _Unsure
            lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [pad + _scalar(val)]


def _pyyaml_encode(val: Any, flow: bool) -> str:
    import yaml

    encoded = yaml.dump(
        val, Dumper=_strict_dumper(), default_flow_style=flow, indent=2, sort_keys=True
    ).strip()
    if encoded.endswith("\n..."):
        encoded = encoded[:-4]
    elif encoded == "...":
        encoded = ""
    return encoded


_DUMPER = None


def _strict_dumper():
    """PyYAML's SafeDumper, quoting 'y' and 'n', which YAML 1.1 readers
    other than PyYAML take for booleans (Guild AI's "strict" encoding)."""
    global _DUMPER
    if _DUMPER is None:
        import yaml

        class StrictDumper(yaml.SafeDumper):
            pass

        def represent_str(dumper, data):
            if data in ("y", "Y", "n", "N"):
                return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")
            return yaml.SafeDumper.represent_str(dumper, data)

        StrictDumper.add_representer(str, represent_str)
        _DUMPER = StrictDumper
    return _DUMPER


_INT_P = re.compile(r"-?(?:0|[1-9][0-9]*)$")
NOT_FAST = object()


def _fast_scalar(word: str) -> Any:
    if word in ("true", "false"):
        return word == "true"
    if word == "null":
        return None
    if _INT_P.match(word):
        return int(word)
    if _FLOAT_P.match(word):
        return float(word)
    if len(word) >= 2 and word[0] == "'" and word[-1] == "'":
        return word[1:-1].replace("''", "'")
    if word == "{}":
        return {}
    if word == "[]":
        return []
    return word


def fast_decode(text: str) -> Any:
    """What PyYAML reads from `text`, for text `encode` writes itself (a
    word, a number, a flat mapping or list of them); `NOT_FAST` for
    anything else. Reading attributes is most of building the run
    index, and PyYAML's constructor is slow.

    Sound by construction: a value is returned only when `encode` turns
    it back into exactly `text`, and `encode` writes what PyYAML writes
    (a test checks), which PyYAML reads back as that value."""
    if text.endswith("\n...\n"):
        body = text[:-5]
    elif text.endswith("\n"):
        body = text[:-1]
    else:
        body = text
    if not body:
        return NOT_FAST
    lines = body.split("\n")
    first = lines[0]
    if len(lines) == 1 and not first.startswith("- ") and ": " not in first and not first.endswith(":"):
        val = _fast_scalar(first)
    elif all(": " in line and line[0] != " " for line in lines):
        val = {}
        for line in lines:
            key, _, item = line.partition(": ")
            key = _fast_scalar(key)
            if key in val or not isinstance(key, str):
                return NOT_FAST
            val[key] = _fast_scalar(item)
    elif all(line.startswith("- ") for line in lines):
        val = [_fast_scalar(line[2:]) for line in lines]
    else:
        return NOT_FAST
    try:
        if "\n".join(_block(val, 0)) != body:
            return NOT_FAST
    except (_Unsure, TypeError):
        return NOT_FAST
    return val


def decode(s: str | bytes) -> Any:
    import yaml

    return yaml.load(s, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
