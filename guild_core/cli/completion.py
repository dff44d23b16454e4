"""``guild completion``, and what the shells complete.

The scripts are click's own (bash, zsh, fish): each calls ``guild``
back with ``_GUILD_COMPLETE`` set, and click answers with what fits the
word being typed. This module is imported only then, or for ``guild
completion`` itself: `attach` gives the commands' RUN arguments run ids
and ``guild run``'s operation argument the project's operations as
each command loads (`cli.main.GuildGroup.get_command`), so normal
start-up pays nothing for completion.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from guild_core.errors import GuildError

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_GUILD_COMPLETE"

# Arguments and options that name runs, by parameter name.
RUN_PARAMS = {"run", "runs", "other_run", "restart"}
# Commands whose runs are the deleted ones.
DELETED_RUN_COMMANDS = {"restore", "purge"}


# ---------------------------------------------------------------------
# What is completed
# ---------------------------------------------------------------------


def _root_params(ctx: click.Context) -> dict:
    return ctx.find_root().params


def _guild_home(ctx: click.Context) -> Path:
    from guild_core import home

    given = _root_params(ctx).get("guild_home")
    return Path(given).expanduser().absolute() if given else home.guild_home()


def _project_dir(ctx: click.Context) -> Path:
    given = _root_params(ctx).get("cwd")
    return Path(given).expanduser() if given else Path.cwd()


def complete_runs(ctx: click.Context, param: click.Parameter, incomplete: str):
    """Run ids starting with `incomplete`, newest first, each with its
    operation as help; deleted runs for ``runs restore`` and ``purge``
    and with ``--deleted``. Nothing is swept or changed."""
    from click.shell_completion import CompletionItem

    from guild_core.run import RUN_ID_P, Run

    home = _guild_home(ctx)
    deleted = ctx.params.get("deleted") or ctx.command.name in DELETED_RUN_COMMANDS
    root = home / "trash" / "runs" if deleted else home / "runs"
    try:
        names = os.listdir(root)
    except OSError:
        return []
    runs = [
        Run(name, root / name)
        for name in names
        if name.startswith(incomplete) and RUN_ID_P.match(name) and (root / name / ".guild" / "opref").exists()
    ]
    runs.sort(key=lambda r: r.get("started") or r.get("initialized") or 0, reverse=True)
    return [CompletionItem(r.id, help=r.op_name or None) for r in runs]


def complete_operations(ctx: click.Context, param: click.Parameter, incomplete: str):
    """guild.yml operations starting with `incomplete`, then Python
    scripts and directories (to reach scripts in them)."""
    from click.shell_completion import CompletionItem

    from guild_core.opdef import list_operations

    project = _project_dir(ctx)
    items = []
    try:
        ops = list_operations(project)
    except GuildError:
        # A broken guild.yml: `guild run` itself says what is wrong.
        ops = []
    for name, desc in ops:
        if name.startswith(incomplete):
            items.append(CompletionItem(name, help=desc or None))
    return items + _scripts(project, incomplete)


def _scripts(project: Path, incomplete: str):
    from click.shell_completion import CompletionItem

    head, _, tail = incomplete.rpartition("/")
    where = project / head if head else project
    try:
        entries = sorted(os.scandir(where), key=lambda e: e.name)
    except OSError:
        return []
    prefix = f"{head}/" if head else ""
    items = []
    for entry in entries:
        if not entry.name.startswith(tail) or (entry.name.startswith(".") and not tail.startswith(".")):
            continue
        if entry.name.endswith(".py") and entry.is_file():
            items.append(CompletionItem(prefix + entry.name))
        elif entry.is_dir() and entry.name != "__pycache__":
            items.append(CompletionItem(prefix + entry.name + "/"))
    return items


def attach(cmd: click.Command) -> None:
    """Give `cmd`'s parameters (and its subcommands') their completion:
    run ids for ``run``/``runs``/``other_run``/``--start``, operations
    for ``guild run``'s OPSPEC. A completion a command set itself wins."""
    for param in cmd.params:
        if getattr(param, "_custom_shell_complete", None) is not None:
            continue
        if param.name in RUN_PARAMS:
            param._custom_shell_complete = complete_runs
        elif param.name == "opspec":
            param._custom_shell_complete = complete_operations
    for sub in getattr(cmd, "commands", {}).values():
        attach(sub)


# ---------------------------------------------------------------------
# guild completion
# ---------------------------------------------------------------------


def script(root: click.Command, shell: str) -> str:
    """The completion script for `shell`, ending with one newline."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:
        raise GuildError(f"unsupported shell: {shell}")
    return cls(root, {}, "guild", COMPLETE_VAR).source().rstrip("\n") + "\n"


def active_shell() -> str | None:
    """The shell this command runs in: the nearest parent process that
    is bash, zsh or fish, else $SHELL's name."""
    try:
        import psutil

        proc = psutil.Process().parent()
        while proc is not None:
            name = proc.name()
            if name in SHELLS:
                return name
            proc = proc.parent()
    except Exception:  # psutil missing, or a process we may not read
        pass
    name = os.path.basename(os.environ.get("SHELL", ""))
    return name if name in SHELLS else None


# Where --install writes the script, and how the shell's start-up file
# sources it (Guild AI's locations and lines).
_INIT_FILES = {
    "bash": "~/.bashrc",
    "zsh": "~/.zshrc",
    "fish": "~/.config/fish/completions/guild.fish",
}
_INIT_LINES = {
    "bash": "[ -s {script} ] && . {script}  # Enable completion for guild",
    "zsh": "[[ -s {script} ]] && . {script}  # Enable completion for guild",
    "fish": "test -s {script} ;and . {script}",
}


def _user_path(path: Path) -> str:
    """`path` with the home directory written as ``~``."""
    home = Path.home()
    try:
        return "~/" + path.relative_to(home).as_posix()
    except ValueError:
        return str(path)


def install(shell: str, text: str, shell_init: str | None) -> None:
    script_path = Path.home() / ".guild" / f"{shell}_completion"
    click.echo(f"Writing completion script to {_user_path(script_path)}", err=True)
    script_path.parent.mkdir(parents=True, exist_ok=True)
    script_path.write_text(text)
    init = Path(os.path.expanduser(shell_init or _INIT_FILES[shell]))
    shown_script = _user_path(script_path)
    sentinel = f". {shown_script}"
    if init.exists():
        for i, line in enumerate(init.read_text().splitlines(), 1):
            if sentinel in line:
                click.echo(
                    f"Guild completion is already installed in {_user_path(init)} (line {i}):\n  {line.rstrip()}",
                    err=True,
                )
                return
        if shell != "fish":
            backup = _backup_path(init)
            click.echo(f"Backing up {_user_path(init)} to {_user_path(backup)}", err=True)
            backup.write_bytes(init.read_bytes())
    click.echo(f"Updating {_user_path(init)} to support Guild command completion", err=True)
    init.parent.mkdir(parents=True, exist_ok=True)
    existed = init.exists()
    with open(init, "a") as f:
        if existed:
            f.write("\n")
        f.write(_INIT_LINES[shell].format(script=shown_script) + "\n")
    click.echo(
        "Guild command completion is installed - changes will take effect "
        "the next time you open a terminal session"
    )


def _backup_path(init: Path) -> Path:
    n = 0
    for p in init.parent.glob(init.name + ".guild-backup.*"):
        try:
            n = max(n, int(p.name.rsplit(".", 1)[1]))
        except ValueError:
            pass
    return init.with_name(f"{init.name}.guild-backup.{n + 1}")


@click.command()
@click.option(
    "-s", "--shell", type=click.Choice(SHELLS), metavar="NAME",
    help="The shell to write the script for: bash, zsh or fish (default: the shell guild runs in).",
)
@click.option("--shell-init", metavar="PATH", type=click.Path(dir_okay=False), help="With --install, the start-up file to change (default: the shell's usual one).")
@click.option("-i", "--install", "install_", is_flag=True, help="Install the script so every new terminal completes guild commands.")
@click.pass_context
def completion(ctx, shell, shell_init, install_):
    """Print a shell completion script for guild.

    The script completes commands, options, run ids and operations. It
    is for the shell guild runs in unless --shell names one. Load it in
    a running shell with `eval "$(guild completion)"` (bash, zsh) or
    `guild completion | source` (fish); --install writes it under
    ~/.guild and sources it from the shell's start-up file (~/.bashrc,
    ~/.zshrc or fish's completions directory), after backing that file
    up.
    """
    shell = shell or active_shell()
    if shell is None:
        raise GuildError("cannot tell which shell this is", hint="Try 'guild completion --shell NAME' (bash, zsh or fish).")
    text = script(ctx.find_root().command, shell)
    if install_:
        install(shell, text, shell_init)
    else:
        sys.stdout.write(text)
