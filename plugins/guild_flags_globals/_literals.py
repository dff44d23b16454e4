"""Module-level literal assignments: what both detection and the launcher
read from a script's AST.

A flag is a *module-level* statement (directly in the module body, not
inside ``if``/``try``/``def``/``class``) of the form ``NAME = LITERAL``
or ``NAME: T = LITERAL`` where LITERAL is a number (``-1``, ``+2.5``), a
string, ``True``/``False``, ``None`` or a flat list of those. Names
starting with ``_`` are private and never flags. Chained (``a = b = 1``)
and unpacking (``a, b = 1, 2``) assignments are not flags.

A name assigned several literals keeps the position of its *first*
assignment (flags are listed in source order) and takes its default and
type from its *last* one: that is the value the module holds once it
has run, as ``dict.update`` order would give. The launcher rewrites
every such assignment, so none of them can undo a flag value.
Assignments of the same name to non-literals (``lr = lr * 2``) are
left alone: they are the script's own logic.

Only `ast` is imported here: the launcher imports this module at every
run's start-up.
"""

from __future__ import annotations

import ast
# typing costs milliseconds at every run's start-up; annotations are
# strings here, so it is only needed by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NOT_LITERAL = object()

_SCALAR_TYPES = (bool, int, float, str, type(None))


def flag_assigns(tree: ast.Module) -> dict[str, list[ast.Assign | ast.AnnAssign]]:
    """Literal assignments by flag name, names in order of first assignment."""
    assigns: dict[str, list[ast.Assign | ast.AnnAssign]] = {}
    for stmt in tree.body:
        name = _target_name(stmt)
        if name is None or name.startswith("_"):
            continue
        if literal_value(stmt.value) is NOT_LITERAL:  # type: ignore[union-attr]
            continue
        assigns.setdefault(name, []).append(stmt)  # type: ignore[arg-type]
    return assigns


def mapping_assigns(tree: ast.Module) -> dict[str, dict]:
    """Module-level ``NAME = {...}`` of literal mappings, and ``NAME =
    SimpleNamespace(key=literal, ...)`` as the mapping of its keywords
    (the last of each name), for ``flags-dest: global:NAME`` and
    ``namespace:NAME``."""
    found: dict[str, dict] = {}
    for stmt in tree.body:
        name = _target_name(stmt)
        if name is None:
            continue
        node = stmt.value  # type: ignore[union-attr]
        if isinstance(node, ast.Dict):
            value = mapping_value(node)
        elif is_namespace_call(node):
            value = namespace_value(node)
        else:
            continue
        if value is not NOT_LITERAL:
            found[name] = value
    return found


def is_namespace_call(node: ast.expr) -> bool:
    """``SimpleNamespace(...)`` or ``types.SimpleNamespace(...)`` with
    keyword arguments only."""
    if not isinstance(node, ast.Call) or node.args:
        return False
    func = node.func
    named = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return named == "SimpleNamespace" and all(kw.arg for kw in node.keywords)


def namespace_value(node: ast.Call) -> Any:
    """The keywords of a namespace call as a mapping (nested namespace
    calls as nested mappings), or `NOT_LITERAL`."""
    out: dict[str, Any] = {}
    for kw in node.keywords:
        if is_namespace_call(kw.value):
            val = namespace_value(kw.value)  # type: ignore[arg-type]
        else:
            try:
                val = ast.literal_eval(kw.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return NOT_LITERAL
        if val is NOT_LITERAL:
            return NOT_LITERAL
        out[kw.arg] = val  # type: ignore[index]
    return out


def mapping_value(node: ast.expr) -> Any:
    """A literal mapping of string keys (values: literals, nested
    mappings), or `NOT_LITERAL`."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NOT_LITERAL
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        return NOT_LITERAL
    return value


def _target_name(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.Assign):
        if len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            return stmt.targets[0].id
    elif isinstance(stmt, ast.AnnAssign):
        if stmt.value is not None and isinstance(stmt.target, ast.Name):
            return stmt.target.id
    return None


def literal_value(node: ast.expr | None) -> Any:
    """The value of a flag literal, or `NOT_LITERAL`."""
    if isinstance(node, ast.List):
        items = [_scalar_value(elt) for elt in node.elts]
        if any(item is NOT_LITERAL for item in items):
            return NOT_LITERAL
        return items
    return _scalar_value(node)


def _scalar_value(node: ast.expr | None) -> Any:
    if isinstance(node, ast.Constant):
        return node.value if type(node.value) in _SCALAR_TYPES else NOT_LITERAL
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        val = node.operand.value
        return -val if isinstance(node.op, ast.USub) else +val
    return NOT_LITERAL


def flag_type(value: Any) -> str | None:
    """The guild flag type of a literal value (``None``: auto)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        # As Guild AI types them: a number keeps what is given, so
        # x=1 for ``x = 1.0`` is 1 (the seeds' echo.py prints ``1``).
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def value_node(value: Any, like: ast.expr) -> ast.expr:
    """An expression node evaluating to `value`, every node placed at
    `like`'s location so tracebacks keep the script's line numbers."""
    node = _build(value)
    for child in ast.walk(node):
        ast.copy_location(child, like)
    return node


def _build(value: Any) -> ast.expr:
    if isinstance(value, list):
        return ast.List(elts=[_build(item) for item in value], ctx=ast.Load())
    if isinstance(value, tuple):
        return ast.Tuple(elts=[_build(item) for item in value], ctx=ast.Load())
    if isinstance(value, dict):
        return ast.Dict(
            keys=[_build(k) for k in value],
            values=[_build(v) for v in value.values()],
        )
    if type(value) in _SCALAR_TYPES:
        # Negative numbers too: the compiler takes any number as a constant.
        return ast.Constant(value=value)
    # Something else YAML may give inside a list (a date): as text, the
    # way `decode_auto` gives a top-level one.
    return ast.Constant(value=str(value))
