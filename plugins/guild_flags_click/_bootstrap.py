"""Run a script up to its click command and record the command.

Run by file path, never imported::

    GUILD_ARGPARSE_FLAGS_OUT=OUT.json python _bootstrap.py SCRIPT

As the argparse plugin's bootstrap: the script runs as ``python SCRIPT``
would, and when it calls a click command (``Command.main``) the command
is written as JSON (``{"actions": [...], "subcommands": {...}}``, each
option an action) and the process ends with ``os._exit(0)``.
"""

import json
import os
import runpy
import sys

OUT_ENV = "GUILD_ARGPARSE_FLAGS_OUT"
RECORD_FAILED = 86
_SCALARS = (bool, int, float, str)


def _json_value(value):
    if value is None or isinstance(value, _SCALARS):
        return value
    return None


def _option(param):
    import click

    if not isinstance(param, click.Option):
        return {"kind": "positional"}
    longs = [o for o in param.opts if o.startswith("--")]
    if param.is_flag and not param.count:
        kind = "switch"
    elif param.count:
        kind = "skip"
    elif param.multiple or (param.nargs or 1) != 1:
        kind = "skip"
    else:
        kind = "store"
    type_ = param.type
    choices = list(type_.choices) if isinstance(type_, click.Choice) else None
    default = param.default
    if callable(default):
        default = None
    return {
        "kind": kind,
        "options": longs,
        "negative": [o for o in param.secondary_opts if o.startswith("--")],
        "dest": param.name,
        "default": _json_value(default),
        "type": getattr(type_, "name", None),
        "choices": [c for c in choices if isinstance(c, _SCALARS)] if choices else None,
        "help": param.help or "",
        "required": bool(param.required),
    }


def _command(cmd, depth=0):
    import click

    out = {"actions": [_option(p) for p in cmd.params], "subcommands": {}}
    if isinstance(cmd, click.Group) and depth < 8:
        for name, sub in cmd.commands.items():
            out["subcommands"][str(name)] = _command(sub, depth + 1)
    return out


def _install(out_path):
    import click

    def record(self, *args, **kw):
        try:
            data = _command(self)
            tmp = out_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, out_path)
            status = 0
        except BaseException as e:  # noqa: BLE001 - report, then exit anyway
            status = RECORD_FAILED
            try:
                sys.stderr.write(f"cannot record command: {type(e).__name__}: {e}\n")
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(status)

    # Command.main is what calling a command (or group) runs.
    click.Command.main = record
    base = getattr(click.core, "BaseCommand", None)
    if base is not None and base is not click.Command:
        base.main = record


def main():
    out_path = os.environ.pop(OUT_ENV)
    script = sys.argv[1]
    sys.argv = [script]
    if not getattr(sys.flags, "safe_path", False):
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    _install(out_path)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
