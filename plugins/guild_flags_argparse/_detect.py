"""Learn a script's argparse flags: run it up to ``parse_args``, map the
parser's actions to flag definitions, cache the result.

Mapping (one `FlagDef` per optional action, in declaration order):

- name: the first ``--long`` option without its dashes
  (``--learning-rate`` -> ``learning-rate``). Actions with only short or
  single-dash options (``-v``, ``-lr``) are skipped: guild passes flags
  as ``--NAME VALUE``, which argparse would reject for them.
- ``store`` (and ``append`` and custom actions taking values): type from
  ``type=`` (``int``, ``float``, ``str`` -> ``string``), else from the
  default's type; other ``type`` callables give ``None`` (auto). The
  default is kept when it is ``None``, a bool, number or string, else
  ``None`` (the flag is then not passed and the script's default applies;
  that includes list defaults, which guild would read as a batch). ``choices``, ``help`` (``%(default)s`` expanded;
  ``SUPPRESS`` gives none) and ``required`` carry over.
- ``store_true`` / ``store_false``: type ``boolean``, default ``False`` /
  ``True``, ``arg_switch`` ``True`` / ``False`` (the bare option is passed
  only when the value differs from the default).
- ``BooleanOptionalAction`` (``--x/--no-x``): a boolean switch; with a
  ``True`` default it passes ``--no-x`` for ``False``.
- Skipped: positionals, help/version, ``store_const``, ``append_const``,
  ``count``, sub-parsers, actions whose dest is ``SUPPRESS``.

Cache: ``cache_dir("flags-argparse")/SHA256.json``, the digest of the
script's bytes, its absolute path, the Python version and executable and
`CACHE_VERSION`. Edited scripts get a new digest, so they are never
served stale flags (edits to modules the script imports are not seen).
Failures are not cached: they are retried at the next detection.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from guild_core.flagdefs import FlagDef, FlagsInfo

# Bump when the mapping or the cache format changes.
CACHE_VERSION = "2"
CACHE_NAME = "flags-argparse"

# Seconds the script may run before calling parse_args.
TIMEOUT = 15.0

DEST = "args"
OUT_ENV = "GUILD_ARGPARSE_FLAGS_OUT"
BOOTSTRAP = Path(__file__).with_name("_bootstrap.py")

# _bootstrap.RECORD_FAILED (not imported: importing it would import
# runpy and friends for nothing).
_RECORD_FAILED = 86


class DetectError(Exception):
    """Why a script's parser could not be learned."""


def detect_flags(script: Path, source: str) -> FlagsInfo:
    """The flags of an argparse script; never raises.

    On failure a one-line warning goes to stderr and the result has no
    flags.
    """
    script = Path(script).absolute()
    try:
        return _detect(script, source)
    except DetectError as e:
        reason = str(e)
    except Exception as e:  # noqa: BLE001 - detection must never break a run
        reason = f"{type(e).__name__}: {e}"
    _warn(script, reason)
    return FlagsInfo(flags={}, dest=DEST)


def _warn(script: Path, reason: str) -> None:
    try:
        print(f"guild: cannot detect flags for {script}: {reason}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - a closed stderr is no reason to fail
        pass


def _detect(script: Path, source: str) -> FlagsInfo:
    key = cache_key(script, source)
    path = cache_path(key)
    learned = read_cache(path)
    if learned is None:
        parser = learn_parser(script)
        learned = {"actions": parser["actions"], "subcommands": parser.get("subcommands") or {}}
        # Cache only what was learned from the content the key names: the
        # script may have been edited while it ran.
        if cache_key(script, source) == key:
            write_cache(path, script, learned)
    return _info(learned)


def _info(learned: dict[str, Any]) -> FlagsInfo:
    subs = learned.get("subcommands") or {}
    return FlagsInfo(
        flags=flagdefs(learned["actions"]),
        dest=DEST,
        subcommands={str(name): _info(sub) for name, sub in subs.items() if isinstance(sub, dict)},
    )


# ---------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------


def cache_key(script: Path, source: str, version: str = CACHE_VERSION) -> str:
    import hashlib

    try:
        content = script.read_bytes()
    except OSError:
        content = source.encode("utf-8", "surrogateescape")
    h = hashlib.sha256()
    for part in (
        content,
        os.fsencode(str(script)),
        sys.version.encode(),
        os.fsencode(sys.executable or ""),
        version.encode(),
    ):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def cache_path(key: str, name: str = CACHE_NAME) -> Path:
    from guild_core.home import cache_dir

    return cache_dir(name) / f"{key}.json"


def read_cache(path: Path, version: str = CACHE_VERSION) -> dict[str, Any] | None:
    """The cached parser (its actions and sub-commands), or None when
    missing, unreadable or malformed."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("cache-version") != version or not _well_formed(data):
            return None
        return data
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _well_formed(learned: Any, depth: int = 0) -> bool:
    if not isinstance(learned, dict) or depth > 10:
        return False
    actions, subs = learned.get("actions"), learned.get("subcommands", {})
    return (
        isinstance(actions, list) and all(isinstance(a, dict) for a in actions)
        and isinstance(subs, dict) and all(_well_formed(sub, depth + 1) for sub in subs.values())
    )


def write_cache(path: Path, script: Path, learned: dict[str, Any], version: str = CACHE_VERSION) -> None:
    """Write atomically (temp file + rename); failures are ignored: the
    cache only saves time."""
    import json
    import tempfile

    data = {"cache-version": version, "script": str(script), **learned}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
        tmp = None
    except (OSError, TypeError, ValueError):
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ---------------------------------------------------------------------
# Running the script
# ---------------------------------------------------------------------


def learn_parser(script: Path, bootstrap: Path = BOOTSTRAP) -> dict[str, Any]:
    """Run `script` through the bootstrap; the recorded parser
    (``{"method", "prog", "actions"}``) or `DetectError`. Another
    bootstrap (the click plugin's) records its own parser the same way:
    JSON with ``actions`` to the file named by ``OUT_ENV``."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="guild-argparse-") as tmp:
        out = os.path.join(tmp, "parser.json")
        err_path = os.path.join(tmp, "stderr")
        env = dict(os.environ)
        env[OUT_ENV] = out
        posix = os.name == "posix"
        with open(err_path, "wb") as err:
            # Output goes to a file, not a pipe: a grandchild the script
            # started cannot keep us waiting on a pipe it inherited.
            proc = subprocess.Popen(
                [sys.executable, str(bootstrap), str(script)],
                cwd=str(script.parent),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=posix,
            )
            try:
                status = proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                raise DetectError(
                    f"timed out after {TIMEOUT:g}s before parsing its arguments"
                ) from None
            finally:
                if proc.poll() is None:
                    _kill(proc, posix)
        if status == 0 and os.path.exists(out):
            try:
                with open(out, encoding="utf-8") as f:
                    data = json.load(f)
                if not isinstance(data.get("actions"), list):
                    raise ValueError("no actions")
            except (OSError, ValueError, AttributeError) as e:
                raise DetectError(f"cannot read recorded parser: {e}") from None
            return data
        last = _last_line(err_path)
        if status == _RECORD_FAILED:
            raise DetectError(last or "cannot record parser")
        if status < 0:
            reason = f"script killed by signal {-status}"
        elif status != 0:
            reason = f"script exited with status {status}"
        else:
            reason = "script did not call ArgumentParser.parse_args()"
        raise DetectError(f"{reason}: {last}" if last and status else reason)


def _kill(proc, posix: bool) -> None:
    # The script's process group (its own session): children it started
    # go too. The leader is not reaped yet, so the group id is still ours.
    try:
        if posix:
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass
    proc.wait()


def _last_line(path: str, limit: int = 200) -> str:
    """The last non-blank line the script wrote to stderr (the exception
    message of a traceback), shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---------------------------------------------------------------------
# Actions -> flag definitions
# ---------------------------------------------------------------------

_VALUE_KINDS = ("store", "store_true", "store_false", "boolean_optional")
_SCALARS = (bool, int, float, str)


def flagdefs(actions: list[dict[str, Any]]) -> dict[str, FlagDef]:
    """Flag definitions by name from recorded actions, in order; the
    first action wins a name claimed twice."""
    flags: dict[str, FlagDef] = {}
    for action in actions:
        fd = _flagdef(action) if isinstance(action, dict) else None
        if fd is not None and fd.name not in flags:
            flags[fd.name] = fd
    return flags


def _flagdef(action: dict[str, Any]) -> FlagDef | None:
    kind = action.get("kind")
    if kind not in _VALUE_KINDS or not action.get("dest"):
        return None
    longs = [o for o in action.get("options") or () if o.startswith("--") and len(o) > 2]
    if not longs:
        return None
    name = longs[0][2:]
    default = _default(action.get("default"))
    description = action.get("help") or ""
    required = bool(action.get("required"))
    if kind in ("store_true", "store_false"):
        # The switch passes when the value differs from the default.
        switch = kind == "store_true"
        return FlagDef(
            name,
            type="boolean",
            default=default if isinstance(default, bool) else not switch,
            description=description,
            arg_switch=switch,
        )
    if kind == "boolean_optional":
        negative = [o for o in longs[1:] if o == "--no-" + name]
        if default is True and negative:
            # Only the --no- form changes a True default.
            return FlagDef(
                name,
                type="boolean",
                default=True,
                description=description,
                arg_name=negative[0][2:],
                arg_switch=False,
            )
        return FlagDef(
            name, type="boolean", default=False, description=description, arg_switch=True
        )
    choices = action.get("choices")
    return FlagDef(
        name,
        type=_flag_type(action.get("type"), default),
        default=default,
        choices=list(choices) if isinstance(choices, list) else None,
        required=required,
        description=description,
    )


def _default(value: Any) -> Any:
    # A list default (``nargs="+"``, ``append``) is left out: guild reads
    # a list flag value as a batch of values and would pass the whole
    # list as one argument. Without a default the flag is not passed and
    # the script's own default applies.
    if value is None or isinstance(value, _SCALARS):
        return value
    return None


def _flag_type(type_name: str | None, default: Any) -> str | None:
    if type_name == "int":
        return "int"
    if type_name == "float":
        return "float"
    if type_name == "str":
        return "string"
    if type_name is None:
        # argparse passes strings: the default's type says what the
        # script expects.
        if isinstance(default, bool):
            return None
        if isinstance(default, int):
            return "int"
        if isinstance(default, float):
            return "float"
        if isinstance(default, str):
            return "string"
    return None
