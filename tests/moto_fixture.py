"""A real S3 for tests and benches: moto's standalone server on a free
loopback port, in its own process (and session), always stopped.

    with moto_server() as server:
        server.url            # http://127.0.0.1:PORT
        server.requests()     # requests served so far (its request log)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Credentials moto takes; nothing else in the environment is read.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# What could point boto3 elsewhere than the test says.
AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self, port: int, proc: subprocess.Popen, log: Path):
        self.port = port
        self.proc = proc
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self._client = None

    def requests(self) -> int:
        """Requests the server has logged so far."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if '" ' in line and "HTTP/1." in line)

    def client(self):
        """A boto3 S3 client of the server (made once)."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
            ).client("s3", endpoint_url=self.url)
        return self._client


@contextlib.contextmanager
def moto_server(timeout: float = 30.0):
    """Start moto's server; stop it (the whole process group) on the way
    out, however the block ends."""
    tmp = Path(tempfile.mkdtemp(prefix="guild-moto-"))
    log = tmp / "requests.log"
    proc = None
    try:
        for _attempt in range(3):
            port = free_port()
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                )
            if _wait_listening(port, proc, timeout):
                break
            _stop(proc)
            proc = None
        if proc is None:
            raise RuntimeError(f"moto server did not start: {log.read_text(errors='replace')[-2000:]}")
        yield MotoServer(port, proc, log)
    finally:
        if proc is not None:
            _stop(proc)
        for path in tmp.iterdir():
            path.unlink()
        tmp.rmdir()


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
