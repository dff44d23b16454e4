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
