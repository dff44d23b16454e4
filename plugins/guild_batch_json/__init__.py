"""Built-in plugin ``json``: batch files in JSON (``.json``).

A batch file is a list of objects, one per trial, mapping flag names to
values; values keep their JSON types (numbers, strings, booleans,
``null``, lists). Rows in error messages are the 1-based position of
the object in the list.

Only the hook marker is imported at module level: ``json`` is imported
when a file is actually read or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guild_core.hookspecs import BatchFileError, hookimpl


@hookimpl(trylast=True)
def guild_register_batch_formats(register):
    register([".json"], read, write, name="json")


def read(path: Path) -> list[dict[str, Any]]:
    import json

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise BatchFileError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BatchFileError(path, f"invalid JSON at line {e.lineno}: {e.msg}") from None
    return _check_trials(path, data)


def write(path: Path, trials: list[dict[str, Any]]) -> None:
    import json

    with open(path, "w", encoding="utf-8") as f:
        json.dump(trials, f, indent=2)
        f.write("\n")


def _check_trials(path: Path, data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise BatchFileError(path, f"expected a list of objects, got {_type_name(data)}")
    for row, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise BatchFileError(path, f"expected an object, got {_type_name(item)}", row=row)
    # JSON object keys are always strings: no flag-name check needed.
    return data


def _type_name(val: Any) -> str:
    return "null" if val is None else type(val).__name__
