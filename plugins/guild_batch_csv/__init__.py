"""Built-in plugin ``csv``: batch files in CSV (``.csv``).

The first row is a header of flag names; each later row is one trial.
Cells are typed like command-line values (``0.1`` is a float, ``2`` an
int, ``[1, 2]`` a list, ``yes`` a boolean, anything else a string); an
empty cell leaves the flag unset in that trial. Blank lines are skipped.
Rows are numbered from 1 with the header as row 1, counting blank lines,
so error messages match the line a spreadsheet or editor shows (a quoted
value spanning lines counts as one row).

Written files have a header that is the union of the trials' flag names
in first-seen order; a flag a trial does not set is an empty cell.

Only the hook marker is imported at module level: ``csv`` and the flag
value codec are imported when a file is actually read or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guild_core.hookspecs import BatchFileError, BatchRows, hookimpl


@hookimpl(trylast=True)
def guild_register_batch_formats(register):
    register([".csv"], read, write, name="csv")


def read(path: Path) -> list[dict[str, Any]]:
    import csv

    from guild_core.flags import decode_auto

    from guild_core.batchfiles import read_text

    text = read_text(path)
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    header: list[str] | None = None
    trials: list[dict[str, Any]] = []
    rows: list[int] = []
    row_no = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            msg = "unterminated quote" if "unexpected end of data" in str(e) else f"invalid CSV: {e}"
            raise BatchFileError(path, msg, row=row_no + 1) from None
        row_no += 1
        if len(cells) <= 1 and not "".join(cells).strip():
            continue  # a blank line
        if header is None:
            header = _header(path, cells, row_no)
            continue
        if len(cells) != len(header):
            raise BatchFileError(
                path, f"expected {len(header)} values, got {len(cells)}", row=row_no
            )
        trials.append(
            {name: decode_auto(cell) for name, cell in zip(header, cells) if cell.strip()}
        )
        rows.append(row_no)
    if header is None:
        raise BatchFileError(path, "no header row")
    return BatchRows(trials, rows)


def _header(path: Path, cells: list[str], row_no: int) -> list[str]:
    names = [c.strip() for c in cells]
    seen: set[str] = set()
    for i, name in enumerate(names, 1):
        if not name:
            raise BatchFileError(path, f"empty flag name in header (column {i})", row=row_no)
        if name in seen:
            raise BatchFileError(path, f"duplicate flag name '{name}' in header", row=row_no)
        seen.add(name)
    return names


def write(path: Path, trials: list[dict[str, Any]]) -> None:
    import csv

    from guild_core.flags import encode_value

    header: list[str] = []
    for trial in trials:
        for name in trial:
            if name not in header:
                header.append(name)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        for trial in trials:
            out.writerow([encode_value(trial[n]) if n in trial else "" for n in header])
