"""``guild operations``, ``guild check`` and ``guild plugins``."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import click

from guild_core import __version__, home, util
from guild_core.errors import GuildError


@click.command()
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("-a", "--all", "all_", is_flag=True, help="Show private operations too (names starting with '_').")
@click.option("-i", "--installed", is_flag=True, help="Include operations of installed packages (guild has none: accepted for Guild AI's scripts).")
@click.option("-v", "--verbose", is_flag=True, help="Show each operation's main (or exec) and flags.")
def operations(filters, all_, installed, verbose):
    """Show the operations defined in guild.yml.

    With FILTER values, only operations whose name (with its model)
    contains one of them."""
    from guild_core.cli.common import printable
    from guild_core.opdef import find_guildfile, list_operations, load_guildfile

    ops = [(n, d) for n, d in list_operations(Path.cwd(), private=all_) if _matches(n, filters)]
    if not verbose:
        for line in util.table([[printable(name), printable(desc)] for name, desc in ops]):
            click.echo(line)
        return
    from guild_core import opdef as opdeflib
    from guild_core.cli.common import flag_detector, plugin_manager

    data = load_guildfile(find_guildfile(Path.cwd())) if ops else {}
    detect = flag_detector(plugin_manager())
    for line, (name, _desc) in zip(util.table([[printable(n), printable(d)] for n, d in ops]), ops):
        click.echo(line)
        op = data.get(name) or {}
        try:
            flagdefs = opdeflib.resolve(name, Path.cwd(), detect).flagdefs
        except GuildError:
            flagdefs = {}
        if op.get("exec"):
            click.echo(f"  exec: {printable(op['exec'])}")
        elif op.get("steps") and not op.get("main"):
            click.echo(f"  steps: {printable(len(op['steps']))}")
        else:
            click.echo(f"  main: {printable(op.get('main') or name.rpartition(':')[2])}")
        click.echo(f"  flags: {printable(_flag_summary(flagdefs))}")


def _matches(name: str, filters) -> bool:
    return not filters or any(f in name for f in filters)


def _flag_summary(flagdefs) -> str:
    """An operation's flags as Guild AI's ``operations -v`` lists them:
    ``[name: (default is V), ...]``."""
    from guild_core.flags import encode_value

    parts = []
    for fname, fd in sorted(flagdefs.items()):
        parts.append(f"{fname}: (default is {encode_value(fd.default)})" if fd.default is not None else f"{fname}:")
    return "[" + ", ".join(parts) + "]"


@click.command()
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("-a", "--all", "all_", is_flag=True, help="Show private models too (names starting with '_').")
@click.option("-i", "--installed", is_flag=True, help="Include models of installed packages (guild has none: accepted for Guild AI's scripts).")
@click.option("-v", "--verbose", is_flag=True, help="Show each model's guild.yml and operations.")
def models(filters, all_, installed, verbose):
    """Show the models defined in guild.yml.

    With FILTER values, only models whose name contains one of them.
    The anonymous model (operations at the top level) is not listed."""
    from guild_core.cli.common import printable
    from guild_core.opdef import find_guildfile, load_models

    gf = find_guildfile(Path.cwd())
    if gf is None:
        return
    _ops, infos = load_models(gf)
    shown = [
        m for m in infos
        if m.name and (all_ or not m.name.startswith("_")) and _matches(m.name, filters)
    ]
    rows = [[printable(m.name), printable(m.description.split("\n")[0])] for m in shown]
    for line, m in zip(util.table(rows), shown):
        click.echo(line)
        if verbose:
            click.echo(f"  source: {printable(gf)}")
            click.echo(f"  operations: {printable(', '.join(op.rpartition(':')[2] for op in m.operations))}")


# Modules whose versions `guild check -v` shows: (name shown,
# distribution, required). Read from installed metadata, not imported.
CHECK_MODS = [
    ("boto3", "boto3", False),
    ("click", "click", True),
    ("dask", "dask", False),
    ("numpy", "numpy", False),
    ("pip", "pip", False),
    ("pluggy", "pluggy", True),
    ("setuptools", "setuptools", False),
    ("sklearn", "scikit-learn", False),
    ("skopt", "scikit-optimize", False),
    ("yaml", "pyyaml", True),
]
ATTR_WIDTH = 26  # Guild AI's column for values


class _Check:
    """Lines of `guild check`, and whether any showed a problem."""

    def __init__(self):
        self.failed = False

    def attr(self, name: str, val: str) -> None:
        from guild_core.cli.common import printable

        pad = " " * max(ATTR_WIDTH - len(name), 1)
        click.echo(f"{name}:{pad}{printable(val)}")

    def error(self, what: str) -> str:
        self.failed = True
        return click.style(what, fg="red", bold=True)

    def safe(self, f, *args) -> str:
        try:
            return f(*args)
        except Exception as e:  # a check reports what failed, and goes on
            from guild_core import log

            log.debug("check %s failed: %r", getattr(f, "__name__", f), e)
            return self.error(f"ERROR: {e}")


@click.command()
@click.option("--env", is_flag=True, help="Show only the environment: guild, its home and Python.")
@click.option("--tensorflow", is_flag=True, help="Also show the installed TensorFlow version.")
@click.option("--pytorch", is_flag=True, help="Also show PyTorch: its version and whether it sees CUDA devices.")
@click.option("-n", "--no-info", is_flag=True, help="Show nothing (with --version: only check the version).")
@click.option("-v", "--verbose", is_flag=True, help="Also show the Python path, plugin versions and library versions.")
@click.option("--space", is_flag=True, help="Also show disk space used by runs, deleted runs and caches.")
@click.option("--version", "required", metavar="REQUIRED", help="Fail unless guild's version matches REQUIRED (e.g. '>=0.1').")
@click.option("--notify", is_flag=True, help="Send a desktop notification (notify-send) with the result.")
@click.option("--offline/--no-offline", default=None, help="Accepted for Guild AI scripts: guild never checks online.")
@click.option("--remote", metavar="REMOTE", help="Check REMOTE instead (as 'guild remote status -v').")
def check(env, tensorflow, pytorch, no_info, verbose, space, required, notify, offline, remote):
    """Show the Guild setup: versions, the Guild home, plugins.

    Prints guild's version and install location, the Guild home and
    resource cache, the installed plugins, Python's version and
    executable, the platform, and the versions of psutil, TensorBoard
    and CUDA. -v adds the Python path, each plugin's distribution and
    version, and the libraries guild uses; --space the disk space taken
    by runs, by deleted runs (what `guild runs purge` frees) and by
    caches.

    --version REQUIRED checks guild's version against a requirement
    such as '>=0.1' or '0.1.*' (a bare version means ==) and fails when
    it does not match; quote it in the shell. check exits with status 1
    when something it checks is missing or broken. --remote checks a
    remote: where it is and whether it is reachable.
    """
    if remote:
        from guild_core import remotes

        rem = remotes.get(remote)
        click.echo(f"{remote}: {rem.describe()}")
        click.echo(rem.status())
        return
    try:
        _check(env, tensorflow, pytorch, no_info, verbose, space, required)
    except GuildError as e:
        _notify(notify, f"FAILED: {e}")
        raise
    _notify(notify, "PASSED")


def _check(env, tensorflow, pytorch, no_info, verbose, space, required) -> None:
    if required:
        if not version_matches(__version__, required):
            raise GuildError(f"version mismatch: current version '{__version__}' does not match '{required}'")
    if no_info:
        return
    c = _Check()
    c.attr("guild_version", __version__)
    c.attr("guild_install_location", str(Path(__file__).resolve().parents[1]))
    c.attr("guild_home", str(home.guild_home()))
    c.attr("guild_resource_cache", str(home.cache_dir("resources")))
    if not env:
        _print_plugins(c, verbose)
    c.attr("python_version", sys.version.replace("\n", ""))
    c.attr("python_exe", sys.executable)
    if verbose:
        c.attr("python_path", os.path.pathsep.join(sys.path))
    if not env:
        c.attr("platform", c.safe(_platform))
        c.attr("psutil_version", _dist_version(c, "psutil", required=True))
        c.attr("tensorboard_version", _dist_version(c, "tensorboard"))
        if tensorflow:
            c.attr("tensorflow_version", _dist_version(c, "tensorflow"))
        if pytorch:
            _pytorch(c)
        c.attr("cuda_version", c.safe(_cuda_version))
        c.attr("nvidia_smi_version", c.safe(_nvidia_smi_version))
        if verbose:
            for name, dist, req in CHECK_MODS:
                c.attr(f"{name}_version", _dist_version(c, dist, required=req))
        if space:
            _print_disk_space()
    if c.failed:
        more = "" if verbose else " or run 'guild check -v'"
        raise GuildError("there are problems with your setup", hint=f"See the lines above{more}.")


def _print_plugins(c: _Check, verbose: bool) -> None:
    """Plugin names, one from a distribution other than guild's with
    that distribution and version; -v: a line for each plugin too."""
    from guild_core.cli.common import plugin_manager
    from guild_core.plugins import disabled_plugins, plugin_infos

    try:
        infos = plugin_infos(plugin_manager())
    except GuildError as e:  # a plugin that fails to load
        c.attr("installed_plugins", c.error(f"ERROR: {e}"))
        return
    names = []
    for i in infos:
        own = i["distribution"] in (None, "guild")
        names.append(i["name"] if own else f"{i['name']} ({i['distribution']} {i['version']})")
    line = ", ".join(names) or "(none)"
    if disabled_plugins():
        line += f" (disabled: {', '.join(disabled_plugins())})"
    c.attr("installed_plugins", line)
    if verbose:
        for i in infos:
            where = f"{i['distribution'] or '-'} {i['version'] or ''}".strip()
            c.attr(f"  {i['name']}", f"{where} ({i['module']})")


def _platform() -> str:
    u = platform.uname()
    return " ".join([u.system, u.release, u.machine])


def _dist_version(c: _Check, dist: str, required: bool = False) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return c.error("not installed") if required else "not installed"


def _pytorch(c: _Check) -> None:
    try:
        import torch
    except Exception:
        c.attr("pytorch_version", "not installed")
        return
    c.attr("pytorch_version", c.safe(lambda: torch.__version__))
    c.attr("pytorch_cuda_version", c.safe(lambda: str(torch.version.cuda)))
    c.attr("pytorch_cuda_available", c.safe(lambda: "yes" if torch.cuda.is_available() else "no"))
    c.attr("pytorch_cuda_devices", c.safe(
        lambda: ", ".join(f"{torch.cuda.get_device_name(i)} ({i})" for i in range(torch.cuda.device_count())) or "none"
    ))


def _tool_output(*cmd: str) -> str | None:
    import shutil
    import subprocess

    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    return subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=30).stdout


def _cuda_version() -> str:
    import re

    out = _tool_output("nvcc", "--version")
    if out is not None:
        m = re.search(r"V([0-9.]+)", out)
        return m.group(1) if m else "unknown (error)"
    out = _tool_output("nvidia-smi", "--query")
    if out is not None:
        m = re.search(r"CUDA Version\s+: ([0-9.]+)", out)
        return m.group(1) if m else "unknown (error)"
    return "not installed"


def _nvidia_smi_version() -> str:
    import re

    out = _tool_output("nvidia-smi")
    if out is None:
        return "not installed"
    m = re.search(r"NVIDIA-SMI ([0-9.]+)", out)
    return m.group(1) if m else "unknown (error)"


def _notify(notify: bool, body: str) -> None:
    if not notify:
        return
    import shutil
    import subprocess

    exe = shutil.which("notify-send")
    if exe is None:
        click.echo("WARNING: cannot send a notification: notify-send is not installed", err=True)
        return
    urgency = "normal" if body == "PASSED" else "critical"
    subprocess.run([exe, "-u", urgency, "guild check", body], check=False)


# --- version requirements -------------------------------------------

def version_matches(version: str, required: str) -> bool:
    """Whether `version` meets `required`: comma-separated clauses of
    ``==``, ``!=``, ``>=``, ``<=``, ``>``, ``<``, ``~=`` and a version
    (``==`` allows ``1.2.*``); a bare version means ``==``."""
    import re

    clauses = [c.strip() for c in required.split(",")]
    have = _version_tuple(version)
    if have is None:
        raise GuildError(f"cannot read guild's own version '{version}'")
    for clause in clauses:
        m = re.fullmatch(r"(==|!=|>=|<=|>|<|~=)?\s*([0-9][0-9a-zA-Z.]*(?:\.\*)?)", clause)
        want = m and _version_tuple(m.group(2).removesuffix(".*"))
        if not m or want is None or (m.group(2).endswith(".*") and m.group(1) not in (None, "==", "!=")):
            raise GuildError(
                f"invalid version requirement '{required}'",
                hint="Use comparisons such as '>=0.1', '==0.1.*' or '>=0.1,<1' (comma-separated).",
            )
        op = m.group(1) or "=="
        if m.group(2).endswith(".*"):
            ok = have[: len(want)] == want
            ok = ok if op == "==" else not ok
        elif op == "~=":
            if len(want) < 2:
                raise GuildError(f"invalid version requirement '{required}'", hint="'~=' needs at least two parts ('~=0.1').")
            ok = have >= want and have[: len(want) - 1] == want[:-1]
        else:
            n = max(len(have), len(want))
            a, b = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
            ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]
        if not ok:
            return False
    return True


def _version_tuple(s: str) -> tuple[int, ...] | None:
    """The release numbers of a version (``0.1.0`` -> (0, 1, 0)); None
    for anything else (pre-releases are not guild's)."""
    parts = s.split(".")
    if not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _print_disk_space() -> None:
    paths = [
        ("guild_home", home.guild_home()),
        ("runs", home.runs_dir()),
        ("deleted_runs", home.trash_runs_dir()),
        ("cache", home.guild_home() / "cache"),
    ]
    click.echo("disk_space:")
    rows = [[f"  {name}:", format_bytes(disk_usage(path)), str(path)] for name, path in paths]
    rows.append(_leftovers_row())
    for line in util.table(rows, sep=" "):
        click.echo(line)


def _leftovers_row() -> list[str]:
    """Hidden work under runs/ and the trash: a crashed command's
    leftovers (the next listing removes them) or work under way."""
    from guild_core import store

    found = store.leftovers(home.runs_dir()) + store.leftovers(home.trash_runs_dir())
    size = sum(disk_usage(lo.path) + _own_size(lo.path) for lo in found)
    dead = sum(1 for lo in found if not lo.owner_alive)
    live = len(found) - dead
    desc = f"{dead} from interrupted commands"
    if live:
        desc += f", {live} in progress"
    return ["  leftovers:", format_bytes(size), desc]


def _own_size(path: Path) -> int:
    try:
        return path.lstat().st_size if not path.is_dir() else 0
    except OSError:
        return 0


def disk_usage(path: Path) -> int:
    """Bytes under `path`, links counted as links, not followed."""
    import os

    total = 0
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def format_bytes(n: float) -> str:
    """Guild AI's format: 512, 1.5K, 20.0M."""
    for unit in ("", "K", "M", "G", "T", "P", "E"):
        if abs(n) < 1024:
            return str(int(n)) if not unit else f"{n:.1f}{unit}"
        n /= 1024.0
    return f"{n:.1f}Z"


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Show as JSON.")
def plugins_(as_json):
    """Show installed plugins: name, distribution, version and hooks."""
    from guild_core.cli.common import plugin_manager, printable
    from guild_core.plugins import disabled_plugins, plugin_infos

    infos = plugin_infos(plugin_manager())
    if as_json:
        click.echo(json.dumps(infos))
        return
    rows = [
        [printable(c) for c in (i["name"], f"{i['distribution'] or '-'} {i['version'] or ''}".strip(), ", ".join(i["hooks"]))]
        for i in infos
    ]
    for line in util.table(rows):
        click.echo(line)
    disabled = disabled_plugins()
    if disabled:
        click.echo(f"Disabled (GUILD_DISABLE_PLUGINS): {', '.join(disabled)}")
