"""Remotes: named places runs are kept away from this machine.

A remote is configured in the user config (``$GUILD_HOME/config.yml``,
and ``~/.guild/config.yml`` when GUILD_HOME is the default) under
``remotes:``, or given ad hoc as Guild AI takes it (``s3:BUCKET/PATH``,
``ssh:USER@HOST:PORT``, a directory path); its ``type`` names a remote
type registered by a plugin (`hookspecs.guild_register_remote_types`),
which makes the `hookspecs.Remote` that does the work.

The core keeps what every type shares: reading the config, which files
of a run are its metadata (what listing and filtering read: `meta_files`),
the local mirror of a remote's runs that every read command works over
(`view`), a manifest of a run's files for "only what changed travels",
and the count of what a transfer moved.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import home
from .errors import GuildError

CONFIG_NAME = "config.yml"


# ---------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------


def config_paths() -> list[Path]:
    """The user config files, most specific first: the Guild home's,
    then ``~/.guild/config.yml`` when the home is the default one."""
    paths = [home.guild_home() / CONFIG_NAME]
    if not os.environ.get("GUILD_HOME"):
        user = Path.home() / ".guild" / CONFIG_NAME
        if user not in paths:
            paths.append(user)
    return paths


def configured() -> dict[str, dict[str, Any]]:
    """Name -> config of every remote in the user config (the first file
    naming a remote wins)."""
    from . import yamlutil

    found: dict[str, dict[str, Any]] = {}
    for path in config_paths():
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise GuildError(f"cannot read {path}: {e.strerror}") from None
        try:
            data = yamlutil.decode(text) if text.strip() else {}
        except Exception as e:  # noqa: BLE001 - PyYAML's errors vary
            line = str(e).splitlines()[0] if str(e) else "not valid YAML"
            raise GuildError(f"{path}: {line}") from None
        if not isinstance(data, dict):
            raise GuildError(f"{path}: expected a mapping")
        remotes = data.get("remotes") or {}
        if not isinstance(remotes, dict):
            raise GuildError(f"{path}: 'remotes' must be a mapping of names to remotes")
        for name, config in remotes.items():
            if not isinstance(config, dict):
                raise GuildError(f"remote '{name}' in {path} must be a mapping")
            found.setdefault(str(name), dict(config))
    return found


def ad_hoc(spec: str) -> dict[str, Any] | None:
    """The config Guild AI reads from an ad-hoc remote spec: ``s3:BUCKET``
    or ``s3:BUCKET/ROOT``, ``ssh:[USER@]HOST[:PORT]``, or a directory
    (absolute, or starting with ``.`` or ``~``); None for a name."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "s3" and rest:
        bucket, _, root = rest.partition("/")
        return {"type": "s3", "bucket": bucket, "root": root}
    if sep and kind == "ssh" and rest:
        user, at, hostport = rest.rpartition("@")
        host, colon, port = hostport.partition(":")
        config: dict[str, Any] = {"type": "ssh", "host": host}
        if at:
            config["user"] = user
        if colon:
            config["port"] = port
        return config
    if spec.startswith(("/", ".", "~")):
        return {"type": "filesystem", "root": spec}
    return None


def require(name: str, config: dict[str, Any], *keys: str) -> list[Any]:
    """The values of `keys` in a remote's config; a missing one is one
    error naming the remote and the key."""
    values = []
    for key in keys:
        val = config.get(key)
        if val is None or val == "":
            raise GuildError(f"remote '{name}' needs '{key}' in its config")
        values.append(val)
    return values


def get(name: str) -> "Remote":
    """The remote `name` (configured, or an ad-hoc spec), made by its
    type's plugin."""
    from .cli.common import plugin_manager
    from .registry import Registry

    if not name:
        raise GuildError("a remote name is required")
    config = configured().get(name) or ad_hoc(name)
    if config is None:
        raise GuildError(f"remote '{name}' is not defined (see 'guild remotes')")
    kind = config.get("type")
    if not kind:
        raise GuildError(f"remote '{name}' needs 'type' in its config")
    types = Registry(plugin_manager()).remote_types()
    entry = types.get(str(kind))
    if entry is None:
        known = ", ".join(sorted(types)) or "none"
        raise GuildError(f"remote '{name}' has unknown type '{kind}' (types: {known})")
    return entry.value(name, config)


# ---------------------------------------------------------------------
# What of a run travels as its metadata
# ---------------------------------------------------------------------

# Under a run's .guild: what listing, filtering and comparing read. The
# output, the source code snapshot and the run's own files are not.
META_PATTERNS = (
    ".guild/opref", ".guild/attrs/*", ".guild/LOCK", ".guild/LOCK.remote",
    ".guild/PENDING", ".guild/STAGED", ".guild/events.out.tfevents.*",
    ".guild/proto/.guild/opref",
)

# Files a copy never takes: a run's own lock and process records are
# about processes on the machine it ran on.
LOCAL_ONLY = (".guild/LOCK.proc", ".guild/.reserve")

# A file being copied into a run already in place is written under this
# prefix beside its final name, then renamed over it; a leftover of an
# interrupted copy is no file of the run.
PART_PREFIX = ".guild-part-"


def is_meta(rel: str) -> bool:
    return any(fnmatch.fnmatchcase(rel, pat) for pat in META_PATTERNS)


def meta_files(run_dir: Path) -> dict[str, bytes]:
    """Relative path -> bytes of the run's metadata files."""
    found: dict[str, bytes] = {}
    guild = run_dir / ".guild"
    candidates = [guild / "opref", guild / "proto" / ".guild" / "opref"]
    try:
        candidates += [p for p in guild.iterdir() if p.is_file()]
    except OSError:
        return found
    try:
        candidates += [p for p in (guild / "attrs").iterdir() if p.is_file()]
    except OSError:
        pass
    for path in candidates:
        rel = path.relative_to(run_dir).as_posix()
        if rel in found or not is_meta(rel):
            continue
        try:
            found[rel] = path.read_bytes()
        except OSError:
            continue
    return found


def manifest(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime in ns) of every file of a run (links
    followed as a copy follows them), without what `LOCAL_ONLY` names."""
    found: dict[str, tuple[int, int]] = {}
    for root, dirs, files in os.walk(run_dir):
        dirs.sort()
        for name in files:
            if name.startswith(PART_PREFIX):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, run_dir).replace(os.sep, "/")
            if rel in LOCAL_ONLY:
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            found[rel] = (st.st_size, st.st_mtime_ns)
    return found


def is_running(run) -> bool:
    return run.status in ("running", "pending")


# ---------------------------------------------------------------------
# Transfers
# ---------------------------------------------------------------------


@dataclass
class Transfer:
    """What a push or pull moved (and skipped as unchanged)."""

    runs: int = 0
    files: int = 0
    bytes: int = 0
    unchanged: int = 0
    deleted_files: int = 0
    run_ids: list[str] = field(default_factory=list)

    def add(self, other: "Transfer") -> None:
        self.runs += other.runs
        self.files += other.files
        self.bytes += other.bytes
        self.unchanged += other.unchanged
        self.deleted_files += other.deleted_files
        self.run_ids += other.run_ids

    def summary(self, verb: str) -> str:
        line = f"{verb} {_count(self.runs, 'run')}: {_count(self.files, 'file')}, {_size(self.bytes)}"
        if self.unchanged:
            line += f" ({_count(self.unchanged, 'run')} unchanged)"
        if self.deleted_files:
            line += f", {_count(self.deleted_files, 'file')} deleted"
        return line


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


class Progress:
    """A progress line for a transfer that takes more than a second
    (on stderr, rewritten in place on a terminal)."""

    def __init__(self, total_runs: int, write: Callable[[str], None] | None = None):
        import sys

        self.total = total_runs
        self.start = time.monotonic()
        self.done = 0
        self.bytes = 0
        self._write = write or sys.stderr.write
        self._tty = write is None and sys.stderr.isatty()
        self._shown = False

    def update(self, runs: int = 0, nbytes: int = 0) -> None:
        self.done += runs
        self.bytes += nbytes
        if time.monotonic() - self.start < 1.0:
            return
        line = f"{self.done}/{self.total} runs, {_size(self.bytes)}"
        if self._tty:
            self._write("\r" + line)
        elif not self._shown or runs:
            self._write(line + "\n")
        self._shown = True

    def finish(self) -> None:
        if self._shown and self._tty:
            self._write("\n")


# ---------------------------------------------------------------------
# The local view of a remote's runs
# ---------------------------------------------------------------------


def mirror_root(name: str, deleted: bool = False) -> Path:
    """Where a remote's runs are mirrored (their metadata, and whole runs
    a command needed): ``$GUILD_HOME/cache/remotes/NAME/``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    root = home.cache_dir("remotes") / safe
    return root / "trash" / "runs" if deleted else root / "runs"


def view(remote: "Remote", deleted: bool = False) -> list:
    """The remote's runs (or deleted runs) as `Run` objects over the
    local mirror, refreshed from `remote.list_runs`: every command that
    reads runs works over them unchanged.

    A run is written into the mirror only when what the remote lists of
    it changed (a digest per run, kept beside the mirror), under a
    hidden name renamed into place: the mirror is a cache, rebuilt
    from the remote whenever it is wrong or gone."""
    import json

    from . import util
    from .run import RUN_ID_P, runs_in

    listing = {
        run_id: _safe(remote.name, run_id, files)
        for run_id, files in remote.list_runs(deleted=deleted).items()
        if RUN_ID_P.match(run_id)
    }
    _listings[(remote.name, deleted)] = listing
    root = mirror_root(remote.name, deleted)
    root.mkdir(parents=True, exist_ok=True)
    stamps_path = root.parent / (("trash-" if deleted else "") + "mirror-digests.json")
    try:
        stamps = json.loads(stamps_path.read_text())
        if not isinstance(stamps, dict):
            stamps = {}
    except (OSError, ValueError):
        stamps = {}
    for name in os.listdir(root):
        if name not in listing:
            shutil.rmtree(root / name, ignore_errors=True)
            stamps.pop(name, None)
    changed = False
    for run_id, files in listing.items():
        digest = _digest(files)
        if stamps.get(run_id) == digest and (root / run_id).is_dir():
            continue
        _mirror(root / run_id, files)
        stamps[run_id] = digest
        changed = True
    if changed or len(stamps) != len(listing):
        stamps = {k: v for k, v in stamps.items() if k in listing}
        util.atomic_write(stamps_path, json.dumps(stamps))
    runs = runs_in(root)
    # A time too close to now may not change when written to again in
    # the same clock tick: those runs are compared by content instead.
    trusted = time.time_ns() - 2_000_000_000
    for run in runs:
        when = _attrs_time(run.path)
        _attr_times[(remote.name, run.id)] = when if when < trusted else None
    return runs


def _safe(remote_name: str, run_id: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """`files` without any path that is not a metadata path inside the
    run (absolute, with ``..``, or not one of `META_PATTERNS`): a remote
    must not write outside the mirror."""
    import sys

    safe = {}
    for rel, data in files.items():
        parts = rel.split("/")
        if (
            rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts)
            or not is_meta(rel) or not isinstance(data, bytes)
        ):
            sys.stderr.write(f"WARNING: remote '{remote_name}': ignoring {rel!r} of run {run_id[:8]}\n")
            continue
        safe[rel] = data
    return safe


def _digest(files: dict[str, bytes]) -> str:
    from . import util

    h = util.md5()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + str(len(files[rel])).encode() + b"\0")
        h.update(files[rel])
    return h.hexdigest()


def _attrs_time(run_dir: Path) -> int:
    """The newest time of a mirrored run's attributes (the directory, and
    each file: a write in place changes only the file's)."""
    attrs = run_dir / ".guild" / "attrs"
    try:
        newest = os.stat(attrs).st_mtime_ns
        with os.scandir(attrs) as entries:
            for entry in entries:
                newest = max(newest, entry.stat().st_mtime_ns)
    except OSError:
        return 0
    return newest


# (remote, run id) -> the mirror's .guild/attrs time when viewed: a run
# whose attributes a command changed has a newer one.
_attr_times: dict[tuple[str, str], int | None] = {}

_listings: dict[tuple[str, bool], dict[str, dict[str, bytes]]] = {}


def last_listing(remote: "Remote", deleted: bool = False) -> dict[str, dict[str, bytes]]:
    """What `view` last read of the remote's runs (their metadata as the
    remote has it)."""
    return _listings.get((remote.name, deleted), {})


def _mirror(run_dir: Path, files: dict[str, bytes]) -> None:
    """Make `run_dir` a mirror of a run whose metadata files are `files`:
    written plainly under a hidden name, then renamed over the old one
    (whose other files, fetched for a command, are fetched again when
    needed)."""
    from . import home

    tmp = run_dir.with_name(home.hidden_name(home.TMP_PREFIX, run_dir.name))
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files.items():
        if rel == ".guild/LOCK":
            # A process on the remote's machine: here it is a run still
            # running there (as Guild AI marks one it pulled).
            rel = ".guild/LOCK.remote"
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp / ".guild" / "attrs").mkdir(parents=True, exist_ok=True)
    if run_dir.exists():
        old = run_dir.with_name(home.hidden_name(home.DELETING_PREFIX, run_dir.name))
        os.replace(run_dir, old)
        os.replace(tmp, run_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, run_dir)


def fetch(remote: "Remote", run, deleted: bool = False) -> None:
    """The whole of a mirrored run (for cat, ls, diff and a full info),
    brought into the mirror."""
    remote.fetch_run(run.id, run.path, deleted=deleted)


def push_meta_changes(remote: "Remote", runs: list, before: dict[str, dict[str, bytes]]) -> None:
    """Send the remote what a command changed of mirrored runs' metadata
    (a label, tags, a mark, comments): `before` is each run's metadata
    as listed (`last_listing`)."""
    for run in runs:
        if not run.path.is_dir():
            continue  # deleted or moved by the command itself
        viewed = _attr_times.get((remote.name, run.id))
        if viewed is not None and _attrs_time(run.path) == viewed:
            continue  # its attributes were not written
        # Attributes only: markers and event files are the remote's.
        now = {rel: data for rel, data in meta_files(run.path).items() if rel.startswith(".guild/attrs/")}
        old = {rel: data for rel, data in before.get(run.id, {}).items() if rel.startswith(".guild/attrs/")}
        changes: dict[str, bytes | None] = {
            rel: data for rel, data in now.items() if old.get(rel) != data
        }
        changes.update({rel: None for rel in old if rel not in now})
        if changes:
            remote.write_meta(run.id, changes)


def mark_remote_locks(runs_dir: Path, run_ids: list[str], remote_name: str) -> None:
    """Pulled runs that were running on the remote keep its LOCK, which
    names a process on another machine: it becomes ``LOCK.remote``,
    holding the remote's name (as Guild AI marks them, read as running
    until a sync or pull brings the run's end)."""
    from . import util

    for run_id in run_ids:
        guild = runs_dir / run_id / ".guild"
        lock, remote_lock = guild / "LOCK", guild / "LOCK.remote"
        if lock.exists():
            util.atomic_write(remote_lock, remote_name + "\n")
            lock.unlink()
        else:
            try:
                remote_lock.unlink()
            except FileNotFoundError:
                pass


def remote_of(run) -> str | None:
    """The remote a local run is still running on (its ``LOCK.remote``),
    None when it is not."""
    try:
        name = (run.path / ".guild" / "LOCK.remote").read_text().strip()
    except OSError:
        return None
    return name or None


def delete(remote: "Remote", runs: list, permanent: bool = False) -> None:
    """Delete remote runs (restorable unless `permanent`), and their
    mirrors."""
    remote.delete([run.id for run in runs], permanent=permanent)
    _drop_mirrors(runs)


def restore(remote: "Remote", runs: list) -> None:
    remote.restore([run.id for run in runs])
    _drop_mirrors(runs)


def purge(remote: "Remote", runs: list) -> None:
    remote.purge([run.id for run in runs])
    _drop_mirrors(runs)


def _drop_mirrors(runs: list) -> None:
    # The next view mirrors them again where they are now.
    for run in runs:
        shutil.rmtree(run.path, ignore_errors=True)


# Imported for annotations only: the protocol lives with the hook specs.
from .hookspecs import Remote  # noqa: E402
