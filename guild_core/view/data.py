"""What `guild view`'s JSON API returns, built from the code the CLI
uses: runs listed by `select.all_runs` (the run index), filtered by
`select.filter_runs` (the -F language), values from `RunValues`, the
compare table from `compare.build`, changes through the functions of
`guild label`, `tag`, `mark`, `runs delete` and `runs restore`.

Nothing here knows HTTP: a bad request is `BadRequest`, a missing run
or file `NotFound`, a path out of the run `Forbidden`; `server` maps
them to 400, 404 and 403. The functions are called from one thread at
a time (the run index keeps one SQLite connection per process).
"""

from __future__ import annotations

import math
import mimetypes
import os
import time
from operator import itemgetter
from typing import Any

from guild_core import compare, home, select, util
from guild_core.errors import GuildError, NoSuchRun
from guild_core.run import RUN_ID_P, Run, is_run_dir
from guild_core.runvalues import RunValues

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_OUTPUT_CHUNK = 1 << 20
MAX_FILES = 10000
DEFAULT_MAX_POINTS = 1000

SORT_COLUMNS = ("started", "stopped", "id", "operation", "status", "label", "marked")
STATUSES = select.STATUSES


class BadRequest(GuildError):
    status = 400


class NotFound(GuildError):
    status = 404


class Forbidden(GuildError):
    status = 403


class Conflict(GuildError):
    status = 409


class Data:
    """The runs a `guild view` shows: those passing the command's filter
    (`rf`) and RUN arguments (`specs`), read afresh for every call."""

    def __init__(self, rf: select.RunFilter | None = None, specs=(), include_batch: bool = False):
        self.rf = rf or select.RunFilter()
        self.specs = list(specs)
        self.include_batch = include_batch
        # Set by the server: runs a function later on its worker thread.
        self.schedule = None
        self._listing: _Listing | None = None

    # -- the listing, kept -----------------------------------------

    def _ordered(self) -> list[str]:
        """The ids of every run of the home, newest first: a
        listing kept from an earlier request while the runs directory
        has not changed (a run added or removed) and it is younger than
        `LISTING_MAX_AGE` s, read again in the background once older
        than `LISTING_FRESH` s. Listing 100,000 runs stats each one
        (about a second); the page needs fifty."""
        root = home.runs_dir()
        mtime = _mtime(root)
        kept = self._listing
        age = time.monotonic() - kept.at if kept else None
        # A time within two seconds of now is not trusted (coarse file
        # system clocks: a second change may not change it), as the
        # run index does.
        racy = mtime is None or time.time_ns() - mtime < 2_000_000_000
        if kept is None or kept.mtime != mtime or racy or age > LISTING_MAX_AGE:
            return self.relist().runs
        if age > LISTING_FRESH and not kept.refreshing and self.schedule is not None:
            kept.refreshing = True
            self.schedule(self.relist)
        return kept.runs

    def first_listing(self) -> None:
        """The listing for the first requests, quickly: the runs in the
        runs directory now, in the order the run index listed them last
        (runs new since read for their start time); the full listing,
        each run checked, follows once a request finds this one older
        than `LISTING_FRESH` s. Done at start, in the background.

        While the runs directory's time is the one the index stored
        with its listing (and old enough to trust), no run was added or
        removed since: the stored ids are the runs, with those that
        were not runs yet then checked again (`Listed.others`), and the
        directory is not listed. Otherwise it is, once."""
        from guild_core import index

        root = home.runs_dir()
        mtime = _mtime(root)
        listed = index.last_listing(root)
        if listed is None or mtime is None:
            self.relist()
            return
        ids, starts = listed.ids, listed.starts
        racy = time.time_ns() - mtime < 2_000_000_000
        if listed.dir_mtime and listed.dir_mtime == mtime and not racy:
            maybe_new = listed.others
        else:
            try:
                names = os.listdir(root)
            except OSError:
                self.relist()
                return
            ids = ids[:]
            present = set(names)
            unknown = present.difference(ids)
            if len(present) - len(unknown) < len(ids):
                # Runs removed since.
                kept = [(i, k) for i, k in zip(ids, starts) if i in present]
                ids, starts = [i for i, _k in kept], [k for _i, k in kept]
            # In the directory's order (ties in start time keep it).
            maybe_new = [name for name in names if name in unknown] if unknown else ()
        new = []
        for name in maybe_new:
            if RUN_ID_P.match(name) and is_run_dir(root / name):
                new.append((_start_of(Run(name, root / name)), name))
        if new:
            ids, starts = _merged(ids, starts, new)
        self._listing = _Listing(mtime, ids)

    def relist(self) -> "_Listing":
        root = home.runs_dir()
        mtime = _mtime(root)
        runs = select.all_runs()
        listing = self._listing = _Listing(mtime, [run.id for run in runs])
        return listing

    # -- selection -------------------------------------------------

    def _extensions(self, needed: bool):
        if not needed:
            return None
        from guild_core.cli.runselect import extensions

        return extensions()

    def _plain(self, rf: select.RunFilter | None) -> bool:
        """Whether no filter and no RUN argument narrows the runs."""
        return self.rf.is_empty() and not self.specs and (rf is None or rf.is_empty())

    def _runs(self, rf: select.RunFilter | None = None, deleted: bool = False) -> list[Run]:
        runs = select.all_runs(deleted=deleted)
        runs = select.filter_runs(runs, self.rf, self._extensions(bool(self.rf.expr)))
        if self.specs:
            runs = select.select(runs, self.specs)
        if rf is not None and not rf.is_empty():
            try:
                runs = select.filter_runs(runs, rf, self._extensions(bool(rf.expr)))
            except GuildError as e:
                raise BadRequest(str(e)) from None
        return runs

    def run(self, run_id: str, deleted: bool = False) -> Run:
        """The run `run_id` (a full id, or a unique prefix of one)."""
        root = home.trash_runs_dir() if deleted else home.runs_dir()
        if RUN_ID_P.match(run_id):
            path = root / run_id
            if (path / ".guild" / "opref").exists():
                return Run(run_id, path)
            raise NotFound(f"no run {run_id}")
        if not run_id or not all(c in "0123456789abcdef" for c in run_id):
            raise NotFound(f"no run {run_id}")
        try:
            return select.select_one(select.all_runs(deleted=deleted), run_id)
        except NoSuchRun as e:
            raise NotFound(str(e)) from None

    # -- the runs list ---------------------------------------------

    def runs_page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        rf = request_filter(query)
        sort = one(query, "sort") or "started"
        if sort not in SORT_COLUMNS and not sort.startswith(("flag:", "scalar:")):
            raise BadRequest(
                f"cannot sort by '{sort}' (use one of {', '.join(SORT_COLUMNS)}, flag:NAME or scalar:NAME)"
            )
        desc = _bool(one(query, "desc"), default=sort in ("started", "stopped"))
        offset = _int(query, "offset", 0, 0)
        limit = min(_int(query, "limit", DEFAULT_LIMIT, 1), MAX_LIMIT)
        deleted = _bool(one(query, "deleted"), False)
        ids = _ids(query, required=False)
        if sort == "started" and self._plain(rf) and not deleted and not ids:
            # The listing's own order (newest first), kept: only the
            # page's runs are read, each afresh from its directory.
            from guild_core import index

            index.forget()
            ordered = self._ordered()
            if not desc:
                ordered = ordered[::-1]
            total = len(ordered)
            root = home.runs_dir()
            page = [Run(run_id, root / run_id) for run_id in ordered[offset : offset + limit]]
            page = [run for run in page if os.path.isdir(run.path)]
        else:
            runs = self._runs(rf, deleted)
            if ids:
                wanted = {self.run(i, deleted).id for i in ids}
                runs = [run for run in runs if run.id in wanted]
            if sort == "started":
                if not desc:
                    runs = runs[::-1]
            else:
                runs = _sorted(runs, sort, desc)
            total = len(runs)
            page = runs[offset : offset + limit]
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "sort": sort,
            "desc": desc,
            "runs": [run_row(run) for run in page],
        }

    # -- one run ---------------------------------------------------

    def run_detail(self, run_id: str) -> dict[str, Any]:
        run = self.run(run_id)
        data = run_row(run)
        data.update(
            {
                "path": str(run.path),
                "from": run.project_dir or "",
                "exit_status": run.get("exit_status"),
                "pid": run.pid,
                "command": [str(a) for a in run.get("cmd") or []],
                "sourcecode_digest": run.get("sourcecode_digest") or "",
                "comments": _jsonable(run.get("comments") or []),
                "attributes": _attributes(run),
                "deps": _jsonable(run.get("deps") or {}),
                "files": _files(run),
            }
        )
        if run.has_proto:
            data["trials"] = _trials(run)
        return data

    def output(self, run_id: str, offset: int) -> dict[str, Any]:
        run = self.run(run_id)
        path = run.guild_path("output")
        try:
            with open(path, "rb") as f:
                f.seek(max(offset, 0))
                data = f.read(MAX_OUTPUT_CHUNK)
        except FileNotFoundError:
            data = b""
        data = _whole_chars(data)
        return {
            "offset": offset,
            "next_offset": offset + len(data),
            "text": data.decode("utf-8", "replace"),
            "running": run.status in ("running", "pending"),
            "status": run.status,
        }

    def file(self, run_id: str, path: str) -> tuple[bytes, str]:
        """A run file's bytes and content type."""
        from guild_core.runfiles import inside_run

        run = self.run(run_id)
        if not path or "\0" in path or os.path.isabs(path):
            raise Forbidden(f"{path!r} is outside the run directory")
        found = inside_run(str(run.path), path)
        if found is None:
            raise Forbidden(f"{path!r} is outside the run directory")
        full, real = found
        try:
            # The path checked, not the one named: no link is followed
            # again after the check.
            with open(real, "rb") as f:
                data = f.read()
        except IsADirectoryError:
            raise BadRequest(f"{path} is a directory") from None
        except OSError:
            raise NotFound(f"{path} does not exist") from None
        return data, content_type(full, data)

    # -- scalars ---------------------------------------------------

    def scalars(self, query: dict[str, list[str]]) -> dict[str, Any]:
        from guild_core import series

        ids = _ids(query)
        max_points = _int(query, "max_points", DEFAULT_MAX_POINTS, 2)
        smoothing = _float(query, "smoothing", 0.0)
        if not 0 <= smoothing < 1:
            raise BadRequest("smoothing must be at least 0 and below 1")
        tag = one(query, "tag")
        runs = [self.run(i) for i in ids]
        tags = sorted({t for run in runs for t in RunValues(run).scalars()})
        out = []
        for run in runs:
            entry: dict[str, Any] = {"run": run.id, "tag": tag}
            if tag:
                steps, values = series.points(str(run.guild_path()), tag)
                entry["count"] = len(steps)
                s, v = series.thinned(steps, values, max_points)
                entry["points"] = [[st, _num(val)] for st, val in zip(s, v)]
                if smoothing:
                    entry["smoothed"] = [_num(x) for x in series.smoothed(v, smoothing)]
            out.append(entry)
        return {"tags": tags, "max_points": max_points, "smoothing": smoothing, "runs": out}

    # -- compare ---------------------------------------------------

    def compare(self, query: dict[str, list[str]]) -> dict[str, Any]:
        rf = request_filter(query)
        runs = self._runs(rf)
        ids = _ids(query, required=False)
        if ids:
            wanted = set()
            for i in ids:
                wanted.add(self.run(i).id)
            runs = [run for run in runs if run.id in wanted]
        opts = compare.Options(
            cols=one(query, "cols"),
            include_batch=self.include_batch or _bool(one(query, "include_batch"), False),
        )
        try:
            table = compare.build(runs, opts, warn=lambda msg: None)
        except GuildError as e:
            raise BadRequest(str(e)) from None
        rows = compare.json_data(table)
        return {
            "columns": table.header,
            "rows": [[row.get(col) for col in table.header] for row in rows],
            "runs": [run.id for run in table.runs],
        }

    # -- changes ---------------------------------------------------

    def set_label(self, run_id: str, body: dict) -> dict[str, Any]:
        from guild_core.cli import runs_meta

        label = body.get("label")
        if label is not None and not isinstance(label, str):
            raise BadRequest("label must be a string or null")
        run = self.run(run_id)
        _changing(run, lambda: runs_meta.set_label(run, label or ""))
        return run_row(Run(run.id, run.path))

    def set_tags(self, run_id: str, body: dict) -> dict[str, Any]:
        from guild_core.cli import runs_meta

        add, remove = _str_list(body, "add"), _str_list(body, "remove")
        run = self.run(run_id)
        _changing(run, lambda: runs_meta.change_tags(run, add, remove, bool(body.get("clear"))))
        return run_row(Run(run.id, run.path))

    def set_mark(self, run_id: str, body: dict) -> dict[str, Any]:
        from guild_core.cli import runs_meta

        marked = body.get("marked", True)
        if not isinstance(marked, bool):
            raise BadRequest("marked must be true or false")
        run = self.run(run_id)
        _changing(run, lambda: runs_meta.set_mark(run, marked))
        return run_row(Run(run.id, run.path))

    def delete(self, body: dict) -> dict[str, Any]:
        from guild_core import store

        runs = [self.run(i) for i in _str_list(body, "runs", required=True)]
        running = [run.short_id for run in runs if run.status == "running"]
        if running:
            raise Conflict(f"cannot delete running run(s) {', '.join(running)}: stop them first")
        # As `guild runs delete`: a run that started meanwhile is left.
        out = store.delete(runs, still=lambda run: run.status != "running")
        return _outcome(out)

    def restore(self, body: dict) -> dict[str, Any]:
        from guild_core import store

        runs = [self.run(i, deleted=True) for i in _str_list(body, "runs", required=True)]
        try:
            out = store.restore(runs)
        except GuildError as e:
            raise Conflict(str(e)) from None
        return _outcome(out)


LISTING_FRESH = 5.0
LISTING_MAX_AGE = 30.0


class _Listing:
    __slots__ = ("mtime", "runs", "at", "refreshing")

    def __init__(self, mtime, runs: list[str]):
        self.mtime = mtime
        self.runs = runs
        self.at = time.monotonic()
        self.refreshing = False


def _mtime(path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _merged(ids, starts, new: list[tuple[int, str]]) -> tuple[list[str], list[int]]:
    """`ids` (newest first, `starts` their start times) with the runs
    `new` ((start time, id)...) each put in its place: after those that
    started at the same time or later."""
    from bisect import bisect_right

    if len(new) > 64:
        pairs = [*zip(starts, ids), *new]
        pairs.sort(key=itemgetter(0), reverse=True)  # stable: ties keep their order
        return [name for _k, name in pairs], [k for k, _name in pairs]
    ids, starts = list(ids), list(starts)
    for key, name in sorted(new, key=itemgetter(0), reverse=True):
        # `starts` is descending: search it negated.
        at = bisect_right(starts, -key, key=_neg)
        ids.insert(at, name)
        starts.insert(at, key)
    return ids, starts


def _neg(x: int) -> int:
    return -x


def _start_of(run: Run) -> int:
    """The start time a run is listed by, as the run index keeps it:
    `started`, else `initialized`, else 0 (a value not a number is 0)."""
    for name in ("started", "initialized"):
        val = run.get(name)
        if isinstance(val, int) and not isinstance(val, bool) and val:
            return val
    return 0


# -- rows ------------------------------------------------------------


def run_row(run: Run) -> dict[str, Any]:
    """A listing row: every column of `guild runs`, flags and the last
    value of each scalar."""
    rv = RunValues(run)
    flags = run.get("flags")
    started, stopped = run.get("started"), run.get("stopped")
    return {
        "id": run.id,
        "short_id": run.short_id,
        "operation": run.op_name,
        "started": started,
        "started_text": util.format_timestamp(started),
        "stopped": stopped,
        "stopped_text": util.format_timestamp(stopped),
        "status": run.status,
        "label": run.get("label") or "",
        "tags": [str(t) for t in run.get("tags") or []],
        "marked": bool(run.get("marked")),
        "batch": run.has_proto,
        "flags": _jsonable(flags if isinstance(flags, dict) else {}),
        "scalars": {tag: _num(s.last[0]) if s.last else None for tag, s in rv.scalars().items()},
    }


def _sorted(runs: list[Run], col: str, desc: bool) -> list[Run]:
    if col.startswith(("flag:", "scalar:")):
        return _sorted_by_value(runs, col, desc)

    def key(run: Run):
        if col == "id":
            return run.id
        if col == "operation":
            return run.op_name
        if col == "status":
            return run.status
        if col == "label":
            return str(run.get("label") or "")
        if col == "marked":
            return bool(run.get("marked"))
        return run.get(col) or 0

    # A stable sort on the listing's order: ties stay newest first.
    return sorted(runs, key=key, reverse=desc)


def _sorted_by_value(runs: list[Run], col: str, desc: bool) -> list[Run]:
    """Sorted by a flag's value or a scalar's last value; runs without
    it last either way, numbers before text."""
    kind, name = col.split(":", 1)

    def value(run: Run):
        if kind == "flag":
            flags = run.get("flags")
            return flags.get(name) if isinstance(flags, dict) else None
        return RunValues(run).scalar(name)

    keyed = [(value(run), run) for run in runs]
    have = [(v, run) for v, run in keyed if v is not None and v == v]
    lacking = [run for v, run in keyed if v is None or v != v]
    nums = [(v, run) for v, run in have if isinstance(v, (int, float)) and not isinstance(v, bool)]
    others = [(str(v), run) for v, run in have if not isinstance(v, (int, float)) or isinstance(v, bool)]
    nums.sort(key=itemgetter(0), reverse=desc)
    others.sort(key=itemgetter(0), reverse=desc)
    return [run for _v, run in nums] + [run for _v, run in others] + lacking


def _attributes(run: Run) -> dict[str, Any]:
    out = {}
    for name in run.attr_names():
        if name in ("flags", "cmd", "env", "deps", "comments"):
            continue
        out[name] = _jsonable(run.get(name))
    return out


def _files(run: Run) -> list[dict[str, Any]]:
    """The run's files (not `.guild`), links not followed: a link to a
    sibling run (a batch's trial) is listed as a link."""
    root = str(run.path)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            rel_dir = ""
            dirnames[:] = [d for d in dirnames if d != ".guild"]
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                st = os.lstat(full)
            except OSError:
                continue
            link = os.path.islink(full)
            out.append({"path": rel, "size": None if link else st.st_size, "mtime": st.st_mtime, "link": link})
            if len(out) >= MAX_FILES:
                return out
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


def _trials(batch: Run) -> dict[str, Any]:
    """A batch's trials (its links to sibling runs), oldest first, and,
    for its objective (``loss``, or ``-acc`` to maximize), the best
    value so far after each completed trial."""
    objective = str(batch.get("objective") or "loss")
    maximize = objective.startswith("-")
    tag = objective[1:] if maximize else objective
    trials = []
    try:
        names = os.listdir(batch.path)
    except OSError:
        names = []
    for name in names:
        link = batch.path / name
        if RUN_ID_P.match(name) and link.is_symlink():
            target = home.runs_dir() / name
            if (target / ".guild" / "opref").exists():
                trials.append(Run(name, target))
    trials.sort(key=lambda r: r.get("started") or r.get("initialized") or 0)
    best = None
    rows = []
    for trial in trials:
        val = RunValues(trial).scalar(tag)
        if isinstance(val, (int, float)) and val == val:
            if best is None or (val > best if maximize else val < best):
                best = val
        rows.append({"id": trial.id, "status": trial.status, "objective": _num(val), "best": _num(best)})
    return {"objective": tag, "maximize": maximize, "best": _num(best), "trials": rows}


def _outcome(out) -> dict[str, Any]:
    return {
        "done": [run.id for run in out.done],
        "gone": [run.id for run in out.gone],
        "changed": [run.id for run in out.changed],
    }


def _changing(run: Run, change) -> None:
    from guild_core.errors import RunGone

    try:
        change()
    except RunGone:
        raise NotFound(f"run {run.short_id} is gone: another command deleted or moved it") from None


# -- query parameters --------------------------------------------------


def one(query: dict[str, list[str]], name: str) -> str | None:
    vals = query.get(name)
    return vals[-1] if vals else None


def _int(query, name: str, default: int, minimum: int) -> int:
    val = one(query, name)
    if val is None or val == "":
        return default
    try:
        n = int(val)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if n < minimum:
        raise BadRequest(f"{name} must be at least {minimum}")
    return n


def _float(query, name: str, default: float) -> float:
    val = one(query, name)
    if val is None or val == "":
        return default
    try:
        return float(val)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None


def _bool(val: str | None, default: bool) -> bool:
    if val is None or val == "":
        return default
    return val.lower() not in ("0", "false", "no", "off")


def _ids(query, required: bool = True) -> list[str]:
    ids = [i for v in query.get("runs", []) for i in v.split(",") if i.strip()]
    if required and not ids:
        raise BadRequest("runs is required (run ids, comma separated)")
    return [i.strip() for i in ids]


def _str_list(body: dict, name: str, required: bool = False) -> list[str]:
    val = body.get(name, [])
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise BadRequest(f"{name} must be a list of strings")
    if required and not val:
        raise BadRequest(f"{name} is required")
    return val


def request_filter(query: dict[str, list[str]]) -> select.RunFilter:
    """A `RunFilter` from the query: ``filter`` (-F), ``operation``,
    ``label``, ``tag`` (each repeatable), ``status`` (comma separated),
    ``marked`` (1: marked, 0: unmarked), ``started`` (a -Fs range)."""
    statuses = {s for v in query.get("status", []) for s in v.split(",") if s}
    bad = statuses - set(STATUSES)
    if bad:
        raise BadRequest(f"unknown status '{sorted(bad)[0]}' (use any of {', '.join(STATUSES)})")
    marked = one(query, "marked")
    rf = select.RunFilter(
        expr=one(query, "filter") or None,
        operations=tuple(query.get("operation", [])),
        labels=tuple(query.get("label", [])),
        tags=tuple(query.get("tag", [])),
        marked=marked is not None and _bool(marked, False),
        unmarked=marked is not None and not _bool(marked, False),
        started=one(query, "started") or None,
        status_in=frozenset(statuses),
    )
    if rf.expr:
        # Checked before any run is read: a bad expression is one line.
        from guild_core import filterexpr
        from guild_core.cli.runselect import extensions

        try:
            filterexpr.parse(rf.expr, extensions())
        except GuildError as e:
            raise BadRequest(str(e)) from None
    return rf


# -- values ------------------------------------------------------------


def _num(val):
    """A number JSON can carry: NaN and infinities as `guild compare
    --json` writes them (text)."""
    if isinstance(val, float) and not math.isfinite(val):
        return compare.format_float(val)
    return val


def _jsonable(val: Any) -> Any:
    if isinstance(val, float):
        return _num(val)
    if val is None or isinstance(val, (bool, int, str)):
        return val
    if isinstance(val, (list, tuple)):
        return [_jsonable(v) for v in val]
    if isinstance(val, dict):
        return {str(k): _jsonable(v) for k, v in val.items()}
    return str(val)


def _whole_chars(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut at its end (the rest comes
    with the next read)."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b < 0x80:
            return data
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


_TEXT = {".txt", ".log", ".md", ".json", ".yml", ".yaml", ".py", ".csv", ".tsv", ".ini", ".cfg", ".toml"}
_IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/svg+xml"}


def content_type(path: str, data: bytes) -> str:
    """What a run file is served as: images as themselves, CSV as
    text/csv, other text (HTML included: it is never rendered) as
    text/plain, anything else as bytes."""
    ext = os.path.splitext(path)[1].lower()
    guessed = mimetypes.guess_type(path)[0]
    if guessed in _IMAGES:
        return guessed
    if ext in (".csv", ".tsv"):
        return "text/csv; charset=utf-8" if ext == ".csv" else "text/tab-separated-values; charset=utf-8"
    if ext == ".json":
        return "application/json"
    if ext in _TEXT or (guessed or "").startswith("text/") or _is_text(data):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def _is_text(data: bytes) -> bool:
    head = data[:4096]
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > len(head) - 4
    return True

