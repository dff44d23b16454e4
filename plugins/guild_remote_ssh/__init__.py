"""Built-in plugin ``ssh``: a remote that is a host reached over SSH.

``{type: ssh, host: HOST}`` (or the ad-hoc spec ``ssh:USER@HOST:PORT``):
runs are kept in a Guild home on the host (``guild-home``, default
``~/.guild``), under ``runs/<id>/`` and ``trash/runs/<id>/``, copied
with rsync over ssh. Every ssh and rsync of one command goes through
one connection (`_conn.Connection`), which never prompts
(``BatchMode``): keys come from ``private-key``, the ssh agent or the
user's ssh config, host keys from ``known_hosts`` as the user's ssh
config says.

A new run is copied into a hidden staging directory on the host and
renamed into place when complete; a run already there is updated with
``--delay-updates`` (changed files land under temporary names and are
renamed at the end). A push interrupted at any point leaves only the
staging directory, which nothing lists and the next push of the same
runs takes up where it stopped. Only files whose size or time differ
travel.

Listing is one ssh command for all runs: a tar of just their metadata
files. Deleting, restoring and purging use the host's ``guild`` where it
is on the PATH (after ``venv-activate``), plain file moves where not;
starting runs on the host (`SSHRemote.start`) needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guild_core.hookspecs import hookimpl


@hookimpl
def guild_register_remote_types(register):
    register("ssh", SSHRemote)


DEFAULT_GUILD_HOME = "~/.guild"


class SSHRemote:
    """The remote ``type: ssh``. Config keys (all but ``host`` optional):
    ``host``, ``user``, ``port``, ``guild-home``, ``private-key``,
    ``known-hosts`` (a known_hosts file, ssh's ``UserKnownHostsFile``),
    ``ssh-options`` (more ``-o`` options: a list of ``Key=value`` or a
    mapping), ``connect-timeout`` (seconds, default 10), ``proxy`` (a
    ProxyCommand), ``venv-activate`` (a command run in the login shell
    before each remote command, such as ``source ~/env/bin/activate``),
    ``venv-path`` / ``conda-env`` (Guild AI's: an environment activated
    so, whose ``.guild`` is the default Guild home), ``rsync-path`` (the
    host's rsync), ``rsync-options`` (more rsync options, such as
    ``--bwlimit=1000``), ``description``.
    """

    def __init__(self, name: str, config: dict[str, Any]):
        from guild_core import remotes

        (host,) = remotes.require(name, config, "host")
        self.name = name
        self.host = _text(name, "host", host)
        if self.host.startswith("-") or any(c.isspace() for c in self.host):
            _bad(name, "host", host)
        self.user = _opt_text(name, config, "user")
        self.port = _opt_int(name, config, "port")
        self.venv_path = _opt_text(name, config, "venv-path") or _opt_text(name, config, "guild-env")
        self.conda_env = _opt_text(name, config, "conda-env")
        self.guild_home = (_opt_text(name, config, "guild-home") or self._env_home() or DEFAULT_GUILD_HOME).rstrip("/") or "/"
        self.description = config.get("description")
        self.private_key = _opt_path(name, config, "private-key")
        self.known_hosts = _opt_path(name, config, "known-hosts")
        self.ssh_options = _options(name, config.get("ssh-options"))
        self.connect_timeout = _opt_int(name, config, "connect-timeout") or 10
        self.proxy = _opt_text(name, config, "proxy")
        self.venv_activate = _opt_text(name, config, "venv-activate")
        self.rsync_path = _opt_text(name, config, "rsync-path")
        self.rsync_options = _list(name, "rsync-options", config.get("rsync-options"))
        self._conn = None

    def _env_home(self) -> str | None:
        for env in (self.venv_path, self.conda_env):
            if env and "/" in env:
                return env.rstrip("/") + "/.guild"
        return None

    def _activate(self) -> list[str]:
        if self.venv_activate:
            return [self.venv_activate]
        if self.conda_env:
            env = self.conda_env
            return [
                f"{{ source {env}/etc/profile.d/conda.sh >/dev/null 2>&1 || "
                f"source {env}/../../etc/profile.d/conda.sh >/dev/null 2>&1; }}",
                f"conda activate '{env}'",
            ]
        if self.venv_path:
            return [f"source {self.venv_path}/bin/activate"]
        return []

    @property
    def conn(self):
        if self._conn is None:
            from ._conn import Connection

            self._conn = Connection(
                self.name,
                self.host,
                user=self.user,
                port=self.port,
                private_key=self.private_key,
                known_hosts=self.known_hosts,
                options=self.ssh_options,
                connect_timeout=self.connect_timeout,
                proxy=self.proxy,
                prelude=self._activate(),
                rsync_path=self.rsync_path,
                rsync_options=self.rsync_options,
            )
        return self._conn

    def _run(self, body: str) -> bytes:
        from . import _scripts

        return self.conn.run(_scripts.script(self.guild_home, body))

    def _lines(self, body: str) -> list[str]:
        return self._run(body).decode("utf-8", "replace").splitlines()

    def _path(self, *parts: str, deleted: bool = False) -> str:
        """A path under the remote home as rsync names it."""
        from . import _scripts

        runs = ("trash", "runs") if deleted else ("runs",)
        return _scripts.rsync_path(self.guild_home, *runs, *parts)

    # -- where -------------------------------------------------------

    def describe(self) -> str:
        if self.description:
            return str(self.description)
        where = self.host if not self.user else f"{self.user}@{self.host}"
        if self.port:
            where += f":{self.port}"
        return f"ssh {where} guild home {self.guild_home}"

    def status(self) -> str:
        facts: dict[str, list[str]] = {}
        from . import _scripts

        for line in self._lines(_scripts.status()):
            key, _, rest = line.partition("\t")
            facts[key] = rest.split("\t")
        home = facts.get("home", [self.guild_home])[0]
        if "runs" in facts:
            n = int(facts["runs"][0])
            runs = f"{n} run{'s' if n != 1 else ''}"
        else:
            runs = "no runs yet"
        if "guild" in facts:
            path, version = (facts["guild"] + [""])[:2]
            guild = f"{version or 'guild'} at {path}"
        else:
            guild = "no guild on the host's PATH (see 'venv-activate')"
        line = f"remote '{self.name}' ({self.conn.where}, guild home {home}) is reachable: {runs}, {guild}"
        if "rsync" not in facts:
            line += "; no rsync on the host: push and pull need it"
        return line

    # -- reading -----------------------------------------------------

    def list_runs(self, deleted: bool = False) -> dict[str, dict[str, bytes]]:
        import io
        import tarfile

        from guild_core import remotes
        from guild_core.errors import GuildError

        from . import _scripts

        data = self._run(_scripts.list_meta(deleted))
        found: dict[str, dict[str, bytes]] = {}
        if not data.strip():
            return found
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    name = member.name[2:] if member.name.startswith("./") else member.name
                    run_id, _, rel = name.partition("/")
                    if not remotes.is_meta(rel):
                        continue
                    f = tar.extractfile(member)
                    if f is not None:
                        found.setdefault(run_id, {})[rel] = f.read()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise GuildError(f"remote '{self.name}': cannot read the host's run listing ({e})") from None
        # As a local listing: a run is a directory with its opref.
        return {run_id: files for run_id, files in found.items() if ".guild/opref" in files}

    def fetch_run(self, run_id: str, dest: Path, deleted: bool = False) -> None:
        from . import _scripts

        _scripts.check_id(self.name, run_id)
        Path(dest).mkdir(parents=True, exist_ok=True)
        src = self.conn.rsync_dest(self._path(run_id, deleted=deleted) + "/")
        self.conn.rsync([*_RSYNC_COPY, *_excludes("/"), "-r", src, str(dest) + "/"], ["."], lambda *_: None)

    # -- copying -----------------------------------------------------

    def push(self, run_dirs: list[Path], delete: bool, progress):
        import uuid

        from guild_core import remotes

        from . import _scripts

        total = remotes.Transfer()
        by_id: dict[str, Path] = {}
        for run_dir in run_dirs:
            run_dir = Path(run_dir)
            by_id[_scripts.check_id(self.name, run_dir.name)] = run_dir
        if not by_id:
            return total
        staging = f"{_scripts.STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        there = set()
        for line in self._lines(_scripts.push_prepare(staging, list(by_id))):
            kind, _, run_id = line.partition(" ")
            if kind == "E":
                there.add(run_id)
        new = [i for i in by_id if i not in there]
        if new:
            dest = self.conn.rsync_dest(self._path(staging) + "/")
            moved = self._copy(by_id, new, dest, delete=False, progress=progress)
            for line in self._lines(_scripts.push_finish(staging, new)):
                kind, _, run_id = line.partition(" ")
                if kind == "C" and run_id in moved:
                    # Another push put it there meanwhile: updated below.
                    del moved[run_id]
                    there.add(run_id)
            for m in moved.values():
                m.runs, m.unchanged = 1, 0  # a new run on the host, even if copied earlier
                total.add(m)
        existing = [i for i in by_id if i in there]
        if existing:
            dest = self.conn.rsync_dest(self._path() + "/")
            for m in self._copy(by_id, existing, dest, delete=delete, progress=progress, update=True).values():
                total.add(m)
        return total

    def pull(self, run_ids: list[str], dest: Path, delete: bool, progress):
        import os
        import shutil

        from guild_core import home, remotes

        from . import _scripts

        total = remotes.Transfer()
        ids = [_scripts.check_id(self.name, i) for i in run_ids]
        if not ids:
            return total
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        src = self.conn.rsync_dest(self._path() + "/")
        new = [i for i in ids if not (dest / i).exists()]
        existing = [i for i in ids if i not in new]
        if new:
            tmp = dest / home.hidden_name(home.TMP_PREFIX, "pull")
            try:
                moved = self._copy(None, new, str(tmp) + "/", delete=False, progress=progress, src=src)
                for run_id in new:
                    try:
                        os.rename(tmp / run_id, dest / run_id)
                    except OSError as e:
                        if not (dest / run_id).exists():
                            from guild_core.errors import GuildError

                            raise GuildError(
                                f"remote '{self.name}': cannot move pulled run {run_id[:8]} into {dest}: {e.strerror}"
                            ) from None
                        existing.append(run_id)  # arrived meanwhile: updated below
                        moved.pop(run_id, None)
                        continue
                    m = moved[run_id]
                    m.runs, m.unchanged = 1, 0
                    total.add(m)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        if existing:
            moved = self._copy(None, existing, str(dest) + "/", delete=delete, progress=progress, src=src, update=True)
            for m in moved.values():
                total.add(m)
        return total

    def _copy(self, by_id, ids, dest, *, delete, progress, src=None, update=False):
        """One rsync of runs `ids` (from their local directories `by_id`
        when pushing, else from `src` on the host) into `dest`, with
        ``--delay-updates`` for runs already there (`update`): a
        Transfer per run, `progress` told as each completes."""
        from guild_core import remotes

        moved = {i: remotes.Transfer(run_ids=[i]) for i in ids}
        changed: set[str] = set()
        done: set[str] = set()
        current = [None]
        args = [*_RSYNC_COPY, *_excludes(), "-r"]
        if update:
            args.append("--delay-updates")
        elif by_id is not None:
            # Into the hidden staging directory: a file cut short stays,
            # so the push that takes the copy up sends only the rest.
            args.append("--partial")
        if delete:
            args.append("--delete")

        def finish(run_id):
            if run_id is None or run_id in done:
                return
            done.add(run_id)
            m = moved[run_id]
            if m.files or m.deleted_files or run_id in changed:
                m.runs = 1
            else:
                m.unchanged = 1
            progress.update(runs=1, nbytes=m.bytes)

        def on_item(item: str, nbytes: int, name: str) -> None:
            # rsync goes through the runs in order, so a line of another
            # run says the one before is complete.
            run_id = name.split("/", 1)[0]
            if run_id not in moved:
                return
            if run_id != current[0]:
                finish(current[0])
                current[0] = run_id
            m = moved[run_id]
            if item == "*deleting":
                if not name.endswith("/"):
                    m.deleted_files += 1
            elif item[1:2] == "f" and item[:1] in ("<", ">"):
                m.files += 1
                m.bytes += nbytes
            elif item[:2] != ".d":  # a directory's time is no change
                changed.add(run_id)

        if by_id is not None:
            # Runs may live in different directories: one rsync for each.
            groups: dict[Path, list[str]] = {}
            for i in ids:
                groups.setdefault(by_id[i].parent, []).append(i)
            for parent, group in groups.items():
                skip = [f"--exclude=/{rel}" for rel in _dangling(parent, group)]
                self.conn.rsync([*args, *skip, str(parent) + "/", dest], [i + "/" for i in group], on_item)
        else:
            self.conn.rsync([*args, src, dest], [i + "/" for i in ids], on_item)
        for i in [current[0], *ids]:
            finish(i)
        return moved

    def write_meta(self, run_id: str, changes: dict[str, bytes | None]) -> None:
        from guild_core.errors import GuildError

        from . import _scripts

        _scripts.check_id(self.name, run_id)
        for rel in changes:
            parts = rel.split("/")
            if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise GuildError(f"remote '{self.name}': '{rel}' is not a path in a run")
        if changes:
            self._run(_scripts.write_meta(run_id, changes))

    # -- deleting ----------------------------------------------------

    def delete(self, run_ids: list[str], permanent: bool = False) -> None:
        from . import _scripts

        ids = self._ids(run_ids)
        if ids:
            self._run(_scripts.delete(ids, permanent, use_guild=True))

    def restore(self, run_ids: list[str]) -> None:
        from . import _scripts

        ids = self._ids(run_ids)
        if ids:
            self._run(_scripts.restore(ids, use_guild=True))

    def purge(self, run_ids: list[str]) -> None:
        from . import _scripts

        ids = self._ids(run_ids)
        if ids:
            self._run(_scripts.purge(ids, use_guild=True))

    # -- runs on the host ----------------------------------------------

    def start(self, run_dir: Path) -> None:
        """Push the local run `run_dir` (a staged run: ``guild run
        --stage``) and start it on the host in the background with the
        host's guild (``guild run --start ID -y --background``); returns
        once the host's guild has started it. The run's progress is then
        read as for any remote run (``guild runs -r``, ``guild pull``);
        raises `GuildError` when the host has no guild."""
        from . import _scripts

        run_dir = Path(run_dir)
        run_id = _scripts.check_id(self.name, run_dir.name)
        self._run(_scripts.need_guild(self.host))
        self.push([run_dir], False, _NoProgress())
        self._run(_scripts.start(run_id, self.host))

    def stop(self, run_ids: list[str], wait: bool = True) -> None:
        """Stop runs running on the host, with the host's guild (``guild
        stop -y``; with `wait` false, ``-n``: without waiting for them to
        end)."""
        from . import _scripts

        ids = self._ids(run_ids)
        if ids:
            self._run(_scripts.stop(ids, wait, self.host))

    def _ids(self, run_ids: list[str]) -> list[str]:
        from . import _scripts

        return [_scripts.check_id(self.name, i) for i in run_ids]


class _NoProgress:
    def update(self, runs: int = 0, nbytes: int = 0) -> None:
        pass


# rsync's options for a copy: recursive is given with each; times kept
# (so the next copy sees files unchanged), permissions kept, links
# followed (as a directory copy follows them), owners not kept.
_RSYNC_COPY = ("-tpL",)


def _excludes(under: str = "/*/") -> list[str]:
    """What a copy leaves out, the paths of a run under `under` (``/*/``:
    the transfer is of run directories; ``/``: of a run's files)."""
    from guild_core import remotes

    out = [f"--exclude={under}{rel}" for rel in remotes.LOCAL_ONLY]
    out.append(f"--exclude={remotes.PART_PREFIX}*")
    # What --delay-updates left of an interrupted copy (it clears it up
    # itself on the next).
    out.append("--exclude=.~tmp~/")
    return out


def _dangling(root: Path, ids: list[str]) -> list[str]:
    """Links pointing nowhere in local runs (``ID/REL``): left out of a
    push, as a directory copy leaves them, rather than failing it."""
    import os

    found = []
    for run_id in ids:
        stack = [root / run_id]
        while stack:
            path = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_symlink():
                        if not os.path.exists(entry.path):
                            found.append(os.path.relpath(entry.path, root).replace(os.sep, "/"))
                    elif entry.is_dir():
                        stack.append(Path(entry.path))
                except OSError:
                    continue
    return found


# -- config values -----------------------------------------------------


def _bad(name: str, key: str, val: Any):
    from guild_core.errors import GuildError

    raise GuildError(f"remote '{name}': invalid '{key}': {val!r}")


def _text(name: str, key: str, val: Any) -> str:
    if isinstance(val, (dict, list, bool)):
        _bad(name, key, val)
    return str(val)


def _opt_text(name: str, config: dict[str, Any], key: str) -> str | None:
    val = config.get(key)
    if val is None or val == "":
        return None
    return _text(name, key, val)


def _opt_int(name: str, config: dict[str, Any], key: str) -> int | None:
    val = config.get(key)
    if val is None or val == "":
        return None
    try:
        n = int(str(val))
    except ValueError:
        _bad(name, key, val)
    if n <= 0 or isinstance(val, bool):
        _bad(name, key, val)
    return n


def _opt_path(name: str, config: dict[str, Any], key: str) -> str | None:
    import os

    val = _opt_text(name, config, key)
    return os.path.expanduser(os.path.expandvars(val)) if val else None


def _list(name: str, key: str, val: Any) -> list[str]:
    if val is None or val == "":
        return []
    if isinstance(val, str):
        import shlex

        return shlex.split(val)
    if isinstance(val, list) and all(isinstance(v, (str, int, float)) for v in val):
        return [str(v) for v in val]
    _bad(name, key, val)


def _options(name: str, val: Any) -> list[str]:
    """ssh ``-o`` options from a list of ``Key=value`` or a mapping."""
    if isinstance(val, dict):
        out = []
        for k, v in val.items():
            if isinstance(v, bool):
                v = "yes" if v else "no"
            out.append(f"{k}={v}")
        return out
    return _list(name, "ssh-options", val)
