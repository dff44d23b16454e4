"""The run index: what listing, filtering and comparing read, kept in
SQLite under ``$GUILD_HOME/cache/runs-index/``.

Run directories stay the only source of truth: the index is a cache of
each run's listing facts (opref, markers, attributes, scalar summaries)
that any command may delete. Freshness comes from stat checks, never a
rescan: one listing of the runs directory finds runs added and removed;
each run's ``.guild`` time (markers, event files, a run's start and
end) is checked for every run, and what a command goes on to use of a
run is checked when used: the ``.guild/attrs`` time and the times of
the attribute files Guild AI 0.9 rewrites in place (`INPLACE`) for its
facts, the size and time of each event file for its scalars. A time
too recent to trust (the file system's clock is coarse) is not
recorded, so that run is read again next time.

What the index cannot know is served live: whether a run that has not
recorded its end is still running (its process is checked each time).

Filters: `pushdown` answers a filter's hint (`filterexpr.hint_of`) in
SQL and skips the runs it proves cannot match.

Concurrency: WAL mode, a busy timeout, and changes written in one short
transaction after the scan; a command that cannot write (a read-only
home, a locked file) still answers from what it read. A file that is
not an index of this schema (corrupt, truncated, foreign, newer) is set
aside with a one-line notice and rebuilt.
"""

from __future__ import annotations

import json
import os
import sys
import time
from operator import attrgetter
from pathlib import Path
from typing import Any

from . import home

SCHEMA = 6
DB_NAME = "runs.sqlite"
# A time within this many seconds of now may still change within the
# same clock tick: the run is read again next time.
RACY_SECONDS = 2.0
_RACY_NS = int(RACY_SECONDS * 1e9)

# Attributes a run's later life may rewrite in place (Guild AI 0.9's
# label, tag, mark and comment write files in place, changing no
# directory's time), so their own times are checked when a command uses
# a run's facts (`prime`). The others change only with a directory's
# time: a run's end and restart create or remove LOCK in `.guild`, and
# guild writes every attribute by renaming over it.
INPLACE = ("label", "tags", "marked", "comments")


def _attrs():
    """The attributes the index keeps for every run (what lists, filters
    and compares read; `run._INDEXED_ATTRS`); others are read from the
    run when asked for."""
    from .run import _INDEXED_ATTRS

    return sorted(_INDEXED_ATTRS)


MARKERS = ("LOCK", "LOCK.remote", "PENDING", "STAGED")

_warned = False


def _env(name: bytes):
    """The environment variable `name`, as bytes on POSIX. Asked for
    every run of a listing: os.environ.get encodes the name and decodes
    the value each time, so on POSIX its bytes dict is read directly
    (only compared, never decoded)."""
    data = _ENV_DATA
    if data is None:
        return os.environ.get(name.decode())
    return data.get(name)


_ENV_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None


def enabled() -> bool:
    return not _env(b"GUILDNO_INDEX")


def db_path() -> Path:
    return home.cache_dir("runs-index") / DB_NAME


# ---------------------------------------------------------------------
# Reading runs
# ---------------------------------------------------------------------


def runs_in(root: Path, names: list[str], dir_mtime: int | None = None):
    """`Run` objects for the run directories `names` under `root`,
    newest first (by start time, ties in the order of `names`), their
    listing facts served from the index (refreshed where a run
    changed), or None when the index cannot be used (the caller reads
    the runs directly). `dir_mtime` is the time of `root` taken before
    `names` were listed: stored with the listing, it tells a later
    reader (`last_listing`) whether runs were added or removed since."""
    if not enabled():
        return None
    db = _conn()
    if db is None:
        return None
    sqlite3 = _sqlite()
    try:
        return _runs(db, root, names, dir_mtime)
    except sqlite3.OperationalError:
        # Busy, read-only, a full disk: read the runs directly this time.
        return None
    except sqlite3.DatabaseError as e:
        _set_aside(db, f"unreadable ({e})")
        return None


def _runs(db, root: Path, names: list[str], dir_mtime: int | None):
    import gc

    # A listing makes an object or two per run: the cyclic collector,
    # running every few hundred of them, would go over all made so far
    # each time (a third of the time of listing 100,000 runs).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _runs_of(db, root, names, dir_mtime)
    finally:
        if collecting:
            gc.enable()


# The stored listing of a root (table `ordered`): its runs newest first
# as `runs_in` returns them, packed in one row (the ids, ASCII, one a
# line; their `.guild` times and start times as little-endian int64s:
# three blobs), the root's time before it was listed (0 when too recent
# to trust) and the names that looked like runs but were not then (a
# run being made: read again by `last_listing`'s reader). One row, not
# a row per run: what a listing and `guild view`'s first page read.
_ORDERED_COLS = "dir_mtime, ids, gsigs, starts, others"
# A run id (32 hex digits) and its newline.
_ID_STRIDE = 33


def _int64s(data: bytes):
    from array import array

    a = array("q")
    a.frombytes(data)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _int64_bytes(values) -> bytes:
    from array import array

    try:
        a = array("q", values)
    except OverflowError:
        lo, hi = -(1 << 63), (1 << 63) - 1
        a = array("q", [min(max(v, lo), hi) for v in values])
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


class Listed:
    """A root's runs as the index listed them last (`last_listing`):
    `ids`, newest first, and their start times (`starts`); `dir_mtime`,
    the root's time before that listing (0 when unknown or too recent
    to trust: then runs may have been added or removed since without
    changing it); `others`, names under the root that looked like runs
    but were not then."""

    __slots__ = ("ids", "starts", "gsigs", "dir_mtime", "others")

    def __init__(self, ids, starts, gsigs, dir_mtime: int, others: list[str]):
        self.ids = ids
        self.starts = starts
        self.gsigs = gsigs
        self.dir_mtime = dir_mtime
        self.others = others


def _read_ordered(db, key: str, gsigs: bool = True) -> Listed | None:
    """The root's stored listing, None without one (none written yet,
    an index from before it was kept, or one that does not decode)."""
    cols = _ORDERED_COLS if gsigs else "dir_mtime, ids, NULL, starts, others"
    try:
        row = db.execute(f"SELECT {cols} FROM ordered WHERE root = ?", (key,)).fetchone()
    except _sqlite().OperationalError as e:
        if "no such table" in str(e):
            return None  # an index that could not be given the table
        raise
    if row is None:
        return None
    dir_mtime, ids, g, st, others = row
    if not (isinstance(ids, bytes) and isinstance(st, bytes)) or (ids and (len(ids) + 1) % _ID_STRIDE):
        return None
    n = (len(ids) + 1) // _ID_STRIDE if ids else 0
    if len(st) != n * 8 or (gsigs and (not isinstance(g, bytes) or len(g) != n * 8)):
        return None
    try:
        text = ids.decode("ascii")
    except UnicodeDecodeError:
        return None
    if n and text.count("\n") != n - 1:
        return None
    return Listed(
        _Ids(text), _int64s(st), _int64s(g) if gsigs else None,
        dir_mtime if isinstance(dir_mtime, int) else 0,
        [o for o in (others or "").split("\n") if o],
    )


class _Ids:
    """Run ids, one a line in one string, as a read-only sequence: a
    page slices out fifty without making a string of each of 100,000;
    ``ids[:]`` makes them all (one split)."""

    __slots__ = ("_text", "_n")

    def __init__(self, text: str):
        self._text = text
        self._n = (len(text) + 1) // _ID_STRIDE if text else 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        text, n, k = self._text, self._n, _ID_STRIDE
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if (start, stop, step) == (0, n, 1):
                return text.split("\n") if n else []
            return [text[j * k : j * k + k - 1] for j in range(start, stop, step)]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("run id index out of range")
        return text[i * k : i * k + k - 1]

    def __iter__(self):
        return iter(self[:])


def _stored_listing(db, key: str) -> tuple[dict[str, tuple[int, int]], Listed | None]:
    """Id -> (`.guild` time, start time) of the root's indexed runs, and
    the stored listing they came from (one row, where the runs table is
    a row per run: several times faster to read), None when they came
    from the runs table."""
    listed = _read_ordered(db, key)
    if listed is not None:
        return dict(zip(listed.ids[:], zip(listed.gsigs, listed.starts))), listed
    query = db.execute("SELECT id, gsig, sort_key FROM runs WHERE root = ?", (key,))
    return {row[0]: (row[1], row[2] or 0) for row in query}, None


def last_listing(root: Path) -> Listed | None:
    """The runs of `root` as the index listed them last, newest first,
    no run checked (`Listed`): what a long-lived process (`guild view`)
    may show first, while it lists the runs; None without such a
    listing."""
    if not enabled():
        return None
    db = _conn()
    if db is None:
        return None
    key = str(root)
    try:
        listed = _read_ordered(db, key, gsigs=False)
        if listed is not None:
            return listed
        # No stored listing (an index written before one was kept, or
        # a start time read again since): the runs table, sorted.
        rows = db.execute(
            "SELECT id, sort_key FROM runs WHERE root = ? ORDER BY sort_key DESC", (key,)
        ).fetchall()
    except _sqlite().Error:
        return None
    if not rows:
        return None
    return Listed([r[0] for r in rows], [r[1] or 0 for r in rows], None, 0, [])


def _runs_of(db, root: Path, names: list[str], dir_mtime: int | None):
    from .run import RUN_ID_P, Run

    # Rows read for an earlier listing in this process may be stale.
    _forget()
    key = str(root)
    # One stat per run: `.guild`'s time, which every change to the
    # run's markers, event files and end changes. What a listing that
    # only sorts needs (the start time) changes only with it; the rest
    # is checked when a run's facts are used (`prime`).
    stored, listed = _stored_listing(db, key)
    n_stored = len(stored)
    now_ns = time.time_ns()
    trusted = now_ns - _RACY_NS
    runs = []
    stale = []
    changed = []
    others = []
    stat = os.stat
    match = RUN_ID_P.match
    pop = stored.pop
    prefix = key + os.sep
    for name in names:
        if not match(name):
            continue
        path = prefix + name
        try:
            g_mtime = stat(path + "/.guild").st_mtime_ns
        except OSError:
            others.append(name)
            continue
        old = pop(name, None)
        run = Run(name, path)
        run._gmtime = g_mtime
        run._root = key
        if old is None or old[0] != g_mtime:
            stale.append(run)
        else:
            run._index = LAZY
            run._sort_key = old[1]
        runs.append(run)
    if stale:
        not_runs = set()
        for run, facts in zip(stale, parallel_map(_facts_of, [(r._path, now_ns) for r in stale])):
            if facts is None:
                not_runs.add(run.id)  # no .guild/opref
                continue
            g_mtime = run._gmtime
            row = (run.id, g_mtime if g_mtime < trusted else 0, *facts)
            changed.append(row)
            run._index = row
            run._sort_key = row[6]
        if not_runs:
            runs = [run for run in runs if run.id not in not_runs]
            others.extend(sorted(not_runs))
    # Newest first, ties in the order listed (a stable sort).
    runs.sort(key=attrgetter("_sort_key"), reverse=True)
    _listed[key] = runs
    gone = list(stored)
    if dir_mtime is None or dir_mtime >= trusted:
        dir_mtime = 0
    if (
        changed or gone or listed is None
        or listed.dir_mtime != dir_mtime or listed.others != others
        or len(runs) != n_stored
    ):
        _write(db, key, changed, gone, _ordered_row(runs, trusted, dir_mtime, others))
    return runs


def _ordered_row(runs: list, trusted: int, dir_mtime: int, others: list[str]) -> tuple:
    """`ordered`'s columns (`_ORDERED_COLS`) for `runs`, as sorted."""
    ids = "\n".join([run.id for run in runs]).encode("ascii")
    # A `.guild` time too recent to trust is stored as 0: the run is
    # read again next time, as the runs table has it.
    gsigs = _int64_bytes([g if g < trusted else 0 for g in map(attrgetter("_gmtime"), runs)])
    starts = _int64_bytes([k or 0 for k in map(attrgetter("_sort_key"), runs)])
    return dir_mtime, ids, gsigs, starts, "\n".join(others)


def _facts_of(args):
    return read_facts(*args)


# Below this many items `parallel_map` works in this process: starting
# workers costs more than it saves.
PARALLEL_MIN = 200


def parallel_map(fn, items: list) -> list:
    """``[fn(item) for item in items]``, in forked worker processes (one
    per CPU, at most four) when there are many: building the index of a
    large home is reading files and decoding them, which CPUs share.
    Serial where fork is not available or a worker fails."""
    cpus = min(os.cpu_count() or 1, 4)
    if len(items) < PARALLEL_MIN or cpus < 2 or os.environ.get("GUILD_INDEX_SERIAL"):
        return [fn(item) for item in items]
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return [fn(item) for item in items]
    chunk = max(1, len(items) // (cpus * 4))
    try:
        with multiprocessing.get_context("fork").Pool(cpus) as pool:
            return pool.map(fn, items, chunksize=chunk)
    except Exception:  # noqa: BLE001 - any failure: do the work here
        return [fn(item) for item in items]


class _Lazy:
    """A run's index row not read yet (`LAZY`, its `_index`): `prime`
    reads it, by the run's `_root` and id (and, once many runs of a
    listing were primed, those of all the others at once)."""

    __slots__ = ()


LAZY = _Lazy()


# Rows read ahead for this command (per root and id), and how many runs
# were asked for one by one before reading ahead.
_rows: dict[tuple[str, str], tuple] = {}
# The runs of each root's latest listing: what scalar summaries are
# read ahead for once a command asks for many.
_listed: dict[str, list] = {}
# Runs `pushdown` proved no filter match: their rows are not read ahead.
_cannot: set[str] = set()
_primed_count = 0
_BULK_AFTER = 50
_ROW_COLS = "id, gsig, sig2, opref, facts, flags, sort_key"


def _forget() -> None:
    global _primed_count, _scalar_reads
    _rows.clear()
    _scalar_sigs.clear()
    _tag_rows.clear()
    _all_tags.clear()
    _computed.clear()
    _cannot.clear()
    _primed_count = _scalar_reads = 0


def forget() -> None:
    """Forget the rows and summaries read ahead for the last listing: a
    long-lived process (`guild view`) calls it between requests, so
    each reads the index afresh, as a new command would."""
    _forget()


def _row_of(run):
    global _primed_count
    root = run._root
    row = _rows.get((root, run.id))
    if row is not None:
        return row
    db = _conn()
    if db is None:
        return None
    _primed_count += 1
    try:
        if _primed_count > _BULK_AFTER:
            # Much of a listing is being read: the rest of it at once.
            _read_rows(db, root)
            return _rows.get((root, run.id))
        return db.execute(
            f"SELECT {_ROW_COLS} FROM runs WHERE root = ? AND id = ?", (root, run.id)
        ).fetchone()
    except _sqlite().Error:
        return None


def _read_rows(db, root: str) -> None:
    """The rows of the root's listed runs not read yet (and not proved
    out of a filter's reach by `pushdown`): all the root's in one query
    when that is most of them, else a few hundred at a time."""
    listed = _listed.get(root, ())
    wanted = [
        run.id for run in listed
        if run._index is LAZY and run.id not in _cannot and (root, run.id) not in _rows
    ]
    if len(wanted) * 2 > len(listed):
        query = db.execute(f"SELECT {_ROW_COLS} FROM runs WHERE root = ?", (root,))
        for r in query:
            _rows[(root, r[0])] = r
        return
    for i in range(0, len(wanted), 500):
        ids = wanted[i : i + 500]
        marks = ",".join("?" * len(ids))
        query = db.execute(
            f"SELECT {_ROW_COLS} FROM runs WHERE root = ? AND id IN ({marks})", (root, *ids)
        )
        for r in query:
            _rows[(root, r[0])] = r


def _slurp(path: str) -> bytes | None:
    """A file's bytes, None when it cannot be read (fewer calls than
    `open`: building the index reads a dozen small files per run)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            if len(data) < 65536 and len(chunks) == 1:
                break
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def read_facts(path: str, now_ns: int) -> tuple | None:
    """``(sig2, opref, facts, flags, sort_key)`` of the run at `path` as
    the index stores them, None when it is not a run. flags is JSON of
    its flags when JSON holds them exactly; facts is JSON of its
    markers (``m``), the attributes it keeps (``a``: values JSON holds
    exactly; ``r``: the text of others, decoded and warned of when
    read), the names of all its attributes (``n``) and its proto's
    opref (``p``); sig2 is `attrs_sig`."""
    guild = path + "/.guild/"
    opref = _slurp(guild + "opref")
    if opref is None:
        return None
    try:
        present = os.listdir(guild)
    except OSError:
        present = ()
    proto_opref = None
    if "proto" in present:
        data = _slurp(guild + "proto/opref")
        proto_opref = _text(data) if data is not None else ""
    markers = {}
    for name in MARKERS:
        if name in present:
            data = _slurp(guild + name)
            if data is not None:
                markers[name] = _text(data)
    try:
        attr_names = sorted(n for n in os.listdir(guild + "attrs") if not n.startswith("."))
    except OSError:
        attr_names = []
    from .run import _INDEXED_ATTRS

    values, raws = {}, {}
    flags = None
    for name in attr_names:
        if name not in _INDEXED_ATTRS:
            continue
        raw = _slurp(guild + "attrs/" + name)
        if raw is None:
            continue
        exact, val = _attr_entry(raw)
        if exact and name == "flags":
            # Apart: most listings never read a run's flags.
            flags = json.dumps(val, separators=(",", ":"))
        elif exact:
            values[name] = val
        else:
            raws[name] = val
    sort_key = 0
    for name in ("started", "initialized"):
        val = values.get(name)
        if isinstance(val, int) and not isinstance(val, bool) and val:
            sort_key = val
            break
    sig2 = attrs_sig(path, [n for n in INPLACE if n in attr_names], now_ns)
    data = {"m": markers, "a": values, "r": raws, "n": attr_names, "p": proto_opref}
    return sig2, _text(opref), json.dumps(data, separators=(",", ":")), flags, sort_key


def attrs_sig(path: str, names, now_ns: int) -> str:
    """``.guild/attrs``'s time and those of its files `names` (of
    `INPLACE`), as ``TIME;NAME=TIME...``; "" when one is too recent to
    trust or cannot be read (the facts are read again next time)."""
    attrs = path + "/.guild/attrs"
    try:
        newest = os.stat(attrs).st_mtime_ns
    except OSError:
        newest = 0
    parts = [str(newest)]
    for name in names:
        try:
            mtime = os.stat(attrs + "/" + name).st_mtime_ns
        except OSError:
            return ""
        parts.append(f"{name}={mtime}")
        if mtime > newest:
            newest = mtime
    if now_ns - newest <= _RACY_NS:
        return ""
    return ";".join(parts)


def _attrs_current(path: str, sig2: str, now_ns: int) -> bool:
    """Whether the attributes are as when `sig2` was taken."""
    if not sig2:
        return False
    names = [part.partition("=")[0] for part in sig2.split(";")[1:]]
    return attrs_sig(path, names, now_ns) == sig2


def _attr_entry(raw: bytes) -> tuple[bool, Any]:
    """``(True, value)`` when JSON holds the decoded value exactly, else
    ``(False, text)`` (decoded, and warned of, when read)."""
    from .run import _BAD, _decode_attr

    val = _decode_attr(raw)
    if val is not _BAD and _json_exact(val):
        return True, val
    return False, raw.decode("utf-8", "surrogateescape")


def _json_exact(val, depth: int = 0) -> bool:
    if val is None or isinstance(val, (bool, str)):
        return True
    if isinstance(val, int):
        return True
    if isinstance(val, float):
        return val == val and val not in (float("inf"), float("-inf"))
    if depth > 20:
        return False
    if isinstance(val, list):
        return all(_json_exact(v, depth + 1) for v in val)
    if isinstance(val, dict):
        return all(isinstance(k, str) and _json_exact(v, depth + 1) for k, v in val.items())
    return False


def prime(run) -> None:
    """Fill `run`'s cache from its index row (done on first use), read
    again from the run when its attributes changed since."""
    row = run._index
    if row is LAZY:
        row = _row_of(run)
        run._index = None
        if row is None:
            return  # gone from the index meanwhile: read the files
        now_ns = time.time_ns()
        path = str(run._path)
        if not run._attrs_checked and not _attrs_current(path, row[2], now_ns):
            facts = read_facts(path, now_ns)
            if facts is None:
                return
            moved = facts[4] != row[6]
            row = (row[0], row[1], *facts)
            _pending_rows.append((run._root, row, moved))
            _schedule_flush()
    else:
        run._index = None
    cache = run._cache
    if "opref" not in cache:
        cache["opref"] = _opref(row[3])
    facts = json.loads(row[4])
    if "index_attrs" not in cache:
        cache["index_attrs"] = facts["a"]
        cache["index_raw"] = facts["r"]
        cache["attr_names"] = facts["n"]
        cache["markers"] = facts["m"]
        cache["proto_opref"] = facts["p"]
        if row[5] is not None:
            cache["index_flags"] = row[5]


_oprefs: dict[str, Any] = {}


def _opref(line: str):
    """The parsed opref `line` (None when invalid): runs of a home share
    a few, and an OpRef is immutable."""
    try:
        return _oprefs[line]
    except KeyError:
        pass
    from .run import OpRef

    try:
        opref = OpRef.parse(line)
    except ValueError:
        opref = None
    if len(_oprefs) < 10000:
        _oprefs[line] = opref
    return opref


_roots: tuple[str, frozenset] | None = None


def is_indexed(run) -> bool:
    """Whether `run` lives where the index keeps runs (the home's runs
    and deleted runs), so its scalar summaries may be kept there too."""
    global _roots
    if not enabled():
        return False
    where = _where()
    if _roots is None or _roots[0] != where:
        _roots = (where, frozenset((str(home.runs_dir()), str(home.trash_runs_dir()))))
    return _root_of(run) in _roots[1]


def _root_of(run) -> str:
    root = run._root
    return root if root is not None else os.path.dirname(str(run._path))


def _where() -> tuple:
    # What decides the Guild home (`home.guild_home`), cheaper to ask
    # than the home itself: asked for every run of a listing.
    return _env(b"GUILD_HOME"), _env(b"HOME")


# ---------------------------------------------------------------------
# Filters answered in SQL
# ---------------------------------------------------------------------
#
# A filter's hint (`filterexpr.hint_of`) is a condition every run it
# matches meets; in SQL over the index it finds the runs that may
# match. A run outside that set whose indexed facts and scalars are
# current (checked by the same stats a read of them checks) cannot
# match, and is skipped without decoding anything of it. Every other
# run is decided by the filter itself, so the SQL need only never
# exclude a match: the value's kind (attribute, then flag, then
# scalar) is left to the filter, which is why a name that may be an
# attribute or a flag of a run lets that run through.

# Below this many runs a filter reads them all: the queries cost more.
PUSHDOWN_MIN = 50


# Stands for the root in `_sql_of`'s parameters until it is known.
_root_param = object()


def _sql_of(hint, params: list) -> str | None:
    kind = hint[0]
    if kind in ("and", "or"):
        parts = [_sql_of(h, params) for h in hint[1]]
        if kind == "or" and None in parts:
            return None
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        return "(" + f" {kind.upper()} ".join(parts) + ")"
    _kind, name, op, target = hint
    # SQLite's REAL is an IEEE double, as Python's float; NaN is stored
    # as NULL, which no comparison matches, as no comparison matches
    # NaN in Python.
    # Not correlated: SQLite runs it once (by the tags_by_tag index).
    scalar = f"r.id IN (SELECT t.id FROM tags t WHERE t.root = ? AND t.tag = ? AND t.lv {op} ?)"
    if kind == "scalar":
        params.extend((_root_param, name, target))
        return scalar
    quoted = json.dumps(name)
    params.extend((quoted, quoted + ":", _root_param, name, target))
    # The name among the run's attribute names (facts' "n" list, or
    # anywhere in the facts: enough to let it through), or its flags.
    return (
        f"(instr(r.facts, ?) > 0 OR r.flags IS NULL OR instr(r.flags, ?) > 0 OR {scalar})"
    )


def pushdown(runs: list, hint) -> set[str] | None:
    """Ids of `runs` that cannot match a filter whose hint is `hint`, as
    the index proves it; None when it cannot say (few runs, no index,
    runs not from the index)."""
    if hint is None or len(runs) < PUSHDOWN_MIN or not enabled():
        return None
    params: list = []
    where = _sql_of(hint, params)
    if where is None:
        return None
    roots = {run._root for run in runs}
    if len(roots) != 1 or None in roots:
        return None
    (root,) = roots
    db = _conn()
    if db is None:
        return None
    try:
        params = [root if p is _root_param else p for p in params]
        may = {
            row[0]
            for row in db.execute(f"SELECT r.id FROM runs r WHERE r.root = ? AND {where}", [root, *params])
        }
        sig2s = dict(db.execute("SELECT id, sig2 FROM runs WHERE root = ?", (root,)))
        if root not in _scalar_sigs:
            _load_sigs(db, root)
    except _sqlite().Error:
        return None
    now_ns = time.time_ns()
    cannot = set()
    for run in runs:
        run_id = run.id
        if run_id in may or run._index is not LAZY:
            # May match, or its facts were read (again) by this command
            # and may not be in the index yet.
            continue
        path = str(run._path)
        sig2 = sig2s.get(run_id)
        if sig2 is None or not _attrs_current(path, sig2, now_ns):
            continue
        run._attrs_checked = True
        if _computed.get((root, run_id)) is not True:
            continue  # its scalars changed: summarized again
        cannot.add(run_id)
    _cannot.update(cannot)
    return cannot


# ---------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------
#
# Per run, the signature of its event files (`.guild`'s time, each
# file's name, size and time) in `scalars`, and one row per tag in
# `tags`: a filter naming `loss` reads that tag of every run in one
# query, and no command decodes a run's other scalars to test one.

_TAG_COLS = "fv, fs, lv, ls, nv, ns, xv, xs, total, count"
_NAN = float("nan")


def _event_files(guild: str, g_mtime: int | None):
    """``(g_mtime, [(name, size, mtime)...])`` of a run's event files by
    name (the order they are read in), None when `.guild` is gone."""
    try:
        if g_mtime is None:
            g_mtime = os.stat(guild).st_mtime_ns
        events = sorted(
            (e.name, st.st_size, st.st_mtime_ns)
            for e in os.scandir(guild)
            if e.name.startswith("events.out.tfevents.") and e.is_file()
            for st in (e.stat(),)
        )
    except OSError:
        return None
    return g_mtime, events


def _sig_entries(sig: str) -> list[tuple]:
    """``[(name, size, mtime, end, tail)...]`` of an events signature
    (``G_MTIME|NAME:SIZE:MTIME:END:TAIL;...``)."""
    files = sig.partition("|")[2]
    if not files:
        return []
    entries = []
    for entry in files.split(";"):
        name, size, mtime, end, tail = entry.rsplit(":", 4)
        entries.append((name, int(size), int(mtime), int(end), tail))
    return entries


def _events_unchanged(guild: str, sig: str, g_mtime: int | None) -> bool:
    """Whether ``.guild`` (no event file added or removed) and each event
    file (its size and time) are as when `sig` was taken."""
    head, _, files = sig.partition("|")
    try:
        if g_mtime is None:
            g_mtime = os.stat(guild).st_mtime_ns
        if str(g_mtime) != head:
            return False
        if not files:
            return True
        for entry in files.split(";"):
            name, size, mtime, _end, _tail = entry.rsplit(":", 4)
            st = os.stat(guild + "/" + name)
            if st.st_size != int(size) or st.st_mtime_ns != int(mtime):
                return False
    except (OSError, ValueError):
        return False
    return True


def _scan_into(summaries: dict, path: str, start: int) -> tuple[int, bytes]:
    """Add the scalars of event file `path` from byte `start` to
    `summaries`; ``(end, tail)`` as `tfevents.scan_events`."""
    from . import tfevents
    from .runvalues import TagSummary

    try:
        scalars, end, tail = tfevents.scan_events(path, start)
    except OSError:
        return start, b""
    for tag, val, step, _wall in scalars:
        summ = summaries.get(tag)
        if summ is None:
            summ = summaries[tag] = TagSummary()
        summ.add(val, step)
    return end, tail


def _summarize(args):
    """``(sig, trusted, summaries)`` of a run's scalars (tag -> `_flat`
    summary). With `prev` (the
    signature and summaries stored before) and only the last event file
    grown since, only what was appended is read: a run logging a
    million values is summarized once, then a step at a time."""
    guild, g_mtime, prev = args
    listing = _event_files(guild, g_mtime)
    if listing is None:
        return None, False, {}
    g_mtime, events = listing
    entries = _continued(guild, events, prev) if prev is not None else None
    if entries is None:
        summaries: dict = {}
        entries = []
        for name, size, mtime in events:
            end, tail = _scan_into(summaries, guild + "/" + name, 0)
            entries.append((name, size, mtime, end, tail.hex()))
    else:
        summaries = prev[1]
    sig = f"{g_mtime}|" + ";".join(":".join(map(str, e)) for e in entries)
    # Plain tuples (`_flat`), not TagSummary objects: a worker process
    # sends them back.
    flat = {tag: _flat(summ) for tag, summ in summaries.items()}
    return sig, time.time_ns() - g_mtime > _RACY_NS, flat


def _continued(guild: str, events: list, prev) -> list | None:
    """The new signature entries, with `prev`'s summaries carried on by
    what the last event file gained; None unless the files are those
    `prev` read, all as they were but the last, which only grew."""
    sig, summaries = prev
    try:
        old = _sig_entries(sig)
    except ValueError:
        return None
    if not events or [e[0] for e in old] != [e[0] for e in events]:
        return None
    for (_n, size, mtime), (_o, osize, omtime, _end, _tail) in zip(events[:-1], old[:-1]):
        if size != osize or mtime != omtime:
            return None
    name, size, mtime = events[-1]
    _name, _size, _mtime, end, tail = old[-1]
    path = guild + "/" + name
    if size < end:
        return None
    if tail:
        try:
            with open(path, "rb") as f:
                f.seek(end - 4)
                if f.read(4).hex() != tail:
                    return None  # rewritten, not appended to
        except OSError:
            return None
    elif end:
        return None
    new_end, new_tail = _scan_into(summaries, path, end)
    return old[:-1] + [(name, size, mtime, new_end, new_tail.hex() if new_tail else tail)]


def _summary(row):
    from .runvalues import TagSummary

    fv, fs, lv, ls, nv, ns, xv, xs, total, count = row
    nan = _NAN
    # SQLite stores NaN as NULL.
    return TagSummary(
        first=(nan if fv is None else fv, fs), last=(nan if lv is None else lv, ls),
        min=(nan if nv is None else nv, ns), max=(nan if xv is None else xv, xs),
        total=nan if total is None else total, count=count,
    )


_scalar_sigs: dict[str, dict[str, str]] = {}
_tag_rows: dict[tuple[str, str], dict[str, tuple]] = {}
_all_tags: dict[str, dict[str, list]] = {}
_scalar_reads = 0


def _fresh_scalars(run):
    """``(db, root, stored)`` when the index's summaries of `run` are
    current (stored: whether it has any), else the summaries read from
    the run (stored for later); None when the index cannot be used."""
    global _scalar_reads
    if not enabled():
        return None
    db = _conn()
    if db is None:
        return None
    path = str(run._path)
    guild = path + "/.guild"
    root = _root_of(run)
    g_mtime = run._gmtime
    computed = _computed.get((root, run.id))
    if computed is not None:
        return computed if isinstance(computed, dict) else (db, root)
    try:
        sigs = _scalar_sigs.get(root)
        if sigs is not None:
            sig = sigs.get(run.id)
        else:
            _scalar_reads += 1
            if _scalar_reads > _BULK_AFTER:
                sigs = _load_sigs(db, root)
                computed = _computed.get((root, run.id))
                if computed is not None:
                    return computed if isinstance(computed, dict) else (db, root)
                sig = sigs.get(run.id)
            else:
                found = db.execute(
                    "SELECT sig FROM scalars WHERE root = ? AND id = ?", (root, run.id)
                ).fetchone()
                sig = found[0] if found else None
    except _sqlite().OperationalError:
        return None
    except _sqlite().DatabaseError as e:
        _set_aside(db, f"unreadable ({e})")
        return None
    if sig is not None and _events_unchanged(guild, sig, g_mtime):
        return db, root
    prev = None
    if sig is not None:
        stored = _stored_summaries(db, root, [run.id])
        prev = (sig, stored.get(run.id, {}))
    return _store_summaries(root, run.id, _summarize((guild, g_mtime, prev)))


def _stored_summaries(db, root: str, ids: list[str]) -> dict[str, dict]:
    """Id -> the summaries stored for it, of runs `ids`."""
    found: dict[str, dict] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        query = db.execute(
            f"SELECT id, tag, {_TAG_COLS} FROM tags WHERE root = ? AND id IN ({marks}) ORDER BY id, pos",
            (root, *chunk),
        )
        for r in query:
            found.setdefault(r[0], {})[r[1]] = _summary(r[2:])
    return found


def _store_summaries(root: str, run_id: str, result) -> dict:
    """`_summarize`'s summaries, queued to be stored when trusted."""
    sig, trusted, summaries = result
    if sig is not None and trusted:
        rows = [(root, run_id, pos, tag, *flat) for pos, (tag, flat) in enumerate(summaries.items())]
        _pending_scalars.append((root, run_id, sig, rows))
        _schedule_flush()
    return summaries


# (root, id) -> summaries read ahead, or True when the index's are
# current.
_computed: dict[tuple[str, str], Any] = {}


def _load_sigs(db, root: str) -> dict[str, str]:
    """The root's stored event-file signatures, with every listed run's
    summaries checked and, where changed, read again (`_read_ahead`)."""
    sigs = _scalar_sigs[root] = dict(db.execute("SELECT id, sig FROM scalars WHERE root = ?", (root,)))
    _read_ahead(root, sigs)
    return sigs


def _read_ahead(root: str, sigs: dict[str, str]) -> None:
    """Check the summaries of every run of the root's latest listing at
    once, and summarize those that changed together (in parallel when
    there are many): a command asking for many runs' scalars (a filter,
    a compare) asks for most."""
    stale = []
    for run in _listed.get(root, ()):
        guild = str(run._path) + "/.guild"
        g_mtime = run._gmtime
        sig = sigs.get(run.id)
        if sig is not None and _events_unchanged(guild, sig, g_mtime):
            _computed[(root, run.id)] = True
        else:
            stale.append((run.id, (guild, g_mtime, sig)))
    if not stale:
        return
    db = _conn()
    stored = _stored_summaries(db, root, [rid for rid, args in stale if args[2] is not None])
    work = [
        (guild, g_mtime, None if sig is None else (sig, stored.get(rid, {})))
        for rid, (guild, g_mtime, sig) in stale
    ]
    results = parallel_map(_summarize, work)
    for (run_id, _args), result in zip(stale, results):
        _computed[(root, run_id)] = _store_summaries(root, run_id, result)


def _flat(s) -> tuple:
    return (*s.first, *s.last, *s.min, *s.max, s.total, s.count)


def _bulk(root: str) -> bool:
    return root in _scalar_sigs


def scalar_summaries(run):
    """Tag -> `runvalues.TagSummary` of every scalar `run` logged, in
    order of first appearance: from the index when its event files are
    as they were summarized, else summarized again and stored; None
    when the index cannot be used."""
    fresh = _fresh_scalars(run)
    if fresh is None:
        return None
    if not isinstance(fresh, tuple):
        return {tag: _summary(flat) for tag, flat in fresh.items()}
    db, root = fresh
    try:
        if _bulk(root):
            rows = _all_tags.get(root)
            if rows is None:
                rows = _all_tags[root] = {}
                for r in db.execute(
                    f"SELECT id, tag, {_TAG_COLS} FROM tags WHERE root = ? ORDER BY id, pos", (root,)
                ):
                    rows.setdefault(r[0], []).append(r[1:])
            found = rows.get(run.id, ())
        else:
            found = db.execute(
                f"SELECT tag, {_TAG_COLS} FROM tags WHERE root = ? AND id = ? ORDER BY pos",
                (root, run.id),
            ).fetchall()
    except _sqlite().Error:
        return None
    return {r[0]: _summary(r[1:]) for r in found}


# What `tag_summary` returns when the index cannot answer (None means
# the run has no such scalar).
NO_INDEX = object()


def tag_summary(run, tag: str):
    """`run`'s summary of scalar `tag` (None if it never logged it), as
    `scalar_summaries` finds it, reading only that tag; `NO_INDEX`
    when the index cannot be used."""
    fresh = _fresh_scalars(run)
    if fresh is None:
        return NO_INDEX
    if not isinstance(fresh, tuple):
        flat = fresh.get(tag)
        return _summary(flat) if flat else None
    db, root = fresh
    try:
        if _bulk(root):
            rows = _tag_rows.get((root, tag))
            if rows is None:
                rows = _tag_rows[(root, tag)] = {
                    r[0]: r[1:]
                    for r in db.execute(
                        f"SELECT id, {_TAG_COLS} FROM tags WHERE root = ? AND tag = ?", (root, tag)
                    )
                }
            found = rows.get(run.id)
        else:
            found = db.execute(
                f"SELECT {_TAG_COLS} FROM tags WHERE root = ? AND id = ? AND tag = ?",
                (root, run.id, tag),
            ).fetchone()
    except _sqlite().Error:
        return NO_INDEX
    return _summary(found) if found else None


_pending_scalars: list[tuple] = []
_pending_rows: list[tuple] = []
_flush_scheduled = False


def _schedule_flush() -> None:
    global _flush_scheduled
    if not _flush_scheduled:
        import atexit

        atexit.register(flush)
        _flush_scheduled = True
    if len(_pending_scalars) + len(_pending_rows) >= 5000:
        flush()


def flush() -> None:
    """Write the scalar summaries and facts this command read again, in
    one transaction (at exit, or every five thousand)."""
    if not (_pending_scalars or _pending_rows) or _db is None:
        _pending_scalars.clear()
        _pending_rows.clear()
        return
    scalars, rows = list(_pending_scalars), list(_pending_rows)
    _pending_scalars.clear()
    _pending_rows.clear()
    try:
        with _transaction(_db):
            _db.executemany(
                "DELETE FROM tags WHERE root = ? AND id = ?", [(root, rid) for root, rid, _s, _r in scalars]
            )
            _db.executemany(
                "INSERT OR REPLACE INTO scalars (root, id, sig) VALUES (?, ?, ?)",
                [(root, rid, sig) for root, rid, sig, _r in scalars],
            )
            _db.executemany(
                f"INSERT OR REPLACE INTO tags (root, id, pos, tag, {_TAG_COLS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row for _root, _rid, _sig, tag_rows in scalars for row in tag_rows],
            )
            _db.executemany(
                f"INSERT OR REPLACE INTO runs ({_ROW_COLS}, root) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [row + (root,) for root, row, _moved in rows],
            )
            # A start time read again that differs from the stored
            # listing's: the next listing stores it again.
            _db.executemany(
                "DELETE FROM ordered WHERE root = ?",
                [(root,) for root in {r for r, _row, moved in rows if moved}],
            )
    except _sqlite().Error:
        pass  # busy or read-only: a later command stores them


# ---------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------


def _sqlite():
    import sqlite3

    return sqlite3


_db = None
_db_home = None


def _conn():
    """This process's connection to the index (per Guild home)."""
    global _db, _db_home
    where = _where()
    if _db is not None and _db_home == where:
        return _db
    if _db is not None:
        flush()
        _close()
    _db = _open()
    _db_home = where if _db is not None else None
    return _db


def _close() -> None:
    global _db
    if _db is not None:
        try:
            _db.close()
        except Exception:  # noqa: BLE001
            pass
    _db = None
    _forget()


def _open():
    """The index, opened and checked; None when it cannot be used."""
    try:
        sqlite3 = _sqlite()
    except ImportError:
        return None
    path = db_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    for attempt in range(2):
        try:
            db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = _tables(db) if version == SCHEMA else set()
            if tables >= {"runs", "scalars", "tags", "listing"}:
                if "ordered" not in tables:
                    # An index of this schema from before the stored
                    # listing was kept: the table is added (readers do
                    # without it where the file cannot be written).
                    try:
                        with _transaction(db):
                            _create_ordered(db)
                    except sqlite3.OperationalError:
                        pass
                return db
            if version == 0 and not _tables(db):
                _create(db)
                return db
            why = f"schema {version}, not {SCHEMA}" if version != SCHEMA else "not a run index"
        except sqlite3.OperationalError:
            # Busy, read-only, a full disk: not the file's fault.
            db.close()
            return None
        except sqlite3.DatabaseError as e:
            why = str(e)
        if not _set_aside(db, why) or attempt:
            return None
    return None


def _tables(db) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _create(db) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    with _transaction(db):
        db.execute(
            "CREATE TABLE IF NOT EXISTS runs ("
            " root TEXT NOT NULL, id TEXT NOT NULL, gsig INTEGER NOT NULL, sig2 TEXT NOT NULL,"
            " opref TEXT, facts TEXT, flags TEXT, sort_key INTEGER, PRIMARY KEY (root, id))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS scalars ("
            " root TEXT NOT NULL, id TEXT NOT NULL, sig TEXT NOT NULL, PRIMARY KEY (root, id))"
        )
        # One row per run and tag; NULL values are NaN (SQLite's REAL).
        db.execute(
            "CREATE TABLE IF NOT EXISTS tags ("
            " root TEXT NOT NULL, id TEXT NOT NULL, tag TEXT NOT NULL, pos INTEGER,"
            " fv REAL, fs INTEGER, lv REAL, ls INTEGER, nv REAL, ns INTEGER,"
            " xv REAL, xs INTEGER, total REAL, count INTEGER, PRIMARY KEY (root, id, tag))"
        )
        db.execute("CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (root, tag)")
        # An earlier version's packed listing, left empty (that version
        # needs the table to open the file).
        db.execute("CREATE TABLE IF NOT EXISTS listing (root TEXT PRIMARY KEY, data BLOB)")
        _create_ordered(db)
        db.execute(f"PRAGMA user_version = {SCHEMA}")


def _create_ordered(db) -> None:
    # Per root, its runs newest first, packed (`_ordered_row`).
    db.execute(
        "CREATE TABLE IF NOT EXISTS ordered ("
        " root TEXT PRIMARY KEY, dir_mtime INTEGER NOT NULL, ids BLOB NOT NULL,"
        " gsigs BLOB NOT NULL, starts BLOB NOT NULL, others TEXT NOT NULL)"
    )


class _transaction:
    """One write transaction (the connection is in autocommit mode)."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except Exception:
                self.db.execute("ROLLBACK")
                raise
        self.db.execute("ROLLBACK")


def _write(db, key: str, changed: list[tuple], gone: list[str], ordered: tuple) -> None:
    sqlite3 = _sqlite()
    from . import faults

    try:
        with _transaction(db):
            db.executemany(
                f"INSERT OR REPLACE INTO runs ({_ROW_COLS}, root) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [row + (key,) for row in changed],
            )
            # A crash here leaves a transaction SQLite rolls back.
            faults.point("index.write")
            db.executemany("DELETE FROM runs WHERE root = ? AND id = ?", [(key, g) for g in gone])
            db.executemany("DELETE FROM scalars WHERE root = ? AND id = ?", [(key, g) for g in gone])
            db.executemany("DELETE FROM tags WHERE root = ? AND id = ?", [(key, g) for g in gone])
            db.execute(
                f"INSERT OR REPLACE INTO ordered (root, {_ORDERED_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                (key, *ordered),
            )
            # Where an earlier version's packed listing was: not kept
            # up to date any more.
            db.execute("DELETE FROM listing WHERE root = ?", (key,))
    except sqlite3.OperationalError:
        # Busy past the timeout, or a read-only home: this command has
        # what it read; a later one writes it.
        pass


def _set_aside(db, why: str) -> bool:
    """Move an unusable index file aside (with its WAL files) so the
    next open starts a new one; one notice per command."""
    global _warned, _db
    try:
        db.close()
    except Exception:  # noqa: BLE001
        pass
    if db is _db:
        _db = None
        _forget()
    path = db_path()
    aside = path.with_name(f"{path.name}.bad-{int(time.time())}-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(str(path) + suffix)
        except OSError:
            pass
    if not _warned:
        _warned = True
        sys.stderr.write(f"guild: the run index was set aside ({why.splitlines()[0] if why else 'unreadable'}) and is being rebuilt\n")
    return True
