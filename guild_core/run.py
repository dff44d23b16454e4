"""A run: one run directory, its attributes, status, output and scalars.

The layout is Guild AI 0.9's, so either tool reads the other's runs::

    runs/<32 hex id>/            the run directory (process cwd)
      .guild/opref               TYPE:LOCATION VERSION MODEL OP
      .guild/attrs/<name>        one YAML value per file
      .guild/output              stdout and stderr bytes
      .guild/output.index        9-byte records per line
      .guild/events.out.tfevents.*  scalars
      .guild/LOCK | PENDING | STAGED  markers
"""

from __future__ import annotations

import os
import re
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from . import util
from .errors import GuildError, RunGone
from .home import LEFTOVER_PREFIXES

if TYPE_CHECKING:
    from . import procs

RUN_ID_P = re.compile(r"^[0-9a-f]{32}$")


def _simple_split(text: str) -> list[str] | None:
    """`shlex.split` for words that are bare or wholly single-quoted
    without spaces inside; None for anything else (shlex decides)."""
    if '"' in text or "\\" in text:
        return None
    parts = []
    for word in text.split():
        if "'" in word:
            if len(word) < 2 or word[0] != "'" or word[-1] != "'" or "'" in word[1:-1]:
                return None
            word = word[1:-1]
        parts.append(word)
    return parts
# The attributes the run index keeps (`guild_core.index.ATTRS`).
# Only what lists and filters read for every run: each is a file read
# when the index is built; the others are read when asked for.
_INDEXED_ATTRS = frozenset((
    "initialized", "started", "stopped", "exit_status", "label",
    "tags", "marked", "comments", "flags", "sourcecode_digest",
))

_MISSING = object()


@dataclass(frozen=True)
class OpRef:
    """Where an operation comes from: ``TYPE:LOCATION VERSION MODEL OP``."""

    type: str
    location: str
    version: str
    model: str
    op: str

    @classmethod
    def parse(cls, line: str) -> "OpRef":
        prefix, _, rest = line.strip().partition(":")
        # Most oprefs need no shell rules beyond plain single quotes:
        # a listing parses many.
        parts = _simple_split(rest)
        if parts is None:
            parts = shlex.split(rest)
        if not prefix or len(parts) != 4:
            raise ValueError(f"invalid opref: {line!r}")
        return cls(prefix, *parts)

    def __str__(self) -> str:
        parts = [self.location, self.version, self.model, self.op]
        return f"{self.type}:" + " ".join(shlex.quote(p) for p in parts)

    @property
    def op_name(self) -> str:
        return f"{self.model}:{self.op}" if self.model else self.op

    @property
    def project_dir(self) -> str | None:
        if self.type == "script":
            return self.location
        if self.type == "guildfile":
            return os.path.dirname(self.location)
        return None


def new_run_id() -> str:
    return uuid.uuid4().hex


class Run:
    """One run directory. Attribute reads are not cached beyond the
    object's life, so a fresh `Run` always sees the latest state."""

    # Set by the run index for the runs it lists (see guild_core.index):
    # the directory the run was listed in, its `.guild` time then, its
    # start time as indexed, and whether its attributes were checked
    # against the index this command.
    _root: str | None = None
    _gmtime: int | None = None
    _sort_key: int | None = None
    _attrs_checked = False

    def __init__(self, run_id: str, path: Path | str):
        self.id = run_id
        # A str path becomes a Path when first used: a listing makes a
        # Run for every run in the home and shows twenty.
        self._path = path
        self._cache: dict[str, Any] = {}
        # The run index's row for this run, turned into cached values on
        # first use (`index.prime`).
        self._index: Any = None

    def _primed(self) -> None:
        if self._index is not None:
            from . import index

            index.prime(self)

    def __repr__(self) -> str:
        return f"<Run {self.id}>"

    @property
    def path(self) -> Path:
        path = self._path
        if not isinstance(path, Path):
            path = self._path = Path(path)
        return path

    @path.setter
    def path(self, value: Path | str) -> None:
        self._path = value

    @classmethod
    def for_dir(cls, path: Path | str) -> "Run":
        path = Path(path)
        return cls(path.name, path)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def guild_path(self, *parts: str) -> Path:
        return self.path.joinpath(".guild", *parts)

    # -- opref --------------------------------------------------------

    @property
    def opref(self) -> OpRef | None:
        self._primed()
        if "opref" not in self._cache:
            try:
                line = self.guild_path("opref").read_text()
                self._cache["opref"] = OpRef.parse(line)
            except (OSError, ValueError):
                self._cache["opref"] = None
        return self._cache["opref"]

    def write_opref(self, opref: OpRef) -> None:
        util.atomic_write(self.guild_path("opref"), str(opref) + "\n")
        self._cache.pop("opref", None)

    # -- attributes ---------------------------------------------------

    def get(self, name: str, default: Any = None) -> Any:
        if self._index is not None:
            self._primed()
        key = "attr:" + name
        val = self._cache.get(key, _MISSING)
        if val is _MISSING:
            val = self._cache[key] = self._read_attr(name)
        return default if val is None else val

    def _read_attr(self, name: str) -> Any:
        cache = self._cache
        indexed = cache.get("index_attrs")
        if indexed is not None and name in _INDEXED_ATTRS:
            # As the run index read the file: its value when JSON holds
            # it exactly (checked as a read checks it), else its text.
            if name in indexed:
                return self._checked(name, indexed[name])
            if name == "flags" and "index_flags" in cache:
                import json

                return self._checked(name, json.loads(cache["index_flags"]))
            text = cache["index_raw"].get(name)
            if text is None:
                return None
            raw = text.encode("utf-8", "surrogateescape")
        elif indexed is not None and name not in cache["attr_names"]:
            # The index knows the run has no such file: a filter naming
            # a scalar tries attributes first, for every run.
            return None
        else:
            try:
                raw = self.guild_path("attrs", name).read_bytes()
            except OSError:
                return None
        val = _decode_attr(raw)
        if val is _BAD:
            _warn_bad_attr(self, name, "it is not valid YAML")
            return None
        return self._checked(name, val)

    def _checked(self, name: str, val: Any) -> Any:
        """`val` if it has attribute `name`'s shape (`ATTR_TYPES`), else
        None, with a warning."""
        check = ATTR_TYPES.get(name)
        if val is not None and check is not None:
            val, expected = check(val), check.__doc__
            if val is _BAD:
                _warn_bad_attr(self, name, f"expected {expected}")
                return None
        return val

    def lacks_flag(self, name: str) -> bool:
        """True when the run index shows the run has no flag `name`,
        without decoding its flags (a filter naming a scalar looks for
        a flag of that name in every run first); False when it may."""
        self._primed()
        cache = self._cache
        text = cache.get("index_flags")
        if text is None or "attr:flags" in cache:
            return False
        import json

        # The index writes flags with "," and ":" separators: a key
        # present appears as its JSON string followed by a colon.
        return json.dumps(name) + ":" not in text

    def has_attr(self, name: str) -> bool:
        return self.guild_path("attrs", name).exists()

    def attr_names(self) -> list[str]:
        try:
            return sorted(
                n for n in os.listdir(self.guild_path("attrs")) if not n.startswith(".")
            )
        except OSError:
            return []

    def write_attr(self, name: str, val: Any, atomic: bool = True) -> None:
        """Write one attribute. `atomic=False` is for a run directory
        still being assembled, which is itself renamed into place.

        Never creates the run directory or its ``.guild``: a run that
        was deleted or moved meanwhile raises `RunGone` instead of
        coming back as a ghost that blocks its own restore."""
        from . import yamlutil

        attrs = self.guild_path("attrs")
        data = yamlutil.encode(val) + "\n"
        if atomic:
            try:
                self._write_file(attrs / name, data)
            except RunGone:
                # A hand-made or Guild AI run may lack attrs/; .guild
                # itself must exist, or the run is gone.
                try:
                    attrs.mkdir()
                except FileExistsError:
                    pass
                except FileNotFoundError:
                    raise RunGone(self.id, self.path) from None
                self._write_file(attrs / name, data)
        else:
            (attrs / name).write_text(data)
        self._cache["attr:" + name] = val

    def _write_file(self, path: Path, data: str) -> None:
        try:
            util.atomic_write(path, data)
        except FileNotFoundError:
            raise RunGone(self.id, self.path) from None

    def write_marker(self, name: str, text: str = "") -> None:
        """Write a `.guild` marker (LOCK, PENDING...) atomically; a run
        that is gone raises `RunGone`."""
        self._write_file(self.guild_path(name), text)

    def del_attr(self, name: str) -> None:
        try:
            self.guild_path("attrs", name).unlink()
        except FileNotFoundError:
            if not self.guild_path().is_dir():
                raise RunGone(self.id, self.path) from None
        self._cache.pop("attr:" + name, None)

    # -- lifecycle records --------------------------------------------

    def clear_markers(self, *names: str) -> None:
        """Remove `.guild` marker files (LOCK, LOCK.proc, PENDING, STAGED, ENV)."""
        for name in names:
            try:
                self.guild_path(name).unlink()
            except FileNotFoundError:
                pass

    def record_start(self) -> None:
        """A fresh start: the start time now and no recorded end. (The
        caller records the processes once it knows them.)"""
        self.del_attr("exit_status")
        self.del_attr("stopped")
        self.write_attr("started", util.now_micros())

    def record_end(self, exit_status: int) -> None:
        """The run has ended: its exit status, stop time, and no LOCK (nor
        the room the runner kept to record this, when `guild stop` records
        the end of a run whose guild was killed)."""
        self.write_attr("exit_status", exit_status)
        self.write_attr("stopped", util.now_micros())
        self.clear_markers("LOCK", "LOCK.proc", ".reserve")

    # -- status -------------------------------------------------------
    #
    # Who may make a run read "pending" or "running" (see procs.py): the
    # process that recorded itself in PENDING (it is about to start the
    # run), the run's own process named in LOCK, and the guild process
    # supervising it, both recorded with their start times in LOCK.proc.
    # A marker whose process is gone proves nothing.

    def mark_pending(self, owner: "procs.Owner | None") -> None:
        """PENDING: `owner` is about to start the run. With no owner (a
        trial created by --init-trials) the run waits, pending, for a
        start that may never come."""
        self.write_marker("PENDING", owner.encode() + "\n" if owner else "")

    def record_processes(self, run_proc: "procs.Owner", supervisor: "procs.Owner | None",
                         supervisor_signals: bool = True) -> None:
        """The run's process and its supervisor, then LOCK (the pid
        alone, as Guild AI reads it). Written in that order, so a LOCK
        is never without its record. A supervisor that does not take
        signals for this run (a thread of a process supervising many:
        parallel trials, a Dask worker) is recorded so: ``guild stop``
        signals the run's process group instead."""
        lines = [f"run {run_proc.encode()}"]
        if supervisor is not None and supervisor != run_proc:
            lines.append(f"supervisor {supervisor.encode()}")
            if not supervisor_signals:
                lines.append("stop run-group")
        self.write_marker("LOCK.proc", "\n".join(lines) + "\n")
        self.write_marker("LOCK", str(run_proc.pid))

    def _recorded_processes(self) -> dict[str, "procs.Owner"] | None:
        from . import procs

        try:
            text = self.guild_path("LOCK.proc").read_text(errors="replace")
        except OSError:
            return None
        owners = {}
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            owner = procs.Owner.decode(rest)
            if owner is not None:
                owners[kind] = owner
        return owners

    def run_process(self) -> "procs.Owner | None":
        """The run's own process, if it provably is alive: the process
        LOCK names, with the start time recorded for it (or, for a
        Guild AI run, an environment naming this run)."""
        from . import procs

        try:
            pid = procs.parse_pid(self.guild_path("LOCK").read_text(errors="replace"))
        except OSError:
            return None
        if pid is None:
            return None
        owners = self._recorded_processes()
        if owners is not None:
            owner = owners.get("run")
            return owner if owner and owner.pid == pid and procs.alive(owner) else None
        return procs.owner_of(pid) if procs.names_run(pid, self.id) else None

    def stopped_by_group(self) -> bool:
        """Whether ``guild stop`` signals the run's process group, not
        its supervisor (see `record_processes`)."""
        try:
            text = self.guild_path("LOCK.proc").read_text(errors="replace")
        except OSError:
            return False
        return "stop run-group" in text.splitlines()

    def supervisor(self) -> "procs.Owner | None":
        """The live guild process recording this run's end, if any."""
        from . import procs

        owner = (self._recorded_processes() or {}).get("supervisor")
        return owner if procs.alive(owner) else None

    @property
    def pid(self) -> int | None:
        owner = self.run_process()
        return owner.pid if owner else None

    def _marker(self, name: str) -> str | None:
        """The text of marker `name` (LOCK, PENDING...), None without it:
        as the run index recorded it when this run comes from there."""
        if self._index is not None:
            self._primed()
        markers = self._cache.get("markers")
        if markers is not None:
            return markers.get(name)
        try:
            return self.guild_path(name).read_text(errors="replace")
        except OSError:
            return None

    def _pending(self) -> bool | None:
        """True while PENDING's owner lives (or PENDING names none),
        False when its owner is gone, None without PENDING."""
        from . import procs

        text = self._marker("PENDING")
        if text is None:
            return None
        if not text.strip():
            return True
        owner = procs.Owner.decode(text)
        return owner is None or procs.alive(owner)

    @property
    def status(self) -> str:
        """Status as Guild AI derives it from the directory, with the
        processes checked for who they are."""
        if self._index is not None:
            self._primed()
        if self._cache.get("markers") == {}:
            # Indexed with no marker (most runs): its end decides.
            return self._ended_status()
        if self._marker("LOCK.remote") is not None:
            return "running"
        pending = self._pending()
        if pending:
            return "pending"
        if pending is False:
            # Its starter is gone: unless it moved on to run it just
            # now (it writes LOCK before removing PENDING), the start
            # will never happen. Looked at live: it may be moving on.
            if self.guild_path("PENDING").exists() and not self.guild_path("LOCK").exists():
                return "error"
            return self._ended_status()
        if self._marker("STAGED") is not None:
            return "staged"
        return self._ended_status()

    def _ended_status(self) -> str:
        exit_status = self.get("exit_status")
        if exit_status is None:
            # Until its end is recorded, a run whose process or
            # supervisor lives is running: the supervisor writes the
            # exit status after the process exits.
            if self.run_process() or self.supervisor():
                return "running"
            # The end may have been recorded since we first looked.
            self._cache.pop("attr:exit_status", None)
            exit_status = self.get("exit_status")
            if exit_status is None:
                return "error"
        if exit_status == 0:
            return "completed"
        if exit_status < 0:
            return "terminated"
        return "error"

    # -- scalars and output -------------------------------------------

    def last_scalars(self) -> dict[str, tuple[float, int]]:
        """The last value and step of each scalar this run logged."""
        from . import tfevents

        return tfevents.last_scalars(self.guild_path())

    def iter_output(self) -> Iterator[tuple[int, int, bytes]]:
        """(millisecond time, stream, line bytes) for each output line."""
        try:
            data = self.guild_path("output").read_bytes()
            index = self.guild_path("output.index").read_bytes()
        except OSError:
            return
        lines = data.splitlines(keepends=True)
        for i, line in enumerate(lines):
            rec = index[i * 9 : i * 9 + 9]
            if len(rec) == 9:
                yield int.from_bytes(rec[:8], "big"), rec[8], line
            else:
                yield 0, 0, line

    # -- names --------------------------------------------------------

    @property
    def op_name(self) -> str:
        """The operation as listed: ``train.py``, ``train``, ``train.py+``."""
        opref = self.opref
        if opref is None:
            return ""
        if opref.type == "builtin" and opref.op == "queue":
            # Guild AI's built-in operation (or an executor's
            # ``NAME:queue``), no batch
            return opref.op_name
        proto_line = self._cache.get("proto_opref", _MISSING)
        if opref.type == "builtin" or self.has_proto:
            proto = Run.for_dir(self.guild_path("proto"))
            if proto_line is not _MISSING and proto_line:
                try:
                    proto._cache["opref"] = OpRef.parse(proto_line)
                except ValueError:
                    proto._cache["opref"] = None
            base = proto.op_name if proto.opref else ""
            suffix = "" if opref.op == "+" else opref.op
            return f"{base}+{suffix}"
        return opref.op_name

    @property
    def has_proto(self) -> bool:
        """Whether the run has a ``.guild/proto`` (a batch's trial
        prototype), as the run index saw it when it comes from there."""
        if self._index is not None:
            self._primed()
        proto_line = self._cache.get("proto_opref", _MISSING)
        if proto_line is not _MISSING:
            return proto_line is not None
        return self.guild_path("proto").is_dir()

    @property
    def project_dir(self) -> str | None:
        """The project the operation came from (a batch's: its trials')."""
        opref = self.opref
        if opref is not None and opref.type == "builtin":
            proto = self.batch_proto
            opref = proto.opref if proto else None
        return opref.project_dir if opref else None

    @property
    def batch_proto(self) -> "Run | None":
        proto_dir = self.guild_path("proto")
        return Run.for_dir(proto_dir) if proto_dir.is_dir() else None


def _decode_attr(raw: bytes) -> Any:
    # Most attributes are a plain integer or word: skip YAML for those,
    # it is the bulk of listing many runs.
    s = raw.strip()
    if s.isdigit():
        return int(s)
    if s in (b"true", b"false"):
        return s == b"true"
    from . import yamlutil

    try:
        val = yamlutil.fast_decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        val = yamlutil.NOT_FAST
    if val is not yamlutil.NOT_FAST:
        return val
    try:
        return yamlutil.decode(raw)
    except Exception:
        return _BAD


# -- attribute types -----------------------------------------------------
#
# Guild AI's attributes have known shapes; a file of another shape (hand
# edited, truncated, written by a broken tool) reads as missing, with a
# warning, so one bad run never breaks a command over all of them. Each
# check returns the value (possibly normalized) or _BAD; its docstring
# says what was expected.

_BAD = object()


def _int_attr(val):
    """an integer"""
    return val if isinstance(val, int) and not isinstance(val, bool) else _BAD


def _str_attr(val):
    """a string"""
    if isinstance(val, str):
        return val
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        return str(val)
    return _BAD


def _map_attr(val):
    """a mapping"""
    return val if isinstance(val, dict) else _BAD


def _bool_attr(val):
    """yes or no"""
    return val if isinstance(val, bool) else _BAD


def _words_attr(val):
    """a list of strings"""
    if not isinstance(val, list):
        return _BAD
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in val):
        return _BAD
    return [str(v) for v in val]


def _args_attr(val):
    """a list of arguments"""
    if not isinstance(val, list) or any(isinstance(v, (dict, list)) for v in val):
        return _BAD
    return val


def _records_attr(val):
    """a list of mappings"""
    return val if isinstance(val, list) and all(isinstance(v, dict) for v in val) else _BAD


def _deps_attr(val):
    """a mapping of dependencies"""
    if not isinstance(val, dict) or not all(isinstance(v, dict) for v in val.values()):
        return _BAD
    return val


ATTR_TYPES = {
    "initialized": _int_attr,
    "started": _int_attr,
    "stopped": _int_attr,
    "exit_status": _int_attr,
    "random_seed": _int_attr,
    "max_trials": _int_attr,
    "id": _str_attr,
    "label": _str_attr,
    "sourcecode_digest": _str_attr,
    "vcs_commit": _str_attr,
    "objective": _str_attr,
    "host": _str_attr,
    "user": _str_attr,
    "marked": _bool_attr,
    "flags": _map_attr,
    "user_flags": _map_attr,
    "env": _map_attr,
    "op": _map_attr,
    "run_params": _map_attr,
    "platform": _map_attr,
    "tags": _words_attr,
    "cmd": _args_attr,
    "comments": _records_attr,
    "trials": _records_attr,
    "deps": _deps_attr,
}

_warned: set[tuple[str, str]] = set()


def forget_warnings() -> None:
    _warned.clear()


def _warn_bad_attr(run: "Run", name: str, why: str) -> None:
    # Once per run and file in a command: a listing reads attributes
    # many times.
    key = (str(run.path), name)
    if key in _warned:
        return
    _warned.add(key)
    import sys

    sys.stderr.write(
        f"WARNING: run {run.short_id}: ignoring .guild/attrs/{name} ({why})\n"
    )


def is_run_dir(path: Path) -> bool:
    return RUN_ID_P.match(path.name) is not None and (path / ".guild" / "opref").exists()


def runs_in(root: Path) -> list[Run]:
    """Every run directly under `root`, newest first by start (or init)
    time, as Guild AI lists them; for the home's runs and deleted runs,
    their listing facts come from the run index (`guild_core.index`).
    Leftovers of interrupted commands found on the way are cleaned up
    (`store.sweep`)."""
    # The directory's time before it is listed, stored with the index's
    # listing: while it is unchanged, no run was added or removed since.
    try:
        dir_mtime = os.stat(root).st_mtime_ns
    except OSError:
        dir_mtime = None
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise GuildError(f"{root} is not a directory") from None
    except OSError as e:
        raise GuildError(f"cannot read {root}: {e.strerror}") from None
    leftovers = [name for name in names if name.startswith(LEFTOVER_PREFIXES)]
    if leftovers:
        from . import store

        names = store.sweep(root, leftovers) + names
    from . import home

    if root in (home.runs_dir(), home.trash_runs_dir()):
        from . import index

        # Sorted by the start time the index has of each run.
        indexed = index.runs_in(root, names, dir_mtime)
        if indexed is not None:
            return indexed
    runs = [
        Run(name, root / name)
        for name in names
        if RUN_ID_P.match(name) and os.path.exists(os.path.join(root, name, ".guild", "opref"))
    ]
    runs.sort(key=_sort_key, reverse=True)
    return runs


def _sort_key(run: Run) -> int:
    return run.get("started") or run.get("initialized") or 0
