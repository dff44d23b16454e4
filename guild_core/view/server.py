"""`guild view`'s HTTP server: the standard library's
`ThreadingHTTPServer`, routing, and what keeps other sites out.

Requests are read on a thread each (a slow client holds up no one);
the work of every API call is done on one worker thread, since the run
index keeps one SQLite connection per process, and the index's pending
writes are flushed after each call (a long-lived server would otherwise
keep them until it exits).

Security (docs/view.md): the server binds 127.0.0.1 unless told
otherwise; a request whose Host header is not this server's address is
refused (DNS rebinding: a foreign name resolved to 127.0.0.1); every
POST needs the header ``X-Guild-Token`` with the token made at start
(and written into the index page, which another site cannot read), and
a POST with a foreign ``Origin`` is refused. Run files are served with
a sandboxing Content-Security-Policy and never as HTML.
"""

from __future__ import annotations

import concurrent.futures
import hmac
import html
import json
import os
import re
import secrets
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from guild_core import __version__
from guild_core.errors import GuildError

from . import data as datalib

MAX_BODY = 1 << 20
TOKEN_HEADER = "X-Guild-Token"

_RUN_P = re.compile(r"^/api/runs/([^/]+)(?:/(output|label|tags|mark|files)(?:/(.*))?)?$")


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True
    # Reused at once after a restart on the same port.
    allow_reuse_address = True

    def __init__(self, host: str, port: int, data: datalib.Data, log_requests: bool = False):
        self.address_family = _family(host)
        super().__init__((host, port), Handler)
        self.data = data
        self.log_requests = log_requests
        self.token = secrets.token_urlsafe(32)
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="guild-view")
        self.host = host
        self.port = self.server_address[1]
        self.allowed_hosts = _allowed_hosts(host, self.port)
        data.schedule = lambda fn: self.worker.submit(_flushed, fn)
        # The listing is read while the user's browser opens the page.
        data.schedule(data.first_listing)

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname() or "localhost"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def call(self, fn, *args):
        """`fn(*args)` on the worker thread, the index flushed after."""
        return self.worker.submit(_flushed, fn, *args).result()

    def server_close(self) -> None:
        super().server_close()
        self.worker.shutdown(wait=True)


def _flushed(fn, *args):
    from guild_core import index

    try:
        return fn(*args)
    finally:
        index.flush()


def _family(host: str):
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return socket.AF_INET
    return infos[0][0] if infos else socket.AF_INET


def _allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers this server answers: its address with the port,
    and, for the loopback address or every interface, the names that
    reach it here."""
    names = {host}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    if host in ("0.0.0.0", "::", ""):
        names |= {"127.0.0.1", "localhost", "[::1]", socket.gethostname()}
        try:
            names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
        except OSError:
            pass
    if ":" in host and not host.startswith("["):
        names.add(f"[{host}]")
    return {f"{name}:{port}".lower() for name in names}


class Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = f"GuildView/{__version__}"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        if self.server.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- checks ----------------------------------------------------

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        return host in self.server.allowed_hosts

    def _origin_ok(self) -> bool:
        origin = self.headers.get("Origin")
        if origin and origin.lower() != f"http://{(self.headers.get('Host') or '').lower()}":
            return False
        # Browsers say where a request comes from; only this page's own
        # requests (same origin) may change runs.
        site = self.headers.get("Sec-Fetch-Site")
        return site in (None, "same-origin", "none")

    def _token_ok(self) -> bool:
        token = self.headers.get(TOKEN_HEADER) or ""
        return hmac.compare_digest(token.encode(), self.server.token.encode())

    # -- responses -------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, val in (extra or {}).items():
            self.send_header(name, val)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        body = json.dumps(obj, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json")

    def _error(self, status: int, msg: str) -> None:
        # A refused request's body may be unread: the connection ends
        # with this answer, so it is never taken for the next request.
        self.close_connection = True
        self._json(status, {"error": " ".join(str(msg).split())})

    # -- methods ---------------------------------------------------

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        try:
            if not self._host_ok():
                self._error(403, "unknown Host: this server answers only to its own address")
                return
            if method == "POST" and not self._origin_ok():
                self._error(403, "cross-origin requests may not change runs")
                return
            if method == "POST" and not self._token_ok():
                self._error(403, f"missing or wrong {TOKEN_HEADER}")
                return
            self._route(method)
        except datalib.BadRequest as e:
            self._error(400, str(e))
        except datalib.Forbidden as e:
            self._error(403, str(e))
        except datalib.NotFound as e:
            self._error(404, str(e))
        except datalib.Conflict as e:
            self._error(409, str(e))
        except GuildError as e:
            self._error(400, str(e))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001  a bug: one line, the server goes on
            self._error(500, f"unexpected error: {type(e).__name__}: {e}")

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise datalib.BadRequest("bad Content-Length") from None
        if length > MAX_BODY:
            raise datalib.BadRequest("request body too large")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise datalib.BadRequest("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise datalib.BadRequest("the request body must be a JSON object")
        return body

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        call = self.server.call
        data = self.server.data
        if method == "GET":
            if path == "/favicon.ico":
                path = "/static/favicon.svg"
            if path in ("/", "/index.html"):
                self._send(200, index_page(self.server.token), "text/html; charset=utf-8",
                           {"Content-Security-Policy": _PAGE_CSP})
                return
            if path.startswith("/static/"):
                found = static_file(path[len("/static/"):])
                if found is None:
                    self._error(404, f"no such page: {path}")
                    return
                self._send(200, found[0], found[1])
                return
            if path == "/api/runs":
                self._json(200, call(data.runs_page, query))
                return
            if path == "/api/scalars":
                self._json(200, call(data.scalars, query))
                return
            if path == "/api/compare":
                self._json(200, call(data.compare, query))
                return
            m = _RUN_P.match(path)
            if m:
                run_id, what, rest = unquote(m.group(1)), m.group(2), m.group(3)
                if what is None:
                    self._json(200, call(data.run_detail, run_id))
                    return
                if what == "output" and rest is None:
                    offset = datalib._int(query, "offset", 0, 0)
                    self._json(200, call(data.output, run_id, offset))
                    return
                if what == "files" and rest is not None:
                    body, ctype = call(data.file, run_id, unquote(rest))
                    self._send(200, body, ctype, {"Content-Security-Policy": _FILE_CSP})
                    return
            self._error(404, f"no such page: {path}")
            return
        body = self._body()
        if path == "/api/runs/delete":
            self._json(200, call(data.delete, body))
            return
        if path == "/api/runs/restore":
            self._json(200, call(data.restore, body))
            return
        m = _RUN_P.match(path)
        if m and m.group(3) is None and m.group(2) in ("label", "tags", "mark"):
            fn = {"label": data.set_label, "tags": data.set_tags, "mark": data.set_mark}[m.group(2)]
            self._json(200, call(fn, unquote(m.group(1)), body))
            return
        self._error(404, f"no such action: {path}")


# A run's file is shown in a sandbox: no script of it runs as this site.
_FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
# The page runs only its own scripts (none inline); charts set inline
# styles.
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file of the page (its script, styles, chart library), by bare
    name from the package's static directory; None for anything else,
    so no request path reaches another file."""
    if "/" in name or "\\" in name or name.startswith(".") or name == "index.html":
        return None
    ctype = _STATIC_TYPES.get(os.path.splitext(name)[1])
    if ctype is None:
        return None
    try:
        with open(os.path.join(STATIC_DIR, name), "rb") as f:
            return f.read(), ctype
    except OSError:
        return None


def index_page(token: str) -> bytes:
    """The page: static/index.html with this server's token in it, for
    its requests that change runs."""
    with open(os.path.join(STATIC_DIR, "index.html"), encoding="utf-8") as f:
        page = f.read()
    return page.replace("{{token}}", html.escape(token)).replace("{{version}}", __version__).encode("utf-8")
