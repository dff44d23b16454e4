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

    from guild_core.batchfiles import check_trials, read_text

    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BatchFileError(path, f"invalid JSON at line {e.lineno}: {e.msg}") from None
    return check_trials(path, data, "object")


def write(path: Path, trials: list[dict[str, Any]]) -> None:
    import json

    with open(path, "w", encoding="utf-8") as f:
        json.dump(trials, f, indent=2)
        f.write("\n")
