"""Domain errors with plain messages for the user.

The library raises these; the CLI turns them into one ``guild: ...``
line and exit status 1, in one place (``cli/main.py``).
"""


class GuildError(Exception):
    """An error the user can act on. ``str(e)`` is the message; `hint` is
    an optional second line (for example, which command to try)."""

    def __init__(self, msg: str, hint: str | None = None):
        super().__init__(msg)
        self.hint = hint


class PluginError(GuildError):
    """A plugin is broken: an unknown hook, a clashing name."""


class OpDefError(GuildError):
    """guild.yml or an operation definition is invalid."""


class FlagError(GuildError):
    """A flag value or assignment is invalid."""


class NoSuchRun(GuildError):
    pass


class RunGone(GuildError):
    """A run's directory went away (deleted, purged or moved by another
    command) while this one was working on it."""

    def __init__(self, run_id: str, path=None):
        super().__init__(
            f"run {run_id[:8]} is gone: another command deleted or moved it"
        )
        self.run_id = run_id
        self.path = path
