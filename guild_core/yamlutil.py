"""YAML encoding exactly as Guild AI 0.9 writes run attributes."""

from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictDumper(yaml.SafeDumper):
    """Quotes 'y' and 'n', which YAML 1.1 readers other than PyYAML take
    for booleans (Guild AI's "strict" encoding)."""


def _represent_str(dumper, data):
    if data in ("y", "Y", "n", "N"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")
    return yaml.SafeDumper.represent_str(dumper, data)


_StrictDumper.add_representer(str, _represent_str)


def encode(val: Any, flow: bool = False) -> str:
    """`val` as YAML text without the document-end marker PyYAML adds to
    scalars."""
    encoded = yaml.dump(
        val, Dumper=_StrictDumper, default_flow_style=flow, indent=2, sort_keys=True
    ).strip()
    if encoded.endswith("\n..."):
        encoded = encoded[:-4]
    elif encoded == "...":
        encoded = ""
    return encoded


def decode(s: str | bytes) -> Any:
    return yaml.load(s, Loader=_Loader)
