"""Compare tables: column specs, run values, sorting and formatting.

`guild compare` and `guild select --min/--max` share this module; it
knows no click. The table is Guild AI 0.9's:

- **core** columns: ``.run,.operation,.started,.time,.status,.label``
  (only ``.run`` with `skip_core`; ``.sourcecode`` added by
  `extra_cols`);
- **operation** columns, per run: the run's ``compare`` attribute when it
  has one, else every flag (``=name``, sorted), a ``step`` column (the
  step of ``loss``, or of the first scalar) and the last value of every
  scalar (sorted; ``sys/*`` scalars only with `all_scalars`);
- **user** columns: the `cols` spec.

Columns are named by their header and merged by it: the header row lists
each name once, in order of first appearance (core, then operation
columns run by run, then user columns), and a cell takes the value from
the last section that has one (user over operation over core).

Column specs (``COL[,COL...]``), as Guild AI's query language:

- ``=NAME`` or ``flag:NAME``: a flag;
- ``.NAME`` or ``attr:NAME``: a run attribute (``run``, ``operation``,
  ``started``, ``time``, ``status``, ``label``, ``id``, ``sourcecode``...
  or any file in ``.guild/attrs``);
- ``[QUALIFIER] KEY [step]`` or ``scalar:KEY``: a scalar, where
  QUALIFIER is ``first``, ``last`` (the default), ``min``, ``max``,
  ``avg``, ``total`` or ``count``, and ``step`` gives the step of that
  value (first, last, min and max only);
- any column ``... as HEADING`` (quote headings with spaces).

One departure from Guild AI: a qualified scalar's header keeps its
qualifier (``min loss``), where Guild AI names ``min loss`` and
``max loss`` both ``loss`` and so merges them into one column.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import GuildError
from .run import Run
from .runvalues import RunValues

CORE_COLS = ".run,.operation,.started,.time,.status,.label"
MIN_CORE_COLS = ".run"
EXTRA_COLS = ".sourcecode"

QUALIFIERS = ("first", "last", "min", "max", "avg", "total", "count")
_STEP_QUALIFIERS = ("first", "last", "min", "max")
_RESERVED = set(QUALIFIERS) | {"step", "as", "select"}

FLOAT_DIGITS = 6


class ColSpecError(GuildError):
    pass


# -- column specs ----------------------------------------------------


@dataclass(frozen=True)
class Col:
    """One column: a flag, an attribute or a scalar."""

    kind: str  # "flag" | "attr" | "scalar"
    name: str
    qualifier: str | None = None
    step: bool = False
    alias: str | None = None

    @property
    def header(self) -> str:
        if self.alias:
            return self.alias
        if self.kind != "scalar":
            return self.name
        key = self.name.replace("#", " ").strip()
        qual = f"{self.qualifier} " if self.qualifier else ""
        step = " step" if self.step else ""
        return f"{qual}{key}{step}"


_TOKEN_P = re.compile(
    r"""
    (?P<ws>[ \t\n]+)
  | (?P<prefix>scalar:|attr:|flag:)
  | (?P<dot>\.)
  | (?P<comma>,)
  | (?P<equals>=)
  | (?P<quoted>"(?:[^\\\n"]|\\.)*"|'(?:[^\n']|'')*')
  | (?P<word>[^'",\n \t][^ ,\n\t]*)
    """,
    re.VERBOSE,
)


def _tokens(spec: str) -> list[tuple[str, str, int]]:
    """(kind, value, pos): kinds prefix, dot, comma, equals, quoted
    (value unquoted), word, or a reserved word (its own kind)."""
    out = []
    pos = 0
    while pos < len(spec):
        m = _TOKEN_P.match(spec, pos)
        if not m:
            # Only an unterminated quote gets here.
            raise ColSpecError(f"invalid column spec '{spec}': unterminated quote at {pos}")
        kind = m.lastgroup
        text = m.group()
        if kind == "word" and text in _RESERVED:
            kind = text
        elif kind == "quoted":
            text = _unquote(text)
        if kind != "ws":
            out.append((kind, text, pos))
        pos = m.end()
    return out


def _unquote(s: str) -> str:
    if s[0] == "'":
        return s[1:-1].replace("''", "'")
    import json

    try:
        return json.loads(s)
    except ValueError:
        return s[1:-1]


def parse_colspec(spec: str) -> list[Col]:
    """The columns of a comma-separated spec. Raises ColSpecError."""
    toks = _tokens(spec)
    if not toks:
        raise ColSpecError(f"invalid column spec '{spec}': it is empty")
    cols = []
    i = 0

    def fail(msg: str):
        raise ColSpecError(f"invalid column spec '{spec}': {msg}")

    def term(what: str) -> str:
        nonlocal i
        if i >= len(toks):
            fail(f"expected {what} at the end")
        kind, val, pos = toks[i]
        if kind not in ("word", "quoted"):
            fail(f"expected {what} at {pos}, found '{val}'")
        i += 1
        return val

    while True:
        if i >= len(toks):
            fail("expected a column at the end")
        kind, val, _pos = toks[i]
        if kind == "dot":
            i += 1
            col = Col("attr", term("an attribute name"))
        elif kind == "prefix" and val == "attr:":
            i += 1
            col = Col("attr", term("an attribute name"))
        elif kind == "equals" or (kind == "prefix" and val == "flag:"):
            i += 1
            col = Col("flag", term("a flag name"))
        else:
            qual = None
            if kind in QUALIFIERS:
                qual = kind
                i += 1
            if i < len(toks) and toks[i][0] == "prefix" and toks[i][1] == "scalar:":
                i += 1
            col = Col("scalar", term("a scalar name"), qual)
            if i < len(toks) and toks[i][0] == "step":
                i += 1
                if (qual or "last") not in _STEP_QUALIFIERS:
                    fail(f"'{qual} ... step' is not supported (only first, last, min and max have a step)")
                col = Col("scalar", col.name, qual, step=True)
        if i < len(toks) and toks[i][0] == "as":
            i += 1
            if i >= len(toks):
                fail("expected a heading after 'as'")
            akind, aval, apos = toks[i]
            if akind in ("comma", "dot", "equals", "prefix"):
                fail(f"expected a heading after 'as' at {apos}")
            i += 1
            col = Col(col.kind, col.name, col.qualifier, col.step, aval)
        cols.append(col)
        if i >= len(toks):
            return cols
        kind, val, pos = toks[i]
        if kind != "comma":
            fail(f"unexpected '{val}' at {pos}")
        i += 1


def parse_one(spec: str) -> Col:
    cols = parse_colspec(spec)
    if len(cols) > 1:
        raise ColSpecError(f"invalid column spec '{spec}': expected one column, found {len(cols)}")
    return cols[0]


# -- run values ------------------------------------------------------


def col_value(rv: RunValues, col: Col) -> Any:
    if col.kind == "flag":
        return rv.flag(col.name)
    if col.kind == "attr":
        return rv.attr(col.name)
    return rv.scalar(col.name, col.qualifier, col.step)


# -- the table -------------------------------------------------------


@dataclass
class Options:
    cols: str | None = None
    strict_cols: str | None = None
    skip_core: bool = False
    skip_op_cols: bool = False
    skip_flags: bool = False
    skip_scalars: bool = False
    extra_cols: bool = False
    all_scalars: bool = False
    min_col: str | None = None
    max_col: str | None = None
    limit: int | None = None
    skip_unchanged: bool = False
    include_batch: bool = False


@dataclass
class Table:
    """Raw values: `rows[i]` belongs to `runs[i]`; None is missing."""

    header: list[str]
    rows: list[list[Any]]
    runs: list[Run] = field(default_factory=list)


def is_batch(run: Run) -> bool:
    return run.has_proto


def build(runs: list[Run], opts: Options, warn=None) -> Table:
    """The compare table for `runs` (in their order, unless sorted)."""
    if opts.cols is not None and opts.strict_cols is not None:
        raise GuildError("--cols cannot be used with --strict-cols")
    if opts.min_col and opts.max_col:
        raise GuildError("--min and --max cannot both be specified")
    user_spec = opts.cols
    skip_core, skip_op = opts.skip_core, opts.skip_op_cols
    if opts.strict_cols is not None:
        user_spec, skip_core, skip_op = opts.strict_cols, True, True
    core_spec = MIN_CORE_COLS if skip_core else CORE_COLS
    if opts.extra_cols:
        core_spec += "," + EXTRA_COLS
    core_cols = parse_colspec(core_spec)
    user_cols = parse_colspec(user_spec) if user_spec is not None else []
    if not opts.include_batch:
        runs = [run for run in runs if not is_batch(run)]
    warn = warn or _warn
    now = time.time()
    values = [RunValues(run, now) for run in runs]
    sections = []
    for rv in values:
        op_cols = [] if skip_op else op_columns(rv, opts, warn)
        sections.append(
            [[(c.header, col_value(rv, c)) for c in cols] for cols in (core_cols, op_cols, user_cols)]
        )
    header: list[str] = []
    seen = set()
    for i in range(3):
        for secs in sections:
            for name, _val in secs[i]:
                if name not in seen:
                    seen.add(name)
                    header.append(name)
    rows = [_merged(header, secs) for secs in sections]
    table = Table(header, rows, list(runs))
    sort_col = opts.min_col or opts.max_col
    if sort_col:
        _sort(table, sort_col, values, reverse=bool(opts.max_col))
    if opts.limit:
        table.rows = table.rows[: opts.limit]
        table.runs = table.runs[: opts.limit]
    return table


def _merged(header: list[str], sections) -> list[Any]:
    # Guild AI's rule: the last section with a value wins; within a
    # section, the first cell.
    merged: dict[str, Any] = {}
    for cells in sections:
        first: dict[str, Any] = {}
        for cell_name, cell_val in cells:
            if cell_val is not None and cell_name not in first:
                first[cell_name] = cell_val
        merged.update(first)
    return [merged.get(name) for name in header]


def op_columns(rv: RunValues, opts: Options, warn) -> list[Col]:
    """The run's own columns: its ``compare`` attribute, or its flags,
    step and scalars."""
    compare = rv.run.get("compare")
    if isinstance(compare, list) and compare:
        cols = []
        for spec in compare:
            try:
                cols.extend(parse_colspec(str(spec)))
            except ColSpecError as e:
                warn(f"run {rv.run.short_id}: {e}")
        return cols
    cols = []
    if not opts.skip_flags:
        flags = rv.run.get("flags")
        if isinstance(flags, dict):
            cols.extend(Col("flag", str(name)) for name in sorted(flags, key=str))
    if not opts.skip_scalars:
        tags = sorted(
            tag for tag in rv.scalars() if opts.all_scalars or not tag.startswith("sys/")
        )
        if tags:
            step_tag = "loss" if "loss" in tags else tags[0]
            cols.append(Col("scalar", step_tag, step=True, alias="step"))
            cols.extend(Col("scalar", tag) for tag in tags)
    return cols


def _warn(msg: str) -> None:
    sys.stderr.write(f"WARNING: {msg}\n")


class _SortKey:
    """Guild AI's order: missing values last either way; numbers by
    value; other mixed types by their text."""

    __slots__ = ("val", "missing_high")

    def __init__(self, val, missing_high):
        self.val = val
        self.missing_high = missing_high

    def __lt__(self, other):
        return key_lt(self.val, other.val, self.missing_high)


def key_lt(val, other, missing_high: bool) -> bool:
    if val is None:
        return other is not None and not missing_high
    if other is None:
        return missing_high
    if isinstance(val, (int, float)) and isinstance(other, (int, float)):
        return val < other
    if type(val) is type(other):
        try:
            return val < other
        except TypeError:
            pass
    return str(val) < str(other)


def _sort(table: Table, col: str, values: list[RunValues], reverse: bool) -> None:
    if col in table.header:
        i = table.header.index(col)
        keys = [row[i] for row in table.rows]
    else:
        # Not a shown column: sort by the column spec itself.
        try:
            spec = parse_one(col)
        except ColSpecError:
            raise GuildError(f"no such column '{col}'") from None
        keys = [col_value(rv, spec) for rv in values]
        if table.rows and all(k is None for k in keys):
            raise GuildError(f"no such column '{col}'")
    order = sort_order(keys, reverse)
    table.rows = [table.rows[i] for i in order]
    table.runs = [table.runs[i] for i in order]


def sort_order(keys: list[Any], reverse: bool = False, numeric: bool = False) -> list[int]:
    """The indexes of `keys` in sorted order (stable), missing values
    last either way. By value (as --min/--max): numbers by value, other
    mixed types by their text. `numeric`: only numbers, and text that
    reads as one, by value (NaN after the other numbers); everything
    else last, in its order."""
    if numeric:
        nums = [_number(k) for k in keys]
        sign = -1 if reverse else 1
        return sorted(
            range(len(keys)),
            key=lambda i: (1, 0, 0.0) if nums[i] is None
            else (0, 1, 0.0) if math.isnan(nums[i])
            else (0, 0, sign * nums[i]),
        )
    return sorted(range(len(keys)), key=lambda i: _SortKey(keys[i], not reverse), reverse=reverse)


def _number(val: Any) -> float | None:
    if isinstance(val, bool):
        return None
    if isinstance(val, (int, float)):
        return float(val)
    if isinstance(val, str):
        try:
            return float(val)
        except ValueError:
            return None
    return None


def changed_columns(rows: list[list[Any]]) -> list[int]:
    """The indexes of the columns whose values differ between rows
    (with fewer than two rows, every column)."""
    if not rows:
        return []
    if len(rows) < 2:
        return list(range(len(rows[0])))
    return [i for i in range(len(rows[0])) if any(row[i] != rows[0][i] for row in rows[1:])]


def drop_unchanged(header: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Without the columns whose values are the same in every row (with
    fewer than two rows, unchanged)."""
    if len(rows) < 2:
        return header, rows
    keep = changed_columns(rows)
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


# -- formatting ------------------------------------------------------


def format_float(val: float, digits: int = FLOAT_DIGITS) -> str:
    """As Guild AI's compare: the YAML form with decimals truncated (not
    rounded) to `digits`, so 0.9999999 never shows as 1.0."""
    if math.isnan(val):
        return "nan"
    if math.isinf(val):
        return "inf" if val > 0 else "-inf"
    s = repr(val).lower()
    if "." not in s and "e" in s:
        s = s.replace("e", ".0e", 1)
    return re.sub(r"\.[0-9]+", lambda m: m.group()[: digits + 1], s)


def format_cell(val: Any) -> str:
    if val is None:
        return ""
    if val is True:
        return "yes"
    if val is False:
        return "no"
    if isinstance(val, float):
        return format_float(val)
    return str(val)


def formatted_rows(table: Table) -> list[list[str]]:
    """Cells as shown in the table; a marked run's operation gets
    ``[marked]`` as in Guild AI."""
    return [row_cells(table.header, run, row) for run, row in zip(table.runs, table.rows)]


def row_cells(header: list[str], run: Run, row: list[Any]) -> list[str]:
    """One row's cells as shown (`header` names the row's columns)."""
    cells = [format_cell(v) for v in row]
    if "operation" in header:
        i = header.index("operation")
        if row[i] is not None and run.get("marked"):
            cells[i] += " [marked]"
    return cells


def table_lines(table: Table, skip_unchanged: bool = False, escape=None) -> list[str]:
    """The aligned table. `escape(text) -> str`, when given, is applied
    to every header and cell before aligning (the CLI passes one that
    escapes control characters, so columns line up as shown)."""
    from .util import table as align

    if not table.header or not table.runs:
        return []
    header, rows = table.header, formatted_rows(table)
    if skip_unchanged:
        header, rows = drop_unchanged(header, rows)
    lines = [header] + rows
    if escape is not None:
        lines = [[escape(cell) for cell in row] for row in lines]
    return align(lines)


@dataclass
class Shown:
    """The table as the interactive compare shows it: `cells[i]` (text,
    as in the printed table) and `rows[i]` (raw values, for sorting)
    belong to `runs[i]`, column by column as `header`."""

    header: list[str]
    rows: list[list[Any]]
    cells: list[list[str]]
    runs: list[Run]

    def refresh_row(self, i: int, escape=None) -> None:
        """Cells of row `i` again (after marking its run)."""
        cells = row_cells(self.header, self.runs[i], self.rows[i])
        self.cells[i] = [escape(c) for c in cells] if escape else cells


def shown(table: Table, skip_unchanged: bool = False, escape=None) -> Shown:
    """`table` for the interactive compare: the printed table's columns
    (`skip_unchanged` drops the same ones) and cells, `escape` applied
    to headers and cells as in `table_lines`, with the raw values kept
    alongside."""
    header, rows, cells = table.header, table.rows, formatted_rows(table)
    if skip_unchanged and len(cells) > 1:
        keep = changed_columns(cells)
        header = [header[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
        cells = [[row[i] for i in keep] for row in cells]
    if escape is not None:
        header = [escape(h) for h in header]
        cells = [[escape(c) for c in row] for row in cells]
    return Shown(list(header), [list(r) for r in rows], cells, list(table.runs))


def run_detail(run: Run) -> list[str]:
    """A run's details, as Guild AI's interactive compare shows them for
    the current row: core attributes, flags and last scalar values."""
    rv = RunValues(run)

    def text(val: Any) -> str:
        return "" if val is None else str(val)

    lines = [
        f"Id: {run.id}",
        f"Operation: {text(rv.attr('operation'))}",
        f"From: {text(rv.attr('from'))}",
        f"Status: {text(rv.attr('status'))}",
        f"Started: {text(rv.attr('started'))}",
        f"Stopped: {text(rv.attr('stopped'))}",
        f"Time: {text(rv.attr('time'))}",
        f"Label: {text(run.get('label'))}",
    ]
    flags = run.get("flags")
    if isinstance(flags, dict) and flags:
        lines.append("Flags:")
        lines.extend(f"  {name}: {text(flags[name])}" for name in sorted(flags, key=str))
    scalars = rv.scalars()
    if scalars:
        lines.append("Scalars:")
        for tag, summ in sorted(scalars.items()):
            val, step = summ.last
            lines.append(f"  {tag}: {val:.6f} (step {step})")
    return lines


def csv_text(table: Table, skip_unchanged: bool = False) -> str:
    """Header row and one row per run, raw values (Python's text for
    numbers, full precision), as Guild AI writes it; no runs, nothing."""
    import csv
    import io

    if not table.runs:
        return ""
    header, rows = table.header, table.rows
    if skip_unchanged:
        header, rows = drop_unchanged(header, rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def json_data(table: Table, skip_unchanged: bool = False) -> list[dict[str, Any]]:
    header, rows = table.header, table.rows
    if skip_unchanged:
        header, rows = drop_unchanged(header, rows)
    return [{name: json_value(v) for name, v in zip(header, row)} for row in rows]


def json_value(val: Any) -> Any:
    if isinstance(val, float) and not math.isfinite(val):
        return format_float(val)
    if val is None or isinstance(val, (bool, int, float, str)):
        return val
    if isinstance(val, (list, tuple)):
        return [json_value(v) for v in val]
    if isinstance(val, dict):
        return {str(k): json_value(v) for k, v in val.items()}
    return str(val)


def select_by(runs: Iterable[Run], spec: str, highest: bool) -> Run | None:
    """The run with the lowest (highest) value of column `spec`; runs
    without a value are left out; ties go to the earlier run."""
    col = parse_one(spec)
    best = None
    best_val = None
    for run in runs:
        val = col_value(RunValues(run), col)
        if val is None:
            continue
        if best is None or (key_lt(best_val, val, True) if highest else key_lt(val, best_val, True)):
            best, best_val = run, val
    return best
