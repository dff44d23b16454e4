"""Flag values: ``NAME=VALUE`` parsing, typing, checking and formatting.

Command-line values are typed the way Guild AI types them: int, then
float, then YAML (``[1, 2]``, ``yes``, ``null``), else the string as
given. Flag functions such as ``uniform[0:1]`` stay strings here; the
batch driver interprets them.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import FlagError
from .flagdefs import FlagDef

FLAG_FUNCTION_P = re.compile(r"^([a-zA-Z0-9_\-\.]*)\[(.*)\]$")
_WORD_P = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}
_NUMBER_P = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def decode_value(s: str, flag_type: str | None = None) -> Any:
    """Type a command-line string value, honouring `flag_type` if given.

    Raises `ValueError` when `s` cannot be a value of `flag_type`.
    Value lists (``[1, 2]``) and flag functions (``uniform[0:1]``) are
    decoded as such whatever the type; their items are typed by `coerce`.
    """
    if s[:1] in ("[", "'", '"', "{") or (s[:1].isalpha() and FLAG_FUNCTION_P.match(s)):
        val = decode_auto(s)
        if isinstance(val, (list, dict)) or _is_flag_function(val):
            return val
        if flag_type in ("string", "path", "existing-path") and isinstance(val, str):
            return val
    if flag_type in ("string", "path", "existing-path"):
        return s
    if flag_type == "int":
        return int(s)
    if flag_type == "float":
        return float(s)
    if flag_type == "number":
        return _number(s)
    if flag_type == "boolean":
        val = _yaml(s)
        if isinstance(val, bool):
            return val
        if isinstance(val, (int, float)):
            return bool(val)
        raise ValueError(f"invalid boolean {s!r}")
    return decode_auto(s)


def decode_auto(s: str) -> Any:
    if s == "":
        return s
    try:
        return _number(s)
    except ValueError:
        pass
    if _WORD_P.match(s) and s.lower() not in _YAML_WORDS:
        return s  # the common case, without importing YAML
    m = FLAG_FUNCTION_P.match(s)
    if m and (m.group(1) or ":" in m.group(2)):
        # A flag function (``uniform[0:1]``, ``[1:10]``): YAML would read
        # ``[1:10]`` as a list holding a sexagesimal number.
        return s
    try:
        val = _yaml(s)
    except ValueError:
        return s
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        # YAML 1.1 reads "1:30" as 90 and "0x10" as 16: keep what was typed.
        return val if _NUMBER_P.match(s) else s
    if isinstance(val, (str, bool, list, dict)) or val is None:
        return val
    return s


def _number(s: str) -> int | float:
    try:
        return int(s)
    except ValueError:
        return float(s)


# How deeply a command-line value's lists and mappings may nest. YAML's
# parser recurses a few frames a level and would hit Python's recursion
# limit a few hundred levels in.
MAX_VALUE_DEPTH = 100


def _yaml(s: str) -> Any:
    import yaml

    if _depth(s) > MAX_VALUE_DEPTH:
        raise ValueError(f"nests too deeply (more than {MAX_VALUE_DEPTH} levels)")
    try:
        return yaml.safe_load(s)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


def _depth(s: str) -> int:
    """The deepest nesting of ``[``/``{`` in `s` (quotes not considered:
    this only has to be an upper bound)."""
    depth = deepest = 0
    for c in s:
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(depth - 1, 0)
    return deepest


def encode_value(val: Any) -> str:
    """Format a value so `decode_value` reads it back (for argv, env,
    labels and previews)."""
    if val is True:
        return "yes"
    if val is False:
        return "no"
    if val is None:
        return "null"
    if isinstance(val, list):
        return "[" + ", ".join(_encode_list_item(v) for v in val) + "]"
    if isinstance(val, dict):
        # Guild AI's flow style, keys sorted: {a: 1, b: [2, 3]}.
        items = sorted(val.items(), key=lambda kv: str(kv[0]))
        return "{" + ", ".join(f"{_encode_list_item(k)}: {_encode_list_item(v)}" for k, v in items) + "}"
    if isinstance(val, float):
        return _format_float(val)
    if isinstance(val, str):
        return val
    return str(val)


def _encode_list_item(val: Any) -> str:
    encoded = encode_value(val)
    if isinstance(val, str) and ("," in encoded or decode_auto(encoded) != val):
        return repr(encoded)
    return encoded


def _format_float(val: float) -> str:
    s = repr(val)
    if s in ("inf", "-inf", "nan"):
        return s
    return s


def parse_assigns(args: list[str]) -> dict[str, str]:
    """Split ``NAME=VALUE`` arguments; values stay strings for now."""
    assigns: dict[str, str] = {}
    bad = [arg for arg in args if "=" not in arg or arg.startswith("=")]
    if bad:
        raise FlagError(
            "invalid argument(s): " + ", ".join(bad) + " (expected NAME=VALUE)"
        )
    for arg in args:
        name, val = arg.split("=", 1)
        assigns[name] = val
    return assigns


def resolve_flag_values(
    flagdefs: dict[str, FlagDef],
    assigns: dict[str, str],
    force: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Type, check and merge user assignments over flag defaults.

    Returns ``(flags, user_flags)``. Raises `FlagError` on an unknown
    flag (unless `force`), a value of the wrong type, a value not among
    the choices, or a missing required flag.
    """
    user_flags: dict[str, Any] = {}
    aliases = {fd.alias: n for n, fd in flagdefs.items() if fd.alias and fd.alias != n}
    for name, raw in list(assigns.items()):
        if name in aliases and name not in flagdefs:
            # Guild AI's flag alias: `alias=VAL` sets the flag it names.
            if aliases[name] in assigns:
                raise FlagError(f"flag '{aliases[name]}' is given twice (also as its alias '{name}')")
            assigns = {(aliases[name] if k == name else k): v for k, v in assigns.items()}
    for name, raw in assigns.items():
        flagdef = flagdefs.get(name)
        if flagdef is None and not force:
            raise FlagError(f"unsupported flag '{name}'")
        if _depth(raw) > MAX_VALUE_DEPTH:
            raise FlagError(f"value of flag '{name}' nests too deeply (more than {MAX_VALUE_DEPTH} levels)")
        if flagdef is None:
            user_flags[name] = decode_auto(raw)
        else:
            user_flags[name] = coerce(flagdef, raw)
        if isinstance(user_flags[name], list) and not user_flags[name] and not (
            flagdef and isinstance(flagdef.default, list) and not flagdef.batch_default
        ):
            # NAME=[...] lists the values of a batch, and a batch of no
            # trials is a mistake (Guild AI 0.9 runs nothing and exits 0).
            # A list-valued flag (its default is a list) is different:
            # the list is its value, so [] is an empty list passed as is.
            raise FlagError(f"flag '{name}' has an empty list of values")
    for name, flagdef in flagdefs.items():
        if flagdef.batch_default and name not in user_flags:
            # guild.yml's list default: the values of a batch, as if given.
            user_flags[name] = coerce(flagdef, flagdef.default)
    flags: dict[str, Any] = {}
    for name, flagdef in flagdefs.items():
        if name in user_flags:
            flags[name] = user_flags[name]
        else:
            # Defaults are checked as given values are (Guild AI does).
            flags[name] = _check_path(flagdef, flagdef.default)
            _check_range(flagdef, flagdef.default)
    for name, val in user_flags.items():
        flags.setdefault(name, val)
    _apply_choice_flags(flagdefs, flags, user_flags)
    missing = [
        flagdefs[name]
        for name in flagdefs
        if flagdefs[name].required and flags.get(name) is None
    ]
    if missing:
        names = ", ".join(f.name for f in missing)
        raise FlagError(
            f"missing required flag(s): {names}",
            hint="Run the command again with these flags specified as NAME=VALUE.",
        )
    return flags, user_flags


def _apply_choice_flags(flagdefs: dict[str, FlagDef], flags: dict[str, Any], user_flags: dict[str, Any]) -> None:
    """A chosen value's ``flags:`` set other flags the user did not give."""
    for name, flagdef in flagdefs.items():
        if not flagdef.choice_flags or isinstance(flags.get(name), list):
            continue
        val = flags.get(name)
        key = repr(val) if isinstance(val, (list, dict)) else val
        for other, other_val in (flagdef.choice_flags.get(key) or {}).items():
            if other not in user_flags:
                flags[other] = other_val


def coerce(flagdef: FlagDef, raw: Any) -> Any:
    """Type one value (a command-line string or a YAML value) for a flag."""
    if isinstance(raw, str) and raw in flagdef.choice_aliases:
        return flagdef.choice_aliases[raw]
    if flagdef.arg_split not in (None, False) and isinstance(raw, str) and raw[:1] != "[":
        # Several arguments in one value (``arg-split``): each part is a
        # value of the flag's type; the value stays as given.
        for part in _split_parts(raw, flagdef.arg_split):
            coerce(FlagDef(flagdef.name, type=flagdef.type, min=flagdef.min, max=flagdef.max), part)
        return raw
    if isinstance(raw, str):
        try:
            val = decode_value(raw, flagdef.type)
        except ValueError:
            raise FlagError(
                f"invalid value {raw} for {flagdef.name}: "
                f"expected {_type_desc(flagdef.type)}"
            ) from None
    else:
        val = raw
    if isinstance(val, list):
        # A value list: each item is a value of the flag (a batch).
        return [coerce(flagdef, item) for item in val]
    if not _is_flag_function(val):
        val = _coerce_typed(flagdef, val)
        _check_range(flagdef, val)
        val = _check_path(flagdef, val)
    if flagdef.choices is not None and val not in flagdef.choices and not flagdef.allow_other:
        if not _is_flag_function(val):
            choices = ", ".join(encode_value(c) for c in flagdef.choices)
            raise FlagError(
                f"invalid value {encode_value(val)} for {flagdef.name}: "
                f"supported values are {choices}"
            )
    return val


def _split_parts(raw: str, split: Any) -> list[str]:
    if split is True or split == "shlex":
        import shlex

        try:
            return shlex.split(raw)
        except ValueError:
            return raw.split()
    return [part for part in raw.split(str(split)) if part]


def _check_range(flagdef: FlagDef, val: Any) -> None:
    """Guild AI's `min`/`max` check and message."""
    if not isinstance(val, (int, float)) or isinstance(val, bool):
        return
    if flagdef.min is not None and _lt(val, flagdef.min):
        raise FlagError(f"invalid value {encode_value(val)} for {flagdef.name}: out of range (less than min {encode_value(flagdef.min)})")
    if flagdef.max is not None and _lt(flagdef.max, val):
        raise FlagError(f"invalid value {encode_value(val)} for {flagdef.name}: out of range (greater than max {encode_value(flagdef.max)})")


def _lt(a: Any, b: Any) -> bool:
    try:
        return a < b
    except TypeError:
        return False


def _check_path(flagdef: FlagDef, val: Any) -> Any:
    """`path` and `existing-path` values are absolute, from the current
    directory, as Guild AI makes them; an existing path must exist."""
    if flagdef.type not in ("path", "existing-path") or not isinstance(val, str) or not val:
        return val
    import os

    path = os.path.abspath(os.path.expanduser(val))
    if flagdef.type == "existing-path" and not os.path.exists(path):
        raise FlagError(f"invalid value {val} for {flagdef.name}: {path} does not exist")
    return path


def _coerce_typed(flagdef: FlagDef, val: Any) -> Any:
    t = flagdef.type
    if val is None or t is None or t == "auto":
        return val
    try:
        if t == "float" and isinstance(val, (int, float)) and not isinstance(val, bool):
            return float(val)
        if t == "int" and isinstance(val, int) and not isinstance(val, bool):
            return val
        if t == "int" and isinstance(val, float) and val.is_integer():
            return int(val)
        if t == "number" and isinstance(val, (int, float)) and not isinstance(val, bool):
            return val
        if t == "boolean" and isinstance(val, bool):
            return val
        if t in ("string", "path", "existing-path"):
            return val if isinstance(val, str) else encode_value(val)
        if isinstance(val, str):
            return decode_value(val, t)
    except ValueError:
        pass
    raise FlagError(
        f"invalid value {encode_value(val)} for {flagdef.name}: "
        f"expected {_type_desc(t)}"
    )


def _is_flag_function(val: Any) -> bool:
    return isinstance(val, str) and bool(FLAG_FUNCTION_P.match(val))


def _type_desc(flag_type: str | None) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "number": "a number",
        "boolean": "a boolean (yes/no, true/false)",
    }.get(flag_type or "", f"a {flag_type} value")


_REF_P = re.compile(r"\$\{([^}]+)\}")


def label_value(val: Any) -> str:
    """A value as Guild AI shows it in a label: YAML's spelling (``''``
    for an empty string, ``1.0e-05``), decimals cut to five digits, and
    a string holding a space quoted."""
    if isinstance(val, (str, float)) and not isinstance(val, bool):
        from . import yamlutil

        encoded = yamlutil.encode(val)
        if isinstance(val, float):
            encoded = re.sub(r"\.([0-9]{6,})", lambda m: "." + m.group(1)[:5], encoded)
        elif " " in encoded and encoded[:1] not in ("'", '"'):
            encoded = repr(encoded)
        return encoded
    return encode_value(val)


def format_label(template: str | None, flags: dict[str, Any], values: dict[str, str] | None = None) -> str:
    """A run label: `template` with ``${flag}``, ``${default_label}``
    (every set flag as ``name=value``) and any of `values` (``label``,
    the current label, for ``runs label``) filled in; unknown names are
    empty. No template: the default label."""
    base = flag_label({k: v for k, v in flags.items() if v is not None})
    if not template:
        return base

    def repl(m):
        name = m.group(1)
        if values and name in values:
            return values[name]
        if name == "default_label":
            return base
        if name in flags:
            return label_value(flags[name])
        return ""

    return _REF_P.sub(repl, template).strip()


def flag_label(flags: dict[str, Any], names: list[str] | None = None) -> str:
    """Guild's default run label: ``x=0.1 y=2 z=a`` for the given names
    (all flags when `names` is None), sorted by name."""
    items = sorted(flags.items()) if names is None else [
        (name, flags[name]) for name in sorted(names) if name in flags
    ]
    return " ".join(f"{name}={label_value(val)}" for name, val in items)


def dotted(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted names: ``{"a": {"b": 1}}`` is ``{"a.b": 1}``
    (how flags in a config file or a module dict are named)."""
    out: dict[str, Any] = {}
    for key, val in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict) and val:
            out.update(dotted(val, name + "."))
        else:
            out[name] = val
    return out


def set_dotted(mapping: dict[str, Any], name: str, val: Any) -> None:
    """Set ``a.b`` in nested mappings, making the levels that are missing."""
    node = mapping
    parts = name.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = val
