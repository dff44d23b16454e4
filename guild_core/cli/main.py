"""The ``guild`` command.

Subcommands load on first use, so ``guild --help`` and ``guild runs``
import only what they need. Domain errors become one ``guild: ...``
line and exit status 1 here, and only here.
"""

from __future__ import annotations

import importlib
import sys

import click

from guild_core import __version__
from guild_core.errors import GuildError

# name -> (module, attribute, short help). The help is here so listing
# commands does not import them.
COMMANDS = {
    "cat": ("guild_core.cli.files", "cat", "Show contents of a run file."),
    "check": ("guild_core.cli.info", "check", "Check the Guild setup."),
    "compare": ("guild_core.cli.compare", "compare", "Compare run flags, scalars and attributes."),
    "diff": ("guild_core.cli.diff", "diff", "Diff two runs."),
    "export": ("guild_core.cli.archive", "export", "Export runs to a directory or zip file."),
    "import": ("guild_core.cli.archive", "import_", "Import runs from a directory or zip file."),
    "ls": ("guild_core.cli.files", "ls", "List run files."),
    "operations": ("guild_core.cli.info", "operations", "Show operations in guild.yml."),
    "plugins": ("guild_core.cli.info", "plugins_", "Show installed plugins."),
    "run": ("guild_core.cli.run", "run", "Run an operation."),
    "runs": ("guild_core.cli.runs", "runs", "Show or manage runs."),
    "select": ("guild_core.cli.selectcmd", "select", "Print the id of a selected run."),
    "stop": ("guild_core.cli.stop", "stop", "Stop one or more runs."),
    "watch": ("guild_core.cli.stop", "watch", "Watch run output."),
}
ALIASES = {"ops": "operations"}


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


class GuildGroup(click.Group):
    """Lazy subcommands, and domain errors turned into ``guild: ...``."""

    def __init__(self, *args, lazy=None, **kw):
        super().__init__(*args, **kw)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx, name):
        name = ALIASES.get(name, name) if self.lazy is COMMANDS else name
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        module, attr, _help = self.lazy[name]
        cmd = getattr(importlib.import_module(module), attr)
        self.commands[name] = cmd
        return cmd

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


@click.group(
    cls=GuildGroup,
    lazy=COMMANDS,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="guild", message="%(prog)s %(version)s")
@click.pass_context
def guild(ctx):
    """Guild: track, compare and reproduce machine-learning runs."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def main() -> None:
    try:
        guild(prog_name="guild")
    except GuildError as e:  # raised outside a command (plugin loading)
        report(e)
        sys.exit(1)


if __name__ == "__main__":
    main()
