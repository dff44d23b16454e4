"""Flag definitions: what an operation accepts and how values reach it.

These types are part of the plugin API: flag-detection plugins return a
`FlagsInfo`, optimizers receive `FlagDef`s to decide how to sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Flag types understood by the core. `None` means "auto": the value is
# typed the way a command-line value is (int, then float, then YAML).
FLAG_TYPES = ("string", "int", "float", "number", "boolean", "path", "existing-path")


@dataclass
class FlagDef:
    """One flag an operation accepts.

    :param name: the flag name used on the command line (``name=value``).
    :param type: one of `FLAG_TYPES`, ``"auto"`` (values typed as on the
        command line, never inferred from the default: Guild AI's
        ``type: auto``) or ``None`` (the default's type, else auto).
    :param default: the value used when the flag is not given.
    :param choices: allowed values, or ``None`` for any value.
    :param required: the run is refused unless a value is given.
    :param description: one or more lines of help, shown by ``--help-op``.
    :param arg_name: the command-line option name the script expects,
        when it differs from `name` (``--arg-name value``).
    :param arg_switch: when not ``None``, the flag is a switch: passed as
        a bare ``--name`` when its value equals `arg_switch` and left out
        otherwise (argparse's ``store_true``/``store_false``).
    :param min: the smallest value accepted (and the low end of the
        search range an optimizer uses when no range is given).
    :param max: the largest value accepted (the high end likewise).
    :param distribution: how an optimizer samples ``min``..``max``
        (``uniform``, ``log-uniform``...), as guild.yml's ``distribution``.
    :param allow_other: a value outside `choices` is accepted too.
    :param choice_aliases: ``alias -> value`` for choices given as
        ``{value: V, alias: A}``: ``name=A`` means ``name=V``.
    :param choice_flags: ``value -> {flag: value}``: choosing a value sets
        those other flags unless given (guild.yml's choice ``flags:``).
    :param arg_split: split the value into several arguments (``yes``:
        on whitespace, or on the given separator), ``--name a b c``.
    :param arg_skip: never pass the flag as an argument.
    :param null_label: how a null value is shown (help, labels).
    :param alias: another name for the flag on the command line.
    :param batch_default: guild.yml gave a list as the default: a run
        that leaves the flag alone is a batch over it, as in Guild AI (a
        list a script assigns is a list-valued flag's value instead).
    """

    name: str
    type: str | None = None
    default: Any = None
    choices: list[Any] | None = None
    required: bool = False
    description: str = ""
    arg_name: str | None = None
    arg_switch: Any = None
    min: Any = None
    max: Any = None
    distribution: str | None = None
    allow_other: bool = False
    choice_aliases: dict[str, Any] = field(default_factory=dict)
    choice_flags: dict[Any, dict[str, Any]] = field(default_factory=dict)
    arg_split: Any = None
    arg_skip: bool = False
    null_label: str | None = None
    alias: str | None = None
    batch_default: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"default": self.default}
        if self.type:
            data["type"] = self.type
        if self.choices is not None:
            data["choices"] = list(self.choices)
        if self.required:
            data["required"] = True
        if self.description:
            data["description"] = self.description
        if self.arg_name:
            data["arg-name"] = self.arg_name
        if self.arg_switch is not None:
            data["arg-switch"] = self.arg_switch
        for key, val in (
            ("min", self.min), ("max", self.max), ("distribution", self.distribution),
            ("arg-split", self.arg_split), ("null-label", self.null_label), ("alias", self.alias),
        ):
            if val is not None:
                data[key] = val
        if self.allow_other:
            data["allow-other"] = True
        if self.arg_skip:
            data["arg-skip"] = True
        return data

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> "FlagDef":
        """A flag from guild.yml's shape (``arg-name``, choices as values
        or ``{value, alias, flags}`` mappings...)."""
        choices = data.get("choices")
        aliases: dict[str, Any] = {}
        choice_flags: dict[Any, dict[str, Any]] = {}
        if choices is not None:
            values = []
            for choice in choices:
                if isinstance(choice, dict):
                    val = choice.get("value")
                    if choice.get("alias") is not None:
                        aliases[str(choice["alias"])] = val
                    if isinstance(choice.get("flags"), dict):
                        choice_flags[_hashable(val)] = dict(choice["flags"])
                    values.append(val)
                else:
                    values.append(choice)
            choices = values
        return cls(
            name=name,
            type=data.get("type"),
            default=data.get("default"),
            choices=choices,
            required=bool(data.get("required", False)),
            description=data.get("description") or "",
            arg_name=data.get("arg-name"),
            arg_switch=data.get("arg-switch"),
            min=data.get("min"),
            max=data.get("max"),
            distribution=data.get("distribution"),
            allow_other=bool(data.get("allow-other", False)),
            choice_aliases=aliases,
            choice_flags=choice_flags,
            arg_split=data.get("arg-split"),
            arg_skip=bool(data.get("arg-skip", False)),
            null_label=data.get("null-label"),
            alias=data.get("alias"),
        )


def _hashable(val: Any) -> Any:
    return repr(val) if isinstance(val, (list, dict)) else val


@dataclass
class FlagsInfo:
    """What a flag-detection plugin learned about a script.

    :param flags: flag definitions by name, in the order the script
        declares them.
    :param dest: how flag values reach the script: ``"args"`` for
        ``--name value`` command-line arguments, ``"globals"`` for
        module-level variables. Other values are allowed when a plugin
        also answers `guild_flags_launcher` for them.
    :param mappings: module-level mappings the script defines, by name
        (``params = {"lr": 0.1}``): with guild.yml's ``flags-dest:
        global:params`` their keys (nested ones as dotted names) are the
        operation's flags.
    :param subcommands: the script's sub-commands by name (argparse
        sub-parsers), each with its own flags; a guild.yml ``main`` that
        names one (``main: train fit``) gets that one's flags.
    """

    flags: dict[str, FlagDef] = field(default_factory=dict)
    dest: str = "args"
    mappings: dict[str, dict[str, Any]] = field(default_factory=dict)
    subcommands: dict[str, "FlagsInfo"] = field(default_factory=dict)

    def for_args(self, args: list[str]) -> "FlagsInfo":
        """The flags of the sub-command that leading `args` name
        (``main: train fit`` gives the ``fit`` sub-command's flags, as
        Guild AI imports them); this one when they name none."""
        info = self
        for arg in args:
            if arg.startswith("-") or arg not in info.subcommands:
                break
            info = info.subcommands[arg]
        return info
