"""Small helpers shared by the core: atomic writes, time, names, tables."""

from __future__ import annotations

import os
import time
from pathlib import Path


def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Write `data` to `path` so readers see the old file or the new one,
    never a partial one: write a temporary file beside it, then rename."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    # Not tempfile.mkstemp: importing tempfile costs more than a run's
    # metadata writes. pid + counter + time is unique enough with O_EXCL.
    global _tmp_counter
    _tmp_counter += 1
    tmp = path.parent / f".{path.name}.{os.getpid()}.{_tmp_counter}.{time.time_ns()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_tmp_counter = 0


def now_micros() -> int:
    """Integer microseconds since the epoch, Guild's timestamp unit."""
    return time.time_ns() // 1000


def format_timestamp(micros: int | None) -> str:
    if not micros:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(micros / 1e6))


_home_cache: tuple[str | None, str] | None = None


def _user_home() -> str:
    # Asked once per row of a listing; HOME may change (tests set it).
    global _home_cache
    env = os.environ.get("HOME")
    if _home_cache is None or _home_cache[0] != env:
        _home_cache = (env, os.path.expanduser("~"))
    return _home_cache[1]


def format_dir(path: str) -> str:
    """A path with the home directory shortened to ``~``."""
    home = _user_home()
    if path == home or path.startswith(home + os.sep):
        return "~" + path[len(home):]
    return path


def md5():
    """hashlib.md5 without OpenSSL's start-up cost where CPython's own
    implementation is available (the run start-up path hashes sources)."""
    try:
        import _md5

        return _md5.md5()
    except ImportError:
        import hashlib

        return hashlib.md5()


def sha1():
    try:
        import _sha1

        return _sha1.sha1()
    except ImportError:
        import hashlib

        return hashlib.sha1()


def username() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        # No login name (a container without a passwd entry).
        return ""


def hostname() -> str:
    # os.uname avoids importing socket on the run start-up path.
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def table(rows: list[list[str]], sep: str = "  ") -> list[str]:
    """Align columns: each padded to its widest cell; trailing space kept
    off the last column."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        cells.append(row[-1])
        lines.append(sep.join(cells).rstrip())
    return lines
