"""The ssh and rsync processes of an ssh remote, over one connection.

A `Connection` opens one multiplexed ssh connection to the host (a
ControlMaster in the background, its socket in a temp directory of
this process) the first time a command needs it; every later ssh
command and every rsync of the same process goes through it, and it is
closed (``ssh -O exit``) when the process exits. Should the master
die meanwhile, a command connects on its own (``ControlMaster=no``),
and it persists for `PERSIST_SECS` idle seconds at most should the
process be killed before it could close it.

A remote command is a POSIX sh script sent on ssh's stdin to ``sh -s``
on the host (after the remote's ``init``/``venv-activate`` commands, in
the user's login shell), so nothing of it is quoted through the login
shell; what it prints after `MARK` is its answer (anything a noisy
shell start-up file prints comes before). Failures it can name exit 3
with ``guild-remote: WHY`` on stderr.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from typing import Callable

from guild_core.errors import GuildError

PERSIST_SECS = 60
MARK = b"--guild-remote--\n"
FAIL_PREFIX = "guild-remote: "

_control_dir: str | None = None
_masters: dict[str, "Connection"] = {}
_sockets = 0


class Connection:
    def __init__(
        self,
        remote: str,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        private_key: str | None = None,
        known_hosts: str | None = None,
        options: list[str] = (),
        connect_timeout: int = 10,
        proxy: str | None = None,
        prelude: list[str] = (),
        rsync_path: str | None = None,
        rsync_options: list[str] = (),
    ):
        self.remote = remote
        self.host = host
        self.user = user
        self.port = port
        self.private_key = private_key
        self.target = f"{user}@{host}" if user else host
        self.where = f"{self.target}:{port}" if port else self.target
        self.prelude = list(prelude)
        self.rsync_path = rsync_path
        self.rsync_options = list(rsync_options)
        opts: list[str] = []
        # ssh takes the first value given for an option: the remote's own
        # options go before the defaults so they can override them.
        for opt in options:
            opts += ["-o", opt]
        if known_hosts:
            opts += ["-o", f"UserKnownHostsFile={known_hosts}"]
        if private_key:
            opts += ["-i", private_key, "-o", "IdentitiesOnly=yes"]
        if port:
            opts += ["-p", str(port)]
        if proxy:
            opts += ["-o", f"ProxyCommand={proxy}"]
        opts += [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
        ]
        self._opts = opts
        self._key = "\0".join([self.target, str(port), str(private_key), *opts])
        self.control_path: str | None = None

    # -- the connection ----------------------------------------------

    def _ssh_base(self) -> list[str]:
        self.open()
        return ["ssh", *self._opts, "-o", f"ControlPath={self.control_path}", "-o", "ControlMaster=no"]

    def open(self) -> None:
        """The master connection, started when there is none."""
        shared = _masters.get(self._key)
        if shared is not None and shared is not self:
            self.control_path = shared.control_path
        if self.control_path and os.path.exists(self.control_path):
            return
        _need("ssh")
        if self.private_key and not os.path.exists(self.private_key):
            raise GuildError(f"remote '{self.remote}': private key {self.private_key} does not exist")
        path = self.control_path or _new_socket()
        cmd = [
            "ssh", *self._opts,
            "-o", f"ControlPath={path}",
            "-o", "ControlMaster=yes",
            "-o", f"ControlPersist={PERSIST_SECS}",
            "-N", "-f", self.target,
        ]
        # stderr to a file, not a pipe: an older ssh's backgrounded
        # master keeps the stderr it was given open.
        with tempfile.TemporaryFile() as err:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            raise GuildError(self.connect_error(text))
        self.control_path = path
        if self._key not in _masters:
            _masters[self._key] = self

    def close(self) -> None:
        """End the master connection (what exiting the process does)."""
        if self.control_path and os.path.exists(self.control_path):
            subprocess.run(
                ["ssh", *self._opts, "-o", f"ControlPath={self.control_path}", "-O", "exit", self.target],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if _masters.get(self._key) is self:
            del _masters[self._key]

    def connect_error(self, stderr: str) -> str:
        """ssh's failure to connect (exit 255) as one line."""
        text = stderr.lower()
        where = self.where
        if "host key verification failed" in text or "host identification has changed" in text:
            why = "its host key is not known or has changed (see 'known-hosts' in the remote's config)"
        elif "connection refused" in text:
            why = "connection refused"
        elif "permission denied" in text or "too many authentication failures" in text:
            why = "authentication failed (is the key in the host's authorized_keys? see 'private-key')"
        elif "could not resolve hostname" in text or "name or service not known" in text:
            why = "unknown host"
        elif "timed out" in text:
            why = "connection timed out"
        elif "no route to host" in text or "network is unreachable" in text:
            why = "host unreachable"
        elif "connection closed" in text or "connection reset" in text:
            why = "the host closed the connection"
        else:
            why = _last_line(stderr) or "ssh failed"
        return f"remote '{self.remote}': cannot connect to {where}: {why}"

    # -- remote commands ---------------------------------------------

    def run(self, script: str) -> bytes:
        """Run a remote sh `script`; what it printed after `MARK`."""
        command = " && ".join([*self.prelude, "sh -s"])
        proc = subprocess.run(
            [*self._ssh_base(), self.target, command],
            input=script.encode("utf-8"),
            capture_output=True,
        )
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode == 255:
            raise GuildError(self.connect_error(err))
        found = proc.stdout.find(MARK)
        if proc.returncode != 0 or found < 0:
            raise GuildError(f"remote '{self.remote}': {self._script_error(err, proc.returncode, found >= 0)}")
        return proc.stdout[found + len(MARK):]

    def _script_error(self, err: str, code: int, started: bool) -> str:
        for line in err.splitlines():
            if line.startswith(FAIL_PREFIX):
                return line[len(FAIL_PREFIX):].strip()
        last = _last_line(err)
        if not started:
            # The login shell's set-up (init, venv-activate) failed.
            return f"setting up the shell on {self.where} failed: {last or f'exit {code}'}"
        return last or f"command failed on {self.where} (exit {code})"

    # -- rsync -------------------------------------------------------

    def rsync_dest(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}:{path}"

    def rsync(self, args: list[str], files: list[str], on_item: Callable[[str, int, str], None]) -> None:
        """rsync `args` with `files` as its ``--files-from`` list (paths
        relative to the source), `on_item(item, size, name)` per line
        of its itemized output."""
        _need("rsync")
        rsh = " ".join(_rsync_quote(a) for a in self._ssh_base())
        cmd = ["rsync", "-e", rsh, "--files-from=-", "--from0", "--out-format=%i %l %n"]
        if self.rsync_path:
            cmd += ["--rsync-path", self.rsync_path]
        cmd += self.rsync_options + args
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
            try:
                proc.stdin.write(b"".join(f.encode("utf-8") + b"\0" for f in files))
                proc.stdin.close()
                for raw in proc.stdout:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    parts = line.split(" ", 2)
                    if len(parts) < 3:
                        continue
                    item, size, name = parts[0], parts[1], parts[2].lstrip(" ")
                    if item == "*deleting":
                        # "*deleting   0 NAME": the size field is padded.
                        size, _, name = name.partition(" ")
                    try:
                        nbytes = int(size)
                    except ValueError:
                        nbytes = 0
                    on_item(item, nbytes, name)
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if code in (0, 24):  # 24: files vanished as they were read
            return
        if code == 23 and _only_dangling(text):
            return
        raise GuildError(self._rsync_error(code, text))

    def _rsync_error(self, code: int, stderr: str) -> str:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        text = stderr.lower()
        if code == 255 or (code in (12, 255) and "ssh:" in text) or "host key verification failed" in text:
            return self.connect_error(stderr)
        if "rsync: command not found" in text or "rsync: not found" in text or code == 127:
            return (
                f"remote '{self.remote}': rsync is not installed on {self.host} "
                "(or not on the PATH of a non-interactive shell; see 'rsync-path')"
            )
        import re

        gone = re.search(r'link_stat "([^"]*)" failed: No such file', stderr)
        if gone:
            return f"remote '{self.remote}': {gone.group(1)} is not on {self.host}"
        for line in lines:
            if line.startswith("rsync error:") or line.startswith("rsync: connection unexpectedly closed"):
                continue
            return f"remote '{self.remote}': rsync failed: {_clean_rsync(line)}"
        return f"remote '{self.remote}': rsync failed (exit {code})"


def _only_dangling(stderr: str) -> bool:
    """Whether every error rsync reported is a link pointing nowhere
    (such a link is left out of a copy, as a directory copy does)."""
    errors = [
        ln for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith("rsync error: some files") and "IO error encountered" not in ln
    ]
    return bool(errors) and all("symlink has no referent" in ln for ln in errors)


def _clean_rsync(line: str) -> str:
    for prefix in ("rsync: [sender] ", "rsync: [receiver] ", "rsync: [generator] ", "rsync: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _rsync_quote(arg: str) -> str:
    # rsync splits -e on spaces and honours single and double quotes
    # (not backslashes).
    if arg and not any(c in arg for c in " \t'\""):
        return arg
    return f'"{arg}"' if "'" in arg else f"'{arg}'"


def _need(prog: str) -> None:
    if shutil.which(prog) is None:
        raise GuildError(f"{prog} is not installed on this machine (the ssh remote type needs ssh and rsync)")


def _control_root() -> str:
    """This process's directory of control sockets: short, as a socket
    path must be (about 100 bytes)."""
    global _control_dir
    if _control_dir is None or not os.path.isdir(_control_dir):
        base = tempfile.gettempdir()
        if len(base) > 60 and os.path.isdir("/tmp"):
            base = "/tmp"
        _control_dir = tempfile.mkdtemp(prefix="guild-ssh-", dir=base)
        atexit.register(_close_all)
    return _control_dir


def _new_socket() -> str:
    global _sockets
    _sockets += 1
    return os.path.join(_control_root(), str(_sockets))


def _close_all() -> None:
    global _control_dir
    for conn in list(_masters.values()):
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - at exit, nothing to report to
            pass
    _masters.clear()
    if _control_dir:
        shutil.rmtree(_control_dir, ignore_errors=True)
        _control_dir = None
    try:
        atexit.unregister(_close_all)
    except Exception:  # noqa: BLE001
        pass
