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

    from guild_core.batchfiles import check_trials, read_text

    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BatchFileError(path, _yaml_error(e)) from None
    if data is None and yaml.compose(text, Loader=yaml.SafeLoader) is None:
        raise BatchFileError(path, "expected a list of mappings, got an empty file")
    return check_trials(path, data, "mapping")


def _yaml_error(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if mark is not None and problem:
        return f"invalid YAML at line {mark.line + 1}: {problem}"
    return f"invalid YAML: {e}"


def write(path: Path, trials: list[dict[str, Any]]) -> None:
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(trials, f, default_flow_style=False, sort_keys=False)
