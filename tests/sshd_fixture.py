"""A real OpenSSH server on loopback for the ssh remote's tests.

`Sshd.start(tmp)` generates a throw-away host key and user key, writes
an ``sshd_config`` that lets only that key in (no passwords, no PAM),
and runs ``sshd -D -e`` as the current user on a free port of
127.0.0.1, its log in ``sshd.log``; `known_hosts` holds the host key,
so clients check it strictly. `stop()` kills it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def missing() -> str | None:
    """Why the tests cannot run here (no sshd, ssh, ssh-keygen or
    rsync), or None."""
    for prog in ("sshd", "ssh", "ssh-keygen", "rsync"):
        if not shutil.which(prog, path=SBIN_PATH):
            return f"{prog} is not installed (apt-get install openssh-server rsync)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(
        [shutil.which("ssh-keygen", path=SBIN_PATH), "-q", "-t", "ed25519", "-N", "", "-C", "guild-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


class Sshd:
    def __init__(self, root: Path, port: int, proc: subprocess.Popen):
        self.root = root
        self.port = port
        self.proc = proc
        self.host_key = root / "host_key"
        self.user_key = root / "user_key"
        self.known_hosts = root / "known_hosts"
        self.log = root / "sshd.log"
        self.user = os.environ.get("USER") or _user()

    @classmethod
    def start(cls, root: Path) -> "Sshd":
        root.mkdir(parents=True, exist_ok=True)
        keygen(root / "host_key")
        keygen(root / "user_key")
        (root / "authorized_keys").write_bytes((root / "user_key.pub").read_bytes())
        port = free_port()
        config = root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {root / 'host_key'}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    f"PidFile {root / 'sshd.pid'}",
                    "LogLevel INFO",
                    "MaxStartups 100",
                    "MaxSessions 50",
                    # A remote command runs in the real user's login shell;
                    # bash reads ~/.bashrc for one only at shell level 1,
                    # and this machine's may be slow to read (pyenv, conda):
                    # kept out of every command of the tests.
                    "SetEnv SHLVL=1",
                    "",
                ]
            )
        )
        host_pub = (root / "host_key.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        if os.geteuid() == 0:
            # sshd run as root wants its privilege separation directory.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        log = open(root / "sshd.log", "wb")
        proc = subprocess.Popen(
            [shutil.which("sshd", path=SBIN_PATH), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        server = cls(root, port, proc)
        try:
            server._wait_listening()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port}")

    def accepted(self) -> int:
        """How many connections sshd has let in so far."""
        return self.log.read_text(errors="replace").count("Accepted publickey")

    def stop(self) -> None:
        # The listener and the connections it forked (each in a session
        # of its own), so no test's connection outlives the server.
        import signal

        for pid in [*_children(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc; none without it)."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid).encode():
            found.append(int(name))
    return found


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
