"""Run a script up to its argument parsing and record the parser.

Run by file path, never imported::

    GUILD_ARGPARSE_FLAGS_OUT=OUT.json python _bootstrap.py SCRIPT

The script runs as ``python SCRIPT`` would run it (``__name__ ==
"__main__"``, ``sys.argv == [SCRIPT]``, the script's directory first on
``sys.path``). When it calls ``ArgumentParser.parse_args`` (or
``parse_known_args`` and the intermixed variants) the parser's actions
are written as JSON to the file named by ``GUILD_ARGPARSE_FLAGS_OUT``
and the process ends at once with ``os._exit(0)``: nothing after the
parse call runs, no ``atexit`` handler or ``finally`` block either.

The output file exists only when the parser was recorded. Values that
JSON cannot hold (a ``Path`` default, a custom ``type`` callable) are
recorded as ``None`` / ``"other"``. The parent process maps actions to
flag definitions (`guild_flags_argparse._detect`).

Only the standard library is used: this module must not change what
the script sees beyond argparse's two methods.
"""

import argparse
import json
import os
import runpy
import sys

OUT_ENV = "GUILD_ARGPARSE_FLAGS_OUT"

# Exit status when recording the parser itself failed.
RECORD_FAILED = 86

_SCALARS = (bool, int, float, str)


def _json_value(value):
    """`value` as a JSON scalar or list of scalars, else None."""
    if value is None:
        return None
    for cls in _SCALARS:
        if isinstance(value, cls):
            return cls(value)
    if isinstance(value, (list, tuple)):
        if all(item is None or isinstance(item, _SCALARS) for item in value):
            return [_json_value(item) for item in value]
    return None


def _choices(choices):
    if choices is None:
        return None
    try:
        values = list(choices)
    except TypeError:
        return None
    items = [_json_value(v) for v in values]
    if any(item is None or isinstance(item, list) for item in items):
        return None
    return items


def _type_name(type_):
    if type_ is None:
        return None
    if type_ is int:
        return "int"
    if type_ is float:
        return "float"
    if type_ is str:
        return "str"
    return "other"


def _kind(action):
    if not action.option_strings:
        return "positional"
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return "skip"
    # store_true/store_false are store_const subclasses: test them first.
    if isinstance(action, argparse._StoreTrueAction):
        return "store_true"
    if isinstance(action, argparse._StoreFalseAction):
        return "store_false"
    boolean_optional = getattr(argparse, "BooleanOptionalAction", None)
    if boolean_optional is not None and isinstance(action, boolean_optional):
        return "boolean_optional"
    if isinstance(action, argparse._CountAction):
        return "count"
    if isinstance(
        action,
        (argparse._StoreConstAction, argparse._AppendConstAction, argparse._SubParsersAction),
    ):
        return "skip"
    if action.nargs == 0:
        # A custom action that takes no value: not a name=value flag.
        return "skip"
    return "store"


def _help(action, prog):
    """The action's help with ``%(default)s`` and friends expanded, as
    argparse's help formatter does."""
    text = action.help
    if not text or text == argparse.SUPPRESS:
        return None
    try:
        params = dict(vars(action), prog=prog)
        for name in list(params):
            if params[name] is argparse.SUPPRESS:
                del params[name]
        for name in list(params):
            if hasattr(params[name], "__name__"):
                params[name] = params[name].__name__
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        return str(text % params)
    except Exception:
        return str(text)


def _action_info(action, prog):
    default = action.default
    suppressed = default is argparse.SUPPRESS
    return {
        "kind": _kind(action),
        "options": list(action.option_strings),
        "dest": action.dest if action.dest != argparse.SUPPRESS else None,
        "default": None if suppressed else _json_value(default),
        "type": _type_name(action.type),
        "choices": _choices(action.choices),
        "help": _help(action, prog),
        "required": bool(action.required),
        "nargs": action.nargs if isinstance(action.nargs, (int, str)) else None,
    }


def _subcommands(parser, depth=0):
    """``{name: {"actions": [...], "subcommands": {...}}}`` of the
    parser's sub-parsers (``add_subparsers``), nested."""
    out = {}
    if depth > 8:
        return out
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in (action.choices or {}).items():
            out[str(name)] = {
                "actions": [_action_info(a, sub.prog) for a in sub._actions],
                "subcommands": _subcommands(sub, depth + 1),
            }
    return out


def _install(out_path):
    parser_cls = argparse.ArgumentParser

    def record(self, method):
        try:
            data = {
                "method": method,
                "prog": self.prog,
                "actions": [_action_info(a, self.prog) for a in self._actions],
                "subcommands": _subcommands(self),
            }
            tmp = out_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, out_path)
            status = 0
        except BaseException as e:  # noqa: BLE001 - report, then exit anyway
            status = RECORD_FAILED
            try:
                sys.stderr.write(f"cannot record parser: {type(e).__name__}: {e}\n")
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(status)

    def intercept(method):
        def patched(self, *args, **kw):
            record(self, method)

        patched.__name__ = method
        return patched

    for method in (
        "parse_args",
        "parse_known_args",
        "parse_intermixed_args",
        "parse_known_intermixed_args",
    ):
        if hasattr(parser_cls, method):
            setattr(parser_cls, method, intercept(method))


def main():
    out_path = os.environ.pop(OUT_ENV)
    script = sys.argv[1]
    sys.argv = [script]
    if not getattr(sys.flags, "safe_path", False):
        # As for ``python SCRIPT``: the script's directory replaces ours.
        # (With -P / PYTHONSAFEPATH neither is on the path.)
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    _install(out_path)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
