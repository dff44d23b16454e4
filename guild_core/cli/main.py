"""The ``guild`` command.

Subcommands load on first use, so ``guild --help`` and ``guild runs``
import only what they need. Domain errors become one ``guild: ...``
line and exit status 1 here, and only here; so does an unexpected
error, whose traceback ``--debug`` shows.

The global options apply before any command runs: ``-H PATH`` is the
Guild home (``GUILD_HOME``, also for the processes guild starts),
``-C PATH`` the directory guild works in (as if started there), and
``--debug`` turns on the debug log (`guild_core.log`).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from guild_core import __version__
from guild_core.errors import GuildError

# name -> (module, attribute, short help). The help is here so listing
# commands does not import them.
COMMANDS = {
    "api": ("guild_core.cli.api", "api", "CLI based API calls: runs, compare and operations as JSON."),
    "cat": ("guild_core.cli.files", "cat", "Show contents of a run file."),
    "check": ("guild_core.cli.info", "check", "Check the Guild setup."),
    "completion": ("guild_core.cli.completion", "completion", "Generate a shell completion script."),
    "comment": ("guild_core.cli.runs_meta", "comment", "Add, list or delete run comments."),
    "compare": ("guild_core.cli.compare", "compare", "Compare run flags, scalars and attributes."),
    "diff": ("guild_core.cli.diff", "diff", "Diff two runs."),
    "export": ("guild_core.cli.archive", "export", "Export runs to a directory or zip file."),
    "help": ("guild_core.cli.helpcmd", "help_", "Show help for a project's operations."),
    "import": ("guild_core.cli.archive", "import_", "Import runs from a directory or zip file."),
    "label": ("guild_core.cli.runs_meta", "label", "Set run labels."),
    "ls": ("guild_core.cli.files", "ls", "List run files."),
    "mark": ("guild_core.cli.runs_meta", "mark", "Mark runs."),
    "merge": ("guild_core.cli.merge", "merge", "Copy run files to a project directory."),
    "open": ("guild_core.cli.files", "open_", "Open a run path or output."),
    "models": ("guild_core.cli.info", "models", "Show models in guild.yml."),
    "operations": ("guild_core.cli.info", "operations", "Show operations in guild.yml."),
    "plugins": ("guild_core.cli.info", "plugins_", "Show installed plugins."),
    "pull": ("guild_core.cli.remotes", "pull", "Copy runs from a remote location."),
    "push": ("guild_core.cli.remotes", "push", "Copy runs to a remote location."),
    "remote": ("guild_core.cli.remotes", "remote", "Manage remotes."),
    "remotes": ("guild_core.cli.remotes", "remotes_", "Show available remotes."),
    "run": ("guild_core.cli.run", "run", "Run an operation."),
    "runs": ("guild_core.cli.runs", "runs", "Show or manage runs."),
    "select": ("guild_core.cli.selectcmd", "select", "Print the id of a selected run."),
    "stop": ("guild_core.cli.stop", "stop", "Stop one or more runs."),
    "sync": ("guild_core.cli.remotes", "sync", "Synchronize remote runs."),
    "sys": ("guild_core.cli.syscmd", "sys_", "System utilities."),
    "tag": ("guild_core.cli.runs_meta", "tag", "Add or delete run tags."),
    "tensorboard": ("guild_core.cli.tensorboard", "tensorboard", "Visualize runs with TensorBoard."),
    "view": ("guild_core.cli.view", "view", "Visualize runs in a local web application."),
    "watch": ("guild_core.cli.stop", "watch", "Watch run output."),
}
ALIASES = {"ops": "operations"}
# What click's shell completion scripts set when they call guild back.
COMPLETE_VAR = "_GUILD_COMPLETE"
# Set by `main()`: guild runs as the command, so an unexpected error
# is reported, not raised.
_as_command = False


def os_error_message(e: OSError) -> str:
    what = e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename else what


def _quiet_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def report(e: GuildError) -> None:
    from guild_core.cli.common import printable

    # A message may quote what the user typed or a run holds.
    click.echo(f"guild: {printable(e)}", err=True)
    if e.hint:
        click.echo(printable(e.hint), err=True)


def report_unexpected(e: Exception) -> None:
    from guild_core import log

    if log.enabled():
        import traceback

        click.echo("".join(traceback.format_exception(e)).rstrip("\n"), err=True)
        report(GuildError(f"unexpected error: {type(e).__name__}: {e}"))
    else:
        report(GuildError(f"unexpected error: {type(e).__name__}: {e} (try 'guild --debug ...' for details)"))


def _checked_dir(path: str) -> str:
    """`path`, absolute, or a GuildError saying why it is no directory."""
    expanded = os.path.expanduser(path)
    if not os.path.exists(expanded):
        raise GuildError(f"directory '{expanded}' does not exist")
    if not os.path.isdir(expanded):
        raise GuildError(f"'{expanded}' is not a directory")
    return os.path.abspath(expanded)


def _complete_dir(ctx, param, incomplete):
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="dir")]


def _apply_global_options(ctx, cwd, guild_home, debug) -> None:
    """-H, -C and --debug, for this command and what it starts; undone
    when the command ends (tests run many in one process)."""
    if debug:
        from guild_core import log

        log.enable()
        ctx.call_on_close(log.disable)
    # Both paths are as the user typed them, relative to where guild
    # started: check both before changing either.
    home_dir = _checked_dir(guild_home) if guild_home else None
    work_dir = _checked_dir(cwd) if cwd else None
    if home_dir is not None:
        _set_env(ctx, "GUILD_HOME", home_dir)
    if work_dir is not None:
        prev = os.getcwd()
        os.chdir(work_dir)
        # PWD too, so a run's process sees the directory it starts in.
        _set_env(ctx, "PWD", work_dir)
        ctx.call_on_close(lambda: os.chdir(prev))
    if debug:
        from guild_core import home, log

        log.debug("guild home: %s", home.guild_home())
        log.debug("working directory: %s", os.getcwd())
        log.debug("command: %s", ctx.invoked_subcommand)


def _set_env(ctx, name: str, val: str) -> None:
    prev = os.environ.get(name)
    os.environ[name] = val

    def restore():
        if prev is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = prev

    ctx.call_on_close(restore)


class GuildGroup(click.Group):
    """Lazy subcommands, and domain errors turned into ``guild: ...``."""

    def __init__(self, *args, lazy=None, **kw):
        super().__init__(*args, **kw)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx, name):
        name = ALIASES.get(name, name) if self.lazy is COMMANDS else name
        cmd = self.commands.get(name)
        if cmd is None:
            if name not in self.lazy:
                return None
            module, attr, _help = self.lazy[name]
            cmd = getattr(importlib.import_module(module), attr)
            self.commands[name] = cmd
        if COMPLETE_VAR in os.environ:
            # A shell is completing: run ids, operations (only then).
            from guild_core.cli.completion import attach

            attach(cmd)
        return cmd

    def shell_complete(self, ctx, incomplete):
        # Command names with their listed help, importing no command.
        from click.shell_completion import CompletionItem

        items = []
        for name in self.list_commands(ctx):
            if not name.startswith(incomplete):
                continue
            if name in self.lazy:
                items.append(CompletionItem(name, help=self.lazy[name][2]))
            elif not self.commands[name].hidden:
                items.append(CompletionItem(name, help=self.commands[name].get_short_help_str()))
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][2]))
            else:
                cmd = self.commands[name]
                rows.append((name, cmd.get_short_help_str()))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        # Warnings about bad files are once per command; tests run
        # many commands in one process.
        if ctx.parent is None:
            for name in ("guild_core.run", "guild_core.opdef"):
                if name in sys.modules:
                    sys.modules[name].forget_warnings()
        try:
            return super().invoke(ctx)
        except GuildError as e:
            report(e)
            ctx.exit(1)
        except BrokenPipeError:
            # The reader went away (`guild runs | head`): nothing to say.
            _quiet_stdout()
            ctx.exit(1)
        except OSError as e:
            # A full disk, a read-only file system, a permission: every
            # store change is all or nothing, so one line says it all.
            report(GuildError(os_error_message(e)))
            ctx.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:
            # A bug, not bad input: one line, or the traceback with
            # --debug. Called in-process (tests), the exception goes on.
            if not _as_command:
                raise
            report_unexpected(e)
            ctx.exit(1)


@click.group(
    cls=GuildGroup,
    lazy=COMMANDS,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="guild", message="%(prog)s %(version)s")
@click.option("-C", "cwd", metavar="PATH", shell_complete=_complete_dir, help="Work in directory PATH, as if guild started there.")
@click.option("-H", "guild_home", metavar="PATH", shell_complete=_complete_dir, help="Use PATH as the Guild home (instead of GUILD_HOME).")
@click.option("--debug", is_flag=True, help="Log what guild does on stderr; show tracebacks of unexpected errors.")
@click.pass_context
def guild(ctx, cwd, guild_home, debug):
    """Guild: track, compare and reproduce machine-learning runs."""
    _apply_global_options(ctx, cwd, guild_home, debug)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def main() -> None:
    global _as_command
    _as_command = True
    import atexit
    import gc

    # Nothing a command made is garbage by the time it exits, but the
    # collector would look: going over a large listing's objects while
    # the interpreter shuts down costs more than the listing.
    atexit.register(gc.freeze)
    try:
        guild(prog_name="guild", complete_var=COMPLETE_VAR)
    except GuildError as e:  # raised outside a command (plugin loading)
        report(e)
        sys.exit(1)


if __name__ == "__main__":
    main()
