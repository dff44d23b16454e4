"""Run a Python script with flag values as its module-level variables.

Usage (guild runs this in the run directory)::

    python -um guild_flags_globals.launch SCRIPT [ARG ...] [--name value ...]

Each ``--name value`` is a flag. When the script assigns a literal to
``name`` at module level (see `_literals`), every such assignment is
rewritten to the flag value, typed like the script's literal: a string
literal keeps the value as given (``--name 1`` gives ``"1"``), an int or
float literal makes it a number as written (``1`` an int, ``1.0`` a
float, as Guild AI gives it), a boolean literal reads ``yes``/``no``,
``true``/``false``, ``on``/``off``, ``1``/``0``; ``None`` and list
literals, and values that do not fit the literal's type (``--epochs
0.5`` for ``epochs = 10``: guild.yml may type a flag differently), are
typed like any command-line value (`guild_core.flags.decode_auto`).
Rewriting, rather than pre-setting globals, is what keeps the script's
own ``lr = 0.1`` from overwriting the flag value. Flags the script does
not assign are set as globals before it runs.

``ARG ...`` before the first ``--name`` (from a guild.yml ``main`` with
arguments) go to the script's ``sys.argv`` after the script path.
``--name=value`` is accepted too. A ``--name`` with no value (at the end,
or followed by another ``--x``) is a switch, true, as Guild AI reads it
(``main: evaluate --test`` sets ``test = True``).

The script then runs as ``python SCRIPT`` would run it: ``__name__`` is
``"__main__"`` in a fresh module installed as ``sys.modules["__main__"]``,
``__file__`` is its absolute path, ``sys.argv[0]`` the script as given,
``sys.path[0]`` its directory; tracebacks show the script's own line
numbers (the launcher's frames are left out), an uncaught exception
exits 1 and ``sys.exit(n)`` exits ``n``.

Known limit: ``multiprocessing`` with the ``spawn`` start method re-runs
the script in children without the launcher, so module-level flag
values there are the script's defaults.

This module is imported at every run's start-up: it imports only the
standard modules Python loads anyway plus `ast`; YAML (through
`guild_core.flags`) only when a value needs auto typing.
"""

from __future__ import annotations

import ast
import os
import sys
import types
# typing costs milliseconds at every run's start-up; annotations are
# strings here, so it is only needed by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

from guild_flags_globals import _literals

PROG = "guild_flags_globals.launch"

_TRUE = frozenset(("yes", "true", "on", "y", "1"))
_FALSE = frozenset(("no", "false", "off", "n", "0"))


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> tuple[str, list[str], dict[str, str]]:
    """Split ``SCRIPT [ARG ...] [--name value ...]`` into the script,
    its extra arguments and the flag values (strings, last one wins)."""
    if not argv:
        raise UsageError("missing SCRIPT")
    script, rest = argv[0], argv[1:]
    extra: list[str] = []
    while rest and not _is_flag(rest[0]):
        extra.append(rest.pop(0))
    flags: dict[str, str] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        if not _is_flag(arg):
            raise UsageError(f"unexpected argument {arg!r} (expected --NAME VALUE)")
        name = arg[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            flags[name] = value
            i += 1
            continue
        if i + 1 >= len(rest) or _is_flag(rest[i + 1]):
            # A switch, as Guild AI reads one (``main: eval --test``).
            flags[name] = "true"
            i += 1
            continue
        flags[name] = rest[i + 1]
        i += 2
    return script, extra, flags


def _is_flag(arg: str) -> bool:
    return arg.startswith("--") and len(arg) > 2


def decode(raw: str, original: Any) -> Any:
    """Type a command-line value like the script's literal `original`."""
    if isinstance(original, str):
        return raw
    if isinstance(original, bool):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    elif isinstance(original, (int, float)):
        # A number, as given: 1 is an int, 1.0 and 1e-3 floats.
        for typ in (int, float):
            try:
                return typ(raw)
            except ValueError:
                pass
    return decode_auto(raw)


def decode_auto(raw: str) -> Any:
    # Imported here: guild_core.flags costs a few milliseconds and YAML
    # more; most runs only have typed literals.
    from guild_core.flags import decode_auto

    return decode_auto(raw)


def apply_flags(tree: ast.Module, flags: dict[str, str]) -> dict[str, Any]:
    """Rewrite `tree`'s assignments of the flags in place; return the
    values of flags the script does not assign, to set as globals."""
    assigns = _literals.flag_assigns(tree)
    unassigned: dict[str, Any] = {}
    for name, raw in flags.items():
        stmts = assigns.get(name)
        if not stmts:
            unassigned[name] = decode_auto(raw)
            continue
        value = decode(raw, _literals.literal_value(stmts[-1].value))
        for stmt in stmts:
            stmt.value = _literals.value_node(value, stmt.value)
    ast.fix_missing_locations(tree)
    return unassigned


def apply_mapping_flags(tree: ast.Module, name: str, flags: dict[str, str]) -> dict[str, Any]:
    """``flags-dest: global:NAME``: each flag is a dotted key of the
    module's dict NAME. Its literal assignments are rewritten with the
    values (typed like the value they replace); with no such assignment
    NAME is set, as a dict of the flags, before the script runs."""
    from guild_core.flags import dotted, set_dotted

    stmts = [
        stmt for stmt in tree.body
        if _literals._target_name(stmt) == name and isinstance(getattr(stmt, "value", None), ast.Dict)
    ]
    mapping = _literals.mapping_value(stmts[-1].value) if stmts else _literals.NOT_LITERAL
    if mapping is _literals.NOT_LITERAL:
        values: dict[str, Any] = {}
        for key, raw in flags.items():
            set_dotted(values, key, decode_auto(raw))
        return {name: values}
    originals = dotted(mapping)
    for key, raw in flags.items():
        set_dotted(mapping, key, decode(raw, originals.get(key)))
    for stmt in stmts:
        stmt.value = _literals.value_node(mapping, stmt.value)  # type: ignore[union-attr]
    ast.fix_missing_locations(tree)
    return {}


def apply_namespace_flags(tree: ast.Module, name: str, flags: dict[str, str]) -> dict[str, Any]:
    """``flags-dest: namespace:NAME``: each flag is a dotted attribute
    of the module's ``NAME = SimpleNamespace(...)``. The keywords of its
    assignments are rewritten (typed like the values they replace), so
    the script's own SimpleNamespace builds it; with no such assignment
    NAME is set, as nested `types.SimpleNamespace`, before the script
    runs."""
    from guild_core.flags import set_dotted

    stmts = [
        stmt for stmt in tree.body
        if _literals._target_name(stmt) == name and _literals.is_namespace_call(getattr(stmt, "value", None))
    ]
    if not stmts or _literals.namespace_value(stmts[-1].value) is _literals.NOT_LITERAL:  # type: ignore[union-attr, arg-type]
        values: dict[str, Any] = {}
        for key, raw in flags.items():
            set_dotted(values, key, decode_auto(raw))
        return {name: _namespace(values)}
    for stmt in stmts:
        call = stmt.value  # type: ignore[union-attr]
        for key, raw in flags.items():
            _set_keyword(call, key.split("."), raw)  # type: ignore[arg-type]
    ast.fix_missing_locations(tree)
    return {}


def _set_keyword(call: ast.Call, path: list[str], raw: str) -> None:
    head, rest = path[0], path[1:]
    for kw in call.keywords:
        if kw.arg != head:
            continue
        if rest and _literals.is_namespace_call(kw.value):
            _set_keyword(kw.value, rest, raw)  # type: ignore[arg-type]
            return
        if rest:
            from guild_core.flags import set_dotted

            mapping = ast.literal_eval(kw.value)
            if isinstance(mapping, dict):
                set_dotted(mapping, ".".join(rest), decode_auto(raw))
                kw.value = _literals.value_node(mapping, kw.value)
            return
        kw.value = _literals.value_node(decode(raw, ast.literal_eval(kw.value)), kw.value)
        return
    value: Any = decode_auto(raw)
    for part in reversed(rest):
        value = {part: value}
    call.keywords.append(ast.keyword(arg=head, value=_literals.value_node(value, call)))


def _namespace(values: dict[str, Any]) -> Any:
    return types.SimpleNamespace(**{
        k: _namespace(v) if isinstance(v, dict) else v for k, v in values.items()
    })


def main(argv: list[str] | None = None) -> None:
    try:
        script, extra, flags = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        _usage_error(str(e))
    path = os.path.abspath(script)
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        sys.stderr.write(f"{PROG}: can't open file {script!r}: {e.strerror or e}\n")
        sys.exit(2)
    try:
        tree = ast.parse(source, path)
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes
        _script_error(e)
    dest = os.environ.get("FLAGS_DEST", "")
    if dest.startswith(("global:", "dict:")):
        init_globals = apply_mapping_flags(tree, dest.split(":", 1)[1], flags)
    elif dest.startswith("namespace:"):
        init_globals = apply_namespace_flags(tree, dest.split(":", 1)[1], flags)
    else:
        init_globals = apply_flags(tree, flags)
    try:
        # dont_inherit: this module's __future__ imports are not the script's.
        code = compile(tree, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:  # `return` outside a function...
        _script_error(e)
    _run(code, path, script, extra, init_globals)


def _script_error(e: BaseException) -> NoReturn:
    # As `python SCRIPT` reports it: the error alone, no launcher frames.
    # (The default hook prints the exception's own __traceback__.)
    e.__traceback__ = None
    sys.excepthook(type(e), e, None)
    sys.exit(1)


def _run(
    code: types.CodeType,
    path: str,
    script: str,
    extra: list[str],
    init_globals: dict[str, Any],
) -> None:
    import builtins
    from importlib.machinery import SourceFileLoader

    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace.update(init_globals)
    namespace.update(
        __file__=path,
        __cached__=None,
        __builtins__=builtins,
        __loader__=SourceFileLoader("__main__", path),
    )
    # A reference to this module, which the script's replaces as
    # __main__, keeps it alive while this function runs.
    launcher = sys.modules.get("__main__")  # noqa: F841
    sys.modules["__main__"] = module
    sys.argv[:] = [script, *extra]
    sys.path[0] = os.path.dirname(path)
    failed = False
    if os.environ.get("GUILD_DEBUG_SCRIPT"):
        # Under guild run --break-on-error: pdb takes the exception.
        exec(code, namespace)
        return
    try:
        exec(code, namespace)
    except Exception as e:
        # SystemExit and KeyboardInterrupt propagate: Python handles them
        # as for any script. Other errors are reported from the script's
        # first frame on (tb's first frame is this function's).
        tb = e.__traceback__
        e.__traceback__ = tb.tb_next if tb else None
        sys.excepthook(type(e), e, e.__traceback__)
        del e, tb
        failed = True
    if failed:
        sys.exit(1)


def _usage_error(msg: str) -> NoReturn:
    sys.stderr.write(
        f"usage: python -m {PROG} SCRIPT [ARG ...] [--NAME VALUE ...]\n"
        f"{PROG}: error: {msg}\n"
    )
    sys.exit(2)


if __name__ == "__main__":
    main()
