"""Helpers for batch-file format plugins: reading text and checking that
a parsed file is a list of flag mappings, with errors naming file and row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .hookspecs import BatchFileError


def read_text(path: Path) -> str:
    """The file's text; utf-8-sig because spreadsheets often start files
    with a byte-order mark."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise BatchFileError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def check_trials(path: Path, data: Any, item_name: str) -> list[dict[str, Any]]:
    """`data` as a list of trials: a list of mappings with string keys.
    `item_name` is the format's word for a mapping ("object", "mapping")."""
    if not isinstance(data, list):
        raise BatchFileError(path, f"expected a list of {item_name}s, got {type_name(data)}")
    for row, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise BatchFileError(path, f"expected {_article(item_name)} {item_name}, got {type_name(item)}", row=row)
        for key in item:
            if not isinstance(key, str):
                raise BatchFileError(
                    path, f"flag names must be strings, got {type_name(key)} {key!r}", row=row
                )
    return data


def type_name(val: Any) -> str:
    return "null" if val is None else type(val).__name__


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
