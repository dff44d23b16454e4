"""Built-in plugin ``yaml``: batch files in YAML (``.yml``, ``.yaml``).

A batch file is a list of mappings, one per trial, mapping flag names
to values; values keep their YAML types. Rows in error messages are the
1-based position of the mapping in the list; syntax errors give the
line of the problem.

Only the hook marker is imported at module level: PyYAML is imported
when a file is actually read or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guild_core.hookspecs import BatchFileError, hookimpl


@hookimpl(trylast=True)
def guild_register_batch_formats(register):
    register([".yml", ".yaml"], read, write, name="yaml")


def read(path: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise BatchFileError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BatchFileError(path, _yaml_error(e)) from None
    if data is None and yaml.compose(text, Loader=yaml.SafeLoader) is None:
        raise BatchFileError(path, "expected a list of mappings, got an empty file")
    return _check_trials(path, data)


def _yaml_error(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if mark is not None and problem:
        return f"invalid YAML at line {mark.line + 1}: {problem}"
    return f"invalid YAML: {e}"


def _check_trials(path: Path, data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise BatchFileError(path, f"expected a list of mappings, got {_type_name(data)}")
    for row, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise BatchFileError(path, f"expected a mapping, got {_type_name(item)}", row=row)
        for key in item:
            if not isinstance(key, str):
                raise BatchFileError(
                    path, f"flag names must be strings, got {_type_name(key)} {key!r}", row=row
                )
    return data


def _type_name(val: Any) -> str:
    return "null" if val is None else type(val).__name__


def write(path: Path, trials: list[dict[str, Any]]) -> None:
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(trials, f, default_flow_style=False, sort_keys=False)
