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
from typing import Any, Iterator

from . import util

RUN_ID_P = re.compile(r"^[0-9a-f]{32}$")

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

    def __init__(self, run_id: str, path: Path | str):
        self.id = run_id
        self.path = Path(path)
        self._cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Run {self.id}>"

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
        val = self._cache.get("attr:" + name, _MISSING)
        if val is _MISSING:
            val = self._read_attr(name)
            self._cache["attr:" + name] = val
        return default if val is None else val

    def _read_attr(self, name: str) -> Any:
        try:
            raw = self.guild_path("attrs", name).read_bytes()
        except OSError:
            return None
        return _decode_attr(raw)

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
        still being assembled, which is itself renamed into place."""
        from . import yamlutil

        attrs = self.guild_path("attrs")
        data = yamlutil.encode(val) + "\n"
        if atomic:
            attrs.mkdir(parents=True, exist_ok=True)
            util.atomic_write(attrs / name, data)
        else:
            (attrs / name).write_text(data)
        self._cache["attr:" + name] = val

    def del_attr(self, name: str) -> None:
        try:
            self.guild_path("attrs", name).unlink()
        except FileNotFoundError:
            pass
        self._cache.pop("attr:" + name, None)

    # -- lifecycle records --------------------------------------------

    def clear_markers(self, *names: str) -> None:
        """Remove `.guild` marker files (LOCK, PENDING, STAGED, ENV)."""
        for name in names:
            try:
                self.guild_path(name).unlink()
            except FileNotFoundError:
                pass

    def record_start(self) -> None:
        """A fresh start: the start time now and no recorded end. (The
        caller writes LOCK once it knows the pid.)"""
        self.del_attr("exit_status")
        self.del_attr("stopped")
        self.write_attr("started", util.now_micros())

    def record_end(self, exit_status: int) -> None:
        """The run has ended: its exit status, stop time, and no LOCK."""
        self.write_attr("exit_status", exit_status)
        self.write_attr("stopped", util.now_micros())
        self.clear_markers("LOCK")

    # -- status -------------------------------------------------------

    @property
    def pid(self) -> int | None:
        try:
            raw = self.guild_path("LOCK").read_text().strip()
        except OSError:
            return None
        try:
            pid = int(raw)
        except ValueError:
            return None
        return pid if self._pid_is_run_process(pid) else None

    def _pid_is_run_process(self, pid: int) -> bool:
        if not util.pid_alive(pid):
            return False
        # A recycled pid belongs to a process that started after the run.
        started = self.get("started") or self.get("initialized")
        created = util.process_start_time(pid)
        if started and created and created > started / 1e6 + 5:
            return False
        return True

    @property
    def status(self) -> str:
        """Status as Guild AI derives it from the directory."""
        if self.guild_path("LOCK.remote").exists():
            return "running"
        if self.guild_path("PENDING").exists():
            return "pending"
        if self.guild_path("STAGED").exists():
            return "staged"
        exit_status = self.get("exit_status")
        if exit_status is None:
            return "running" if self.pid else "error"
        if exit_status == 0:
            return "completed"
        if isinstance(exit_status, int) and exit_status < 0:
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
        if opref.type == "builtin" or self.guild_path("proto").is_dir():
            proto = Run.for_dir(self.guild_path("proto"))
            base = proto.op_name if proto.opref else ""
            suffix = "" if opref.op == "+" else opref.op
            return f"{base}+{suffix}"
        return opref.op_name

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
        return yamlutil.decode(raw)
    except Exception:
        return None


def is_run_dir(path: Path) -> bool:
    return RUN_ID_P.match(path.name) is not None and (path / ".guild" / "opref").exists()


def runs_in(root: Path) -> list[Run]:
    """Every run directly under `root`, newest first by start (or init)
    time, as Guild AI lists them."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    runs = [
        Run(name, root / name)
        for name in names
        if RUN_ID_P.match(name) and os.path.exists(os.path.join(root, name, ".guild", "opref"))
    ]
    runs.sort(key=_sort_key, reverse=True)
    return runs


def _sort_key(run: Run) -> int:
    return run.get("started") or run.get("initialized") or 0
