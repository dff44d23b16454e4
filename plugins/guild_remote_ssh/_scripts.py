"""The POSIX sh scripts an ssh remote runs on the host.

Each is a brace group (read whole by ``sh -s`` before it runs, so a
command in it that reads stdin reads nothing of the script) that sets
``H`` (the remote Guild home), ``R`` (its runs) and ``T`` (its deleted
runs), prints `_conn.MARK`, then its answer. Run ids are checked
(`check_id`) before they are written into a script; every other value
is quoted.
"""

from __future__ import annotations

import re
import shlex

from ._conn import MARK

ID_P = re.compile(r"^[A-Za-z0-9_-]+$")

# A new run is copied into a directory of this prefix under the remote
# runs directory, then renamed into place. Not one of the core's
# hidden prefixes (``.tmp-``): those name a process of the machine that
# wrote them, which a guild on the host would take for a dead process
# of its own and clean up from under a push still running.
STAGING_PREFIX = ".guild-push-"

# Meta files as find(1) tests: a superset of `remotes.META_PATTERNS`
# (find's * also matches /), narrowed by `remotes.is_meta` on arrival.
_META_FIND = (
    "-path './*/.guild/opref' -o -path './*/.guild/attrs/*' -o -path './*/.guild/LOCK'"
    " -o -path './*/.guild/LOCK.remote' -o -path './*/.guild/PENDING'"
    " -o -path './*/.guild/STAGED' -o -path './*/.guild/events.out.tfevents.*'"
)


def check_id(remote: str, run_id: str) -> str:
    from guild_core.errors import GuildError

    if not ID_P.match(run_id or ""):
        raise GuildError(f"remote '{remote}': '{run_id}' is not a run id")
    return run_id


def q(text: str) -> str:
    return shlex.quote(text)


def home_expr(guild_home: str) -> str:
    """`guild_home` as a sh word: ``~`` and ``~/...`` are the login
    user's home, a relative path is relative to it."""
    if guild_home == "~":
        return '"$HOME"'
    if guild_home.startswith("~/"):
        return '"$HOME"/' + q(guild_home[2:])
    if not guild_home.startswith("/"):
        return '"$HOME"/' + q(guild_home)
    return q(guild_home)


def rsync_path(guild_home: str, *parts: str) -> str:
    """A path under `guild_home` as rsync names it on the host (relative
    paths are relative to the login user's home)."""
    if guild_home == "~":
        base = "."
    elif guild_home.startswith("~/"):
        base = guild_home[2:] or "."
    else:
        base = guild_home
    return "/".join([base.rstrip("/") or "/", *parts]).replace("//", "/")


def script(guild_home: str, body: str) -> str:
    return (
        "{\n"
        f"H={home_expr(guild_home)}\n"
        'R="$H/runs"\n'
        'T="$H/trash/runs"\n'
        "fail() { printf 'guild-remote: %s\\n' \"$*\" >&2; exit 3; }\n"
        "short() { printf '%.8s' \"$1\"; }\n"
        f"printf '%s\\n' {q(MARK.decode().strip())}\n"
        f"{body}\n"
        "}\n"
    )


def words(ids: list[str]) -> str:
    return " ".join(q(i) for i in ids)


# -- reading ---------------------------------------------------------


def status() -> str:
    return "\n".join([
        "printf 'home\\t%s\\n' \"$H\"",
        'if [ -d "$R" ]; then',
        "  n=0",
        '  for f in "$R"/*/.guild/opref; do [ -f "$f" ] && n=$((n+1)); done',
        "  printf 'runs\\t%s\\n' \"$n\"",
        "fi",
        "if g=$(command -v guild 2>/dev/null); then",
        "  printf 'guild\\t%s\\t%s\\n' \"$g\" \"$(guild --version 2>/dev/null </dev/null | head -n 1)\"",
        "fi",
        "if r=$(command -v rsync 2>/dev/null); then printf 'rsync\\t%s\\n' \"$r\"; fi",
    ])


def list_meta(deleted: bool) -> str:
    """A gzipped tar of the metadata files of every run (or deleted run),
    paths ``./ID/REL``: one command for all runs."""
    root = '"$T"' if deleted else '"$R"'
    return "\n".join([
        "command -v tar >/dev/null 2>&1 || fail 'tar is not installed on the host'",
        "command -v gzip >/dev/null 2>&1 || fail 'gzip is not installed on the host'",
        f"[ -d {root} ] || exit 0",
        f"cd {root} || fail \"cannot read {root}\"",
        # Hidden entries (copies in progress) and everything of a run
        # but its .guild (and there, attrs and proto/.guild) are pruned,
        # so the walk stays in the runs' metadata.
        "find . -mindepth 1 \\( -path './.*' -prune \\)"
        " -o \\( -type d -path './*/.guild/proto/.guild/*' -prune \\)"
        " -o \\( -type d -path './*/*' ! -path './*/.guild' ! -path './*/.guild/attrs'"
        " ! -path './*/.guild/proto' ! -path './*/.guild/proto/.guild' -prune \\)"
        f" -o \\( -type f \\( {_META_FIND} \\) -print \\)"
        " | tar -czf - -T - 2>/dev/null",
        "exit 0",
    ])


# -- pushing ---------------------------------------------------------


def push_prepare(staging: str, ids: list[str]) -> str:
    """Say which of `ids` are on the host (``E ID``); for the others,
    make the staging directory and move into it what an interrupted
    push of them left (``A ID``), so the copy goes on from there."""
    return "\n".join([
        'mkdir -p "$R" || fail "cannot create $R"',
        f'S="$R"/{q(staging)}',
        'NEW=""',
        f"for id in {words(ids)}; do",
        '  if [ -d "$R/$id" ]; then echo "E $id"; else NEW="$NEW $id "; fi',
        "done",
        '[ -n "$NEW" ] || exit 0',
        'mkdir "$S" || fail "cannot create $S"',
        f'for L in "$R"/{STAGING_PREFIX}*; do',
        '  [ "$L" = "$S" ] && continue',
        '  [ -d "$L" ] || continue',
        '  for d in "$L"/*; do',
        '    id=${d##*/}',
        '    case "$NEW" in',
        '      *" $id "*) if [ ! -e "$S/$id" ] && mv "$d" "$S/$id" 2>/dev/null; then echo "A $id"; fi ;;',
        "    esac",
        "  done",
        '  rmdir "$L" 2>/dev/null',
        "done",
        # Leftovers nothing came back for in a week go.
        f'find "$R" -mindepth 1 -maxdepth 1 -name {q(STAGING_PREFIX + "*")} -mtime +7 -exec rm -rf {{}} + 2>/dev/null',
        "exit 0",
    ])


def push_finish(staging: str, ids: list[str]) -> str:
    """Move the copied runs into place; one that appeared meanwhile is
    named (``C ID``) and left to be updated as a run already there."""
    return "\n".join([
        f'S="$R"/{q(staging)}',
        f"for id in {words(ids)}; do",
        '  if [ -e "$R/$id" ]; then echo "C $id"',
        '  elif [ -d "$S/$id" ]; then mv "$S/$id" "$R/$id" || fail "cannot move run $(short "$id") into place"',
        '  else fail "run $(short "$id") was not copied"; fi',
        "done",
        'rm -rf "$S"',
    ])


# -- writing ---------------------------------------------------------


def printf_bytes(data: bytes) -> str:
    """A printf format writing exactly `data` (octal escapes for all
    but plain characters)."""
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:/=+@"
    out = []
    for b in data:
        out.append(chr(b) if b in safe else "\\%03o" % b)
    return "'" + "".join(out) + "'"


def write_meta(run_id: str, changes: dict[str, bytes | None]) -> str:
    lines = [
        f'D="$R"/{q(run_id)}',
        '[ -f "$D/.guild/opref" ] || fail "run $(short ' + q(run_id) + ') is not on the host"',
    ]
    from guild_core import remotes

    for rel, data in sorted(changes.items()):
        path = f'"$D"/{q(rel)}'
        if data is None:
            lines.append(f"rm -f {path} || fail {q('cannot remove ' + rel)}")
            continue
        parent, _, name = rel.rpartition("/")
        pdir = f'"$D"/{q(parent)}' if parent else '"$D"'
        tmp = f'{pdir}/{q(remotes.PART_PREFIX + name)}-$$'
        lines.append(
            f"mkdir -p {pdir} && printf {printf_bytes(data)} > {tmp} && mv -f {tmp} {path}"
            f" || {{ rm -f {tmp}; fail {q('cannot write ' + rel)}; }}"
        )
    return "\n".join(lines)


# -- deleting --------------------------------------------------------

_REMOVE = "\n".join([
    # A run is renamed aside first, so nothing lists a half-removed run.
    'remove() { a="${1%/*}/.guild-deleting-${1##*/}-$$"; mv "$1" "$a" && rm -rf "$a"; }',
])


def _host_guild(args: str) -> str:
    """Run the host's guild on the remote home, its last line the
    reason when it fails."""
    return "\n".join([
        f'out=$(GUILD_HOME="$H" guild {args} 2>&1 </dev/null) || '
        'fail "guild on the host: $(printf \'%s\\n\' "$out" | grep -v \'^ *$\' | tail -n 1)"',
    ])


def _require(where: str, ids: list[str], what: str) -> str:
    return "\n".join([
        'missing=""',
        f"for id in {words(ids)}; do",
        f'  [ -d "{where}/$id" ] || missing="$missing $(short "$id")"',
        "done",
        f'[ -z "$missing" ] || fail "{what}:$missing"',
    ])


def delete(ids: list[str], permanent: bool, use_guild: bool) -> str:
    lines = [_REMOVE, _require("$R", ids, "no such run on the host")]
    flag = " -p" if permanent else ""
    plain = [
        f"for id in {words(ids)}; do",
        '  remove "$R/$id" || fail "cannot remove run $(short "$id")"',
        "done",
    ] if permanent else [
        'mkdir -p "$T" || fail "cannot create $T"',
        f"for id in {words(ids)}; do",
        '  if [ -e "$T/$id" ]; then remove "$T/$id"; fi',
        '  mv "$R/$id" "$T/$id" || fail "cannot move run $(short "$id") to the trash"',
        "done",
    ]
    return _guild_or_plain(lines, f"runs delete -y{flag} {words(ids)}", plain, use_guild)


def restore(ids: list[str], use_guild: bool) -> str:
    lines = [
        _require("$T", ids, "no such deleted run on the host"),
        'there=""',
        f"for id in {words(ids)}; do",
        '  [ -e "$R/$id" ] && there="$there $(short "$id")"',
        "done",
        '[ -z "$there" ] || fail "run(s) already on the host, not restored over:$there"',
    ]
    plain = [
        'mkdir -p "$R" || fail "cannot create $R"',
        f"for id in {words(ids)}; do",
        '  mv "$T/$id" "$R/$id" || fail "cannot restore run $(short "$id")"',
        "done",
    ]
    return _guild_or_plain(lines, f"runs restore -y {words(ids)}", plain, use_guild)


def purge(ids: list[str], use_guild: bool) -> str:
    lines = [_REMOVE, _require("$T", ids, "no such deleted run on the host")]
    plain = [
        f"for id in {words(ids)}; do",
        '  remove "$T/$id" || fail "cannot remove run $(short "$id")"',
        "done",
    ]
    return _guild_or_plain(lines, f"runs purge -y {words(ids)}", plain, use_guild)


def _guild_or_plain(checks: list[str], guild_args: str, plain: list[str], use_guild: bool) -> str:
    lines = list(checks)
    if use_guild:
        lines += [
            "if command -v guild >/dev/null 2>&1; then",
            _host_guild(guild_args),
            "else",
            *plain,
            "fi",
        ]
    else:
        lines += plain
    return "\n".join(lines)


# -- runs on the host --------------------------------------------------


def need_guild(host: str) -> str:
    why = (
        f"guild is not installed on {host} (not on the PATH of a non-interactive"
        " shell there: see 'venv-activate')"
    )
    return f"command -v guild >/dev/null 2>&1 || fail {q(why)}"


def start(run_id: str, host: str) -> str:
    # The run's output goes to a file, not to ssh: the session ends once
    # the host's guild has started the run, not when the run ends.
    return "\n".join([
        need_guild(host),
        f'D="$R"/{q(run_id)}',
        '[ -d "$D/.guild" ] || fail "run $(short ' + q(run_id) + ') is not on the host"',
        'log="$D/.guild/.remote-start-$$"',
        f'if ! GUILD_HOME="$H" guild run --start {q(run_id)} -y --background </dev/null >"$log" 2>&1; then',
        '  why=$(grep -v \'^ *$\' "$log" | tail -n 1); rm -f "$log"',
        '  fail "guild on the host could not start run $(short ' + q(run_id) + '): $why"',
        "fi",
        'rm -f "$log"',
    ])


def stop(ids: list[str], wait: bool, host: str) -> str:
    flag = "" if wait else " -n"
    return "\n".join([need_guild(host), _host_guild(f"stop -y{flag} {words(ids)}")])
