"""The run index: what listing, filtering and comparing read, kept in
SQLite under ``$GUILD_HOME/cache/runs-index/``.

Run directories stay the only source of truth: the index is a cache of
each run's listing facts (opref, markers, attributes, scalar summaries)
that any command may delete. Freshness comes from stat checks, never a
rescan: one ``os.scandir`` of the runs directory finds runs added and
removed, and each run's ``.guild`` and ``.guild/attrs`` modification
times tell which to read again (an attribute or marker created, renamed
over or removed changes its directory's time), with the times of the
attribute files a run's later life rewrites (a label, tags, marks,
comments, its end), which Guild AI 0.9 writes in place. A time too
recent to trust (the file system's clock is coarse) is not recorded, so
that run is read again next time. Scalar summaries are checked
separately, by the size and time of each event file, only when a
command asks for scalars.

What the index cannot know is served live: whether a run that has not
recorded its end is still running (its process is checked each time).

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
from pathlib import Path
from typing import Any

from . import home

SCHEMA = 3
DB_NAME = "runs.sqlite"
# A directory time within this many seconds of now may still change
# within the same clock tick: the run is read again next time.
RACY_SECONDS = 2.0


# Attributes rewritten after a run is made (by guild label, tag, mark,
# comment, a run's end or restart), which Guild AI 0.9 writes in place,
# changing no directory's time. They are checked when a command uses a
# run's facts (`prime`), not for every run a listing only sorts.
_REWRITTEN = ("label", "tags", "marked", "comments", "exit_status", "stopped", "flags")


def rewritten_sig(path: str, now_ns: int) -> str:
    """The times of a run's `_REWRITTEN` attribute files; "" when one is
    too recent to trust."""
    attrs = path + "/.guild/attrs/"
    times = []
    for attr in _REWRITTEN:
        try:
            times.append(os.stat(attrs + attr).st_mtime_ns)
        except OSError:
            times.append(0)
    if now_ns - max(times) <= RACY_SECONDS * 1e9:
        return ""
    return ":".join(map(str, times))


def _attrs():
    """The attributes the index keeps for every run (what lists, filters
    and compares read; `run._INDEXED_ATTRS`); others are read from the
    run when asked for."""
    from .run import _INDEXED_ATTRS

    return sorted(_INDEXED_ATTRS)


MARKERS = ("LOCK", "LOCK.remote", "PENDING", "STAGED")

_DISABLED_ENV = "GUILD_NO_INDEX"
_warned = False


def enabled() -> bool:
    return not os.environ.get(_DISABLED_ENV)


def db_path() -> Path:
    return home.cache_dir("runs-index") / DB_NAME


# ---------------------------------------------------------------------
# Reading runs
# ---------------------------------------------------------------------


def runs_in(root: Path, names: list[str]):
    """`Run` objects for the run directories `names` under `root`, their
    listing facts served from the index (refreshed where a run changed),
    or None when the index cannot be used (the caller reads the runs
    directly)."""
    if not enabled():
        return None
    db = _conn()
    if db is None:
        return None
    sqlite3 = _sqlite()
    try:
        return _runs(db, root, names)
    except sqlite3.OperationalError:
        # Busy, read-only, a full disk: read the runs directly this time.
        return None
    except sqlite3.DatabaseError as e:
        _set_aside(db, f"unreadable ({e})")
        return None


def _runs(db, root: Path, names: list[str]):
    global _primed_count
    from .run import RUN_ID_P, Run

    # Rows read for an earlier listing in this process may be stale.
    global _scalar_reads
    _rows.clear()
    _scalar_rows.clear()
    _primed_count = _scalar_reads = 0
    key = str(root)
    # id -> (sig, sort_key): one query, the columns a listing needs
    # before it knows which runs it shows.
    stored = {
        row[0]: (row[1], row[2])
        for row in db.execute("SELECT id, sig, sort_key FROM runs WHERE root = ?", (key,))
    }
    now_ns = time.time_ns()
    racy_ns = int(RACY_SECONDS * 1e9)
    runs = []
    changed = []
    stat = os.stat
    match = RUN_ID_P.match
    prefix = key + os.sep
    for name in names:
        if not match(name):
            continue
        path = prefix + name
        guild = path + "/.guild"
        try:
            g_mtime = stat(guild).st_mtime_ns
        except OSError:
            continue
        attrs = guild + "/attrs/"
        try:
            a_mtime = stat(attrs).st_mtime_ns
        except OSError:
            a_mtime = 0
        # A restart rewrites `started` in place (Guild AI writes files in
        # place): it decides the order, so it is checked for every run.
        try:
            s_mtime = stat(attrs + "started").st_mtime_ns
        except OSError:
            s_mtime = 0
        sig = f"{g_mtime}:{a_mtime}:{s_mtime}"
        a_mtime = max(a_mtime, s_mtime)
        old = stored.pop(name, None)
        run = Run(name, path)
        if old is None or old[0] != sig or not old[0]:
            facts = read_facts(path)
            if facts is None:
                continue  # not a run: no .guild/opref
            fresh = now_ns - max(g_mtime, a_mtime) > racy_ns
            row = (name, sig if fresh else "", rewritten_sig(path, now_ns), *facts)
            changed.append(row)
            run._index = row
        else:
            run._index = _Lazy(key, name)
            run._sort_key = old[1] or 0
        runs.append(run)
    gone = list(stored)
    if changed or gone:
        _write(db, key, changed, gone)
    return runs


class _Lazy:
    """A run's index row not read yet: `prime` reads it (and, once many
    runs of a listing were primed, those of all the others at once)."""

    __slots__ = ("root", "id")

    def __init__(self, root: str, run_id: str):
        self.root = root
        self.id = run_id


_rows: dict[tuple[str, str], tuple] = {}
_primed_count = 0


def _row_of(lazy: _Lazy):
    global _primed_count
    row = _rows.get((lazy.root, lazy.id))
    if row is not None:
        return row
    db = _conn()
    if db is None:
        return None
    cols = "id, sig, sig2, opref, facts, sort_key"
    _primed_count += 1
    try:
        if _primed_count > 50:
            # Most of a listing is being read: all of it in one query.
            for r in db.execute(f"SELECT {cols} FROM runs WHERE root = ?", (lazy.root,)):
                _rows[(lazy.root, r[0])] = r
            return _rows.get((lazy.root, lazy.id))
        return db.execute(f"SELECT {cols} FROM runs WHERE root = ? AND id = ?", (lazy.root, lazy.id)).fetchone()
    except _sqlite().Error:
        return None


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def read_facts(path: Path) -> tuple | None:
    """``(opref, facts, sort_key)`` of the run at `path` as the index
    stores them: facts is JSON of its markers, attributes (see
    `_attr_entry`) and proto's opref; None when it is not a run."""
    from .run import _decode_attr

    guild = os.path.join(path, ".guild")
    try:
        with open(os.path.join(guild, "opref")) as f:
            opref = f.read()
    except OSError:
        return None
    try:
        with open(os.path.join(guild, "proto", "opref")) as f:
            proto_opref = f.read()
    except OSError:
        proto_opref = "" if os.path.isdir(os.path.join(guild, "proto")) else None
    try:
        present = set(os.listdir(guild))
    except OSError:
        present = set()
    markers = {}
    for name in MARKERS:
        if name in present:
            try:
                with open(os.path.join(guild, name), errors="replace") as f:
                    markers[name] = f.read()
            except OSError:
                pass
    try:
        attr_names = set(os.listdir(os.path.join(guild, "attrs")))
    except OSError:
        attr_names = set()
    attrs = {}
    for name in _attrs():
        if name not in attr_names:
            continue
        try:
            with open(os.path.join(guild, "attrs", name), "rb") as f:
                raw = f.read()
        except OSError:
            continue
        attrs[name] = _attr_entry(raw)
    sort_key = 0
    for name in ("started", "initialized"):
        val = attrs.get(name, {}).get("v")
        if isinstance(val, int) and not isinstance(val, bool) and val:
            sort_key = val
            break
    data = {"m": markers, "a": attrs, "p": proto_opref}
    return opref, json.dumps(data), sort_key


def _attr_entry(raw: bytes) -> dict:
    """``{"v": value}`` when JSON holds the decoded value exactly, else
    ``{"raw": text}`` (decoded, and warned of, when read)."""
    from .run import _BAD, _decode_attr

    val = _decode_attr(raw)
    if val is not _BAD and _json_exact(val):
        return {"v": val}
    return {"raw": raw.decode("utf-8", "surrogateescape")}


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
    """Fill `run`'s cache from its index row (done on first use)."""
    row = run._index
    run._index = None
    if isinstance(row, _Lazy):
        lazy = row
        row = _row_of(lazy)
        if row is None:
            return  # gone from the index meanwhile: read the files
        now_ns = time.time_ns()
        current = rewritten_sig(str(run._path), now_ns)
        if not current or current != row[2]:
            # Rewritten in place since it was indexed: read it again.
            facts = read_facts(str(run._path))
            if facts is None:
                return
            row = (row[0], row[1], current, *facts)
            _pending_rows.append((lazy.root, row))
            _schedule_flush()
    from .run import OpRef

    _id, _sig, _sig2, opref, data, _sort = row
    cache = run._cache
    if "opref" not in cache:
        try:
            cache["opref"] = OpRef.parse(opref)
        except ValueError:
            cache["opref"] = None
    facts = json.loads(data)
    cache.setdefault("index_attrs", facts["a"])
    cache.setdefault("markers", facts["m"])
    cache.setdefault("proto_opref", facts["p"])


_roots: tuple[str, frozenset] | None = None


def is_indexed(run) -> bool:
    """Whether `run` lives where the index keeps runs (the home's runs
    and deleted runs), so its scalar summaries may be kept there too."""
    global _roots
    if not enabled():
        return False
    where = os.environ.get("GUILD_HOME", "")
    if _roots is None or _roots[0] != where:
        _roots = (where, frozenset((str(home.runs_dir()), str(home.trash_runs_dir()))))
    return os.path.dirname(str(run._path)) in _roots[1]


def sort_key(run) -> int:
    key = getattr(run, "_sort_key", None)
    if key is not None:
        return key
    row = getattr(run, "_index", None)
    if isinstance(row, tuple):
        return row[5] or 0
    return run.get("started") or run.get("initialized") or 0


# ---------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------


def scalar_summaries(run):
    """Tag -> `runvalues.TagSummary` for `run`, from the index when its
    event files are as they were summarized (their names, sizes and
    times), else summarized again and stored; None when the index
    cannot be used."""
    if not enabled():
        return None
    from .runvalues import TagSummary, summarize

    path = str(run._path)
    guild = path + "/.guild"
    db = _conn()
    if db is None:
        return None
    key = os.path.dirname(path)
    try:
        row = _scalar_row(db, key, run.id)
    except _sqlite().OperationalError:
        return None
    except _sqlite().DatabaseError as e:
        _set_aside(db, f"unreadable ({e})")
        return None
    if row is not None and _events_unchanged(guild, row[0]):
        return {
            tag: TagSummary(
                first=tuple(d["first"]) if d["first"] else None,
                last=tuple(d["last"]) if d["last"] else None,
                min=tuple(d["min"]) if d["min"] else None,
                max=tuple(d["max"]) if d["max"] else None,
                total=d["total"], count=d["count"],
            )
            for tag, d in json.loads(row[1]).items()
        }
    try:
        g_mtime = os.stat(guild).st_mtime_ns
        events = sorted(
            (e.name, st.st_size, st.st_mtime_ns)
            for e in os.scandir(guild)
            if e.name.startswith("events.out.tfevents.")
            for st in (e.stat(),)
        )
    except OSError:
        return None
    sig = json.dumps([g_mtime, events])
    summaries = summarize(Path(guild))
    now_ns = time.time_ns()
    if all(now_ns - mtime > RACY_SECONDS * 1e9 for mtime in [g_mtime] + [e[2] for e in events]):
        _pending_scalars.append((key, run.id, sig, json.dumps({tag: vars(s) for tag, s in summaries.items()})))
        _schedule_flush()
    return summaries


_pending_scalars: list[tuple] = []
_pending_rows: list[tuple] = []
_flush_scheduled = False


def _schedule_flush() -> None:
    global _flush_scheduled
    if not _flush_scheduled:
        import atexit

        atexit.register(flush)
        _flush_scheduled = True
    if len(_pending_scalars) + len(_pending_rows) >= 1000:
        flush()
_scalar_rows: dict[tuple[str, str], tuple] = {}
_scalar_reads = 0


def _scalar_row(db, key: str, run_id: str):
    """(sig, data) of a run's stored summaries; once many runs were
    asked for, all of the root's are read in one query."""
    global _scalar_reads
    row = _scalar_rows.get((key, run_id))
    if row is not None:
        return row
    _scalar_reads += 1
    if _scalar_reads == 50:
        for rid, sig, data in db.execute("SELECT id, sig, data FROM scalars WHERE root = ?", (key,)):
            _scalar_rows[(key, rid)] = (sig, data)
        return _scalar_rows.get((key, run_id))
    if _scalar_reads > 50:
        return None
    return db.execute("SELECT sig, data FROM scalars WHERE root = ? AND id = ?", (key, run_id)).fetchone()


def _events_unchanged(guild: str, sig: str) -> bool:
    """Whether ``.guild`` (no event file added or removed) and each event
    file (its size and time) are as when summarized."""
    try:
        g_mtime, events = json.loads(sig)
        if os.stat(guild).st_mtime_ns != g_mtime:
            return False
        for name, size, mtime in events:
            st = os.stat(guild + "/" + name)
            if st.st_size != size or st.st_mtime_ns != mtime:
                return False
    except (OSError, ValueError, TypeError):
        return False
    return True


def flush() -> None:
    """Write the scalar summaries this command computed, in one
    transaction (at exit, or every thousand)."""
    if not (_pending_scalars or _pending_rows) or _db is None:
        _pending_scalars.clear()
        _pending_rows.clear()
        return
    scalars, rows = list(_pending_scalars), list(_pending_rows)
    _pending_scalars.clear()
    _pending_rows.clear()
    try:
        with _transaction(_db):
            _db.executemany("INSERT OR REPLACE INTO scalars (root, id, sig, data) VALUES (?, ?, ?, ?)", scalars)
            _db.executemany(
                "INSERT OR REPLACE INTO runs (id, sig, sig2, opref, facts, sort_key, root) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [row + (root,) for root, row in rows],
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
    where = str(home.guild_home())
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
    _rows.clear()


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
            if version == SCHEMA and _tables(db) >= {"runs", "scalars"}:
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
            " root TEXT NOT NULL, id TEXT NOT NULL, sig TEXT NOT NULL, sig2 TEXT NOT NULL,"
            " opref TEXT, facts TEXT, sort_key INTEGER, PRIMARY KEY (root, id))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS scalars ("
            " root TEXT NOT NULL, id TEXT NOT NULL, sig TEXT NOT NULL, data TEXT,"
            " PRIMARY KEY (root, id))"
        )
        db.execute(f"PRAGMA user_version = {SCHEMA}")


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


def _write(db, key: str, changed: list[tuple], gone: list[str]) -> None:
    sqlite3 = _sqlite()
    from . import faults

    try:
        with _transaction(db):
            db.executemany(
                "INSERT OR REPLACE INTO runs (id, sig, sig2, opref, facts, sort_key, root)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [row + (key,) for row in changed],
            )
            # A crash here leaves a transaction SQLite rolls back.
            faults.point("index.write")
            db.executemany("DELETE FROM runs WHERE root = ? AND id = ?", [(key, g) for g in gone])
            db.executemany("DELETE FROM scalars WHERE root = ? AND id = ?", [(key, g) for g in gone])
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
        _rows.clear()
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
