"""``guild tensorboard``: TensorBoard over the selected runs.

guild makes a log directory of links to the selected runs
(`guild_core.tblogdir`) in a temporary directory, starts TensorBoard
on it as a subprocess in its own process group, and keeps the links
fresh every ``--refresh-interval`` seconds until Ctrl-C or SIGTERM;
then it stops TensorBoard's process group and removes the directory.
TensorBoard is imported by nothing here: it is found, and run with
this Python (``python -m tensorboard.main``).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from guild_core.errors import GuildError

from .runselect import filter_options, selected_runs

DEFAULT_HOST = "127.0.0.1"
# How long TensorBoard may take to listen, and to stop.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 5.0


@click.command("tensorboard", context_settings={"help_option_names": ["--help"]})
@click.argument("runs", metavar="[RUN...]", nargs=-1)
@click.option("-h", "--host", metavar="HOST", help=f"Name of host interface to listen on (default: {DEFAULT_HOST}).")
@click.option("-p", "--port", metavar="PORT", type=click.IntRange(0, 65535), help="Port to listen on (default: a free port).")
@click.option("--include-batch", is_flag=True, help="Include batch runs.")
@click.option(
    "--refresh-interval", metavar="SECONDS", type=click.IntRange(1, None), default=5,
    help="Refresh interval (defaults to 5 seconds).",
)
@click.option("--run-name-flags", metavar="FLAGS", help="Comma or space delimited list of flags used for run names.")
@click.option("-n", "--no-open", is_flag=True, help="Don't open TensorBoard in a browser.")
@click.option(
    "-O", "tb_options", metavar="OPTION=VALUE", multiple=True,
    help="An option that is passed through to TensorBoard as --OPTION=VALUE. May be used multiple times.",
)
@click.option("--skip-images", is_flag=True, help="Don't include run images as TF summaries (guild makes none).")
@click.option("--skip-hparams", is_flag=True, help="Don't generate HParam TF summaries (guild makes none).")
@click.option("--tab", metavar="TAB", help="Open with an initially selected tab.")
@click.option("--export-scalars", metavar="PATH", help="Export all scalars for a run to a CSV file. Use '-' to write to standard output.")
@filter_options
def tensorboard(runs, host, port, include_batch, refresh_interval, run_name_flags, no_open,
                tb_options, skip_images, skip_hparams, tab, export_scalars, rf):
    """Visualize runs with TensorBoard.

    guild starts TensorBoard over the selected runs (those 'guild runs'
    lists with the same RUN arguments and filters), prints its address
    and opens it in a browser (not with -n/--no-open). Runs that start,
    end, are deleted or relabelled appear in TensorBoard within
    --refresh-interval seconds. Batch runs are left out unless
    --include-batch. Ctrl-C stops TensorBoard.

    TensorBoard listens on 127.0.0.1 unless -h/--host says otherwise
    (0.0.0.0: every interface), and on a free port unless -p/--port.
    -O OPTION=VALUE passes --OPTION=VALUE to TensorBoard.

    --export-scalars PATH writes every scalar of the selected runs to a
    CSV file (run, path, tag, value, step) instead, and starts nothing.

    RUN is a run id, a unique id prefix, a 1-based index in the list of
    filtered runs or a range of them (START:END); without RUN, every
    filtered run. The filter options narrow the runs first, as for
    every command that takes runs."""
    passed = [_passthrough(opt) for opt in tb_options]
    list_runs = _runs_lister(rf, runs, include_batch)
    if export_scalars:
        _export_scalars(list_runs(), export_scalars)
        return
    name = _run_namer(run_name_flags)
    _serve(list_runs, name, host or DEFAULT_HOST, port, refresh_interval, passed, None if no_open else tab or "")


def _passthrough(opt: str) -> str:
    name, eq, val = opt.partition("=")
    if not eq or not name:
        raise GuildError(f"invalid TensorBoard option '{opt}': use OPTION=VALUE")
    return f"--{name.lstrip('-')}={val}"


def _runs_lister(rf, specs, include_batch: bool):
    def list_runs():
        runs = selected_runs(rf, specs)
        return runs if include_batch else [run for run in runs if not run.has_proto]

    return list_runs


def _run_namer(run_name_flags: str | None):
    from guild_core import tblogdir

    if run_name_flags is None:
        return tblogdir.run_name
    import re

    from guild_core.flags import format_label

    names = [n for n in re.split(r"[ ,]", run_name_flags) if n]
    template = " ".join(f"{n}=${{{n}}}" for n in names)

    def name(run):
        return tblogdir.run_name(run, format_label(template, run.get("flags") or {}) if names else "")

    return name


def _export_scalars(runs, dest: str) -> None:
    import csv

    from guild_core import tblogdir, tfevents

    def write(f):
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["run", "path", "tag", "value", "step"])
        for run in runs:
            for subdir in tblogdir.event_dirs(run.path):
                rel = os.path.relpath(subdir, run.path)
                for tag, value, step, _wall in tfevents.read_scalars(subdir):
                    out.writerow([run.id, rel, tag, value, step])

    if dest == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    parent = os.path.dirname(dest)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(dest, "w", newline="") as f:
        write(f)


# -- serving ----------------------------------------------------------


class _Stop(Exception):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP: stop TensorBoard, exit 0."""


def _check_installed() -> str:
    """TensorBoard's version, or a GuildError when it is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("tensorboard.main") is None:
        raise GuildError("TensorBoard is not installed", hint="Try: pip install 'guild[tensorboard]'")
    from importlib import metadata

    try:
        return metadata.version("tensorboard")
    except metadata.PackageNotFoundError:
        return ""


def _bind_port(host: str, port: int | None) -> int:
    """`port`, checked free on `host`, or a free port when None/0."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise GuildError(f"cannot listen on host '{host}': {e.strerror or e}") from None
    family, _type, _proto, _name, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As TensorBoard's server binds: a port held only by closed
        # connections (TIME_WAIT) is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        return sock.getsockname()[1]
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise GuildError(f"port {port} is already in use on {host} (choose another with --port)") from None
        raise GuildError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    finally:
        sock.close()


def _url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "::"):
        import socket

        host = socket.gethostname() or "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _listening(host: str, port: int) -> bool:
    import socket

    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


def _serve(list_runs, name, host, port, interval, passed, open_tab) -> None:
    import shutil
    import subprocess
    import tempfile

    from guild_core import log, tblogdir

    version = _check_installed()
    port = _bind_port(host, port)
    tmp = tempfile.mkdtemp(prefix="guild-tensorboard-")
    logdir = tblogdir.LogDir(os.path.join(tmp, "logdir"), list_runs, name)
    log.debug("tensorboard log dir: %s", logdir.path)
    proc = None
    # While TensorBoard starts, a stop signal waits until `proc` names
    # it, so stopping finds it. (A blocked signal mask would be
    # inherited by TensorBoard, which would then ignore SIGTERM.)
    deferred: list[int] = []
    defer = False

    def on_signal(signum, _frame):
        if defer:
            deferred.append(signum)
            return
        raise _Stop()

    prev = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            prev[sig] = signal.signal(sig, on_signal)
        click.echo("Preparing runs for TensorBoard")
        logdir.refresh()
        argv = [
            sys.executable, "-m", "tensorboard.main",
            "--logdir", str(logdir.path), "--host", host, "--port", str(port),
            "--reload_interval", str(interval), *passed,
        ]
        out_path = os.path.join(tmp, "tensorboard.out")
        defer = True
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=None if log.enabled() else out,
                stderr=None if log.enabled() else subprocess.STDOUT,
                start_new_session=True,
            )
        defer = False
        if deferred:
            raise _Stop()
        _wait_listening(proc, host, port, out_path)
        url = _url(host, port)
        label = f"TensorBoard {version}" if version else "TensorBoard"
        click.echo(f"Running {label} at {url} (Type Ctrl+C to quit)", err=True)
        if open_tab is not None:
            _open_browser(url + (f"#{open_tab}" if open_tab else ""))
        # The main thread refreshes while it waits for TensorBoard: it
        # has nothing else to do, the stop signals arrive there, and the
        # run index is read from one thread only.
        while True:
            try:
                proc.wait(timeout=interval)
            except subprocess.TimeoutExpired:
                _refresh(logdir)
                continue
            raise GuildError(f"TensorBoard stopped: {_last_line(out_path) or f'exit status {proc.returncode}'}")
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        # Ctrl-C again while stopping must not leave TensorBoard behind.
        for sig in prev:
            signal.signal(sig, signal.SIG_IGN)
        try:
            if proc is not None:
                _stop(proc)
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            for sig, handler in prev.items():
                signal.signal(sig, handler)


def _refresh(logdir) -> None:
    from guild_core import log

    try:
        changes = logdir.refresh()
    except GuildError as e:
        # A bad moment (a run half moved): the next refresh tries again.
        log.debug("refresh failed: %s", e)
        return
    if changes:
        log.debug("runs added: %s; removed: %s", changes.added, changes.removed)


def _wait_listening(proc, host: str, port: int, out_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            line = _last_line(out_path)
            if "already in use" in line or "Address in use" in line:
                raise GuildError(f"port {port} is already in use on {host} (choose another with --port)")
            raise GuildError(f"TensorBoard did not start: {line or f'exit status {proc.returncode}'}")
        if _listening(host, port):
            return
        time.sleep(0.1)
    raise GuildError(f"TensorBoard did not listen on {host}:{port} within {START_TIMEOUT:.0f} seconds")


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _stop(proc) -> None:
    """TensorBoard's whole process group: SIGTERM, then SIGKILL."""
    import subprocess

    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; what it started may not be.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        break
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _open_browser(url: str) -> None:
    """The desktop's opener (`xdg-open`, `open` on macOS) on `url`,
    left to itself; none (a server): the printed address is enough.
    Python's `webbrowser` is used on Windows only: elsewhere, without a
    desktop, it may start a text browser that takes the terminal."""
    import shutil
    import subprocess

    opener = shutil.which("open" if sys.platform == "darwin" else "xdg-open")
    if opener is None:
        if sys.platform == "win32":
            import webbrowser

            webbrowser.open(url)
        return
    try:
        subprocess.Popen(
            [opener, url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        pass
