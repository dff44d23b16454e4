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
    :param type: one of `FLAG_TYPES` or ``None`` for auto typing.
    :param default: the value used when the flag is not given.
    :param choices: allowed values, or ``None`` for any value.
    :param required: the run is refused unless a value is given.
    :param description: one or more lines of help, shown by ``--help-op``.
    :param arg_name: the command-line option name the script expects,
        when it differs from `name` (``--arg-name value``).
    :param arg_switch: when not ``None``, the flag is a switch: passed as
        a bare ``--name`` when its value equals `arg_switch` and left out
        otherwise (argparse's ``store_true``/``store_false``).
    """

    name: str
    type: str | None = None
    default: Any = None
    choices: list[Any] | None = None
    required: bool = False
    description: str = ""
    arg_name: str | None = None
    arg_switch: Any = None

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
        return data

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> "FlagDef":
        return cls(
            name=name,
            type=data.get("type"),
            default=data.get("default"),
            choices=data.get("choices"),
            required=bool(data.get("required", False)),
            description=data.get("description") or "",
            arg_name=data.get("arg-name"),
            arg_switch=data.get("arg-switch"),
        )


@dataclass
class FlagsInfo:
    """What a flag-detection plugin learned about a script.

    :param flags: flag definitions by name, in the order the script
        declares them.
    :param dest: how flag values reach the script: ``"args"`` for
        ``--name value`` command-line arguments, ``"globals"`` for
        module-level variables. Other values are allowed when a plugin
        also answers `guild_flags_launcher` for them.
    """

    flags: dict[str, FlagDef] = field(default_factory=dict)
    dest: str = "args"
