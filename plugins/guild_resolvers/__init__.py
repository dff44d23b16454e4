"""Built-in plugin ``resolvers``: the dependency kinds of guild.yml.

- ``operation: NAME`` (Guild AI 0.9): one run of NAME (a regular
  expression, or several separated by commas, as Guild AI matches
  them), the marked one, else the latest, among its completed, running and terminated runs; with ``multi-run: yes`` every completed
  run of NAME, or those matching ``select: EXPR``.
- ``run: EXPR`` (the seed's spelling): one run, the marked or latest
  completed among those matching EXPR; a bare name is ``operation =
  NAME``.
- ``multi-run: EXPR``: every run matching EXPR (a bare name: every
  completed run of that operation).

A value given on the command line (``guild run summary train=ID``)
replaces the choice: a run id or unique prefix for one run; for many,
``where EXPR`` (runs of the dependency's operation matching EXPR) or a
list of ids and prefixes separated by commas or spaces (exactly those).
"""

from __future__ import annotations

import re

from guild_core.hookspecs import hookimpl


@hookimpl(trylast=True)
def guild_register_resolvers(register):
    register("operation", resolve_operation)
    register("run", resolve_run)
    register("multi-run", resolve_multi_run)


def resolve_operation(dep, value, ctx):
    op = str(dep["operation"])
    multi = dep.get("multi-run") in (True, "yes", "true")
    runs = [r for r in ctx.runs if _op_matches(r, op)]
    if value is not None:
        return _from_value(value, ctx, None, multi, pool=runs)
    if multi:
        select = dep.get("select")
        return ctx.select(select, runs) if select else [r for r in runs if r.status == "completed"]
    # As Guild AI 0.9: the marked run, else the latest, among those
    # completed, running or terminated (not failed, staged or pending).
    usable = [r for r in runs if r.status in ("completed", "running", "terminated")]
    marked = [r for r in usable if r.get("marked")]
    if marked or usable:
        return (marked or usable)[:1]
    from guild_core.errors import GuildError

    raise GuildError(f"no marked or completed run of {op}")


def resolve_run(dep, value, ctx):
    expr = _expr(dep["run"])
    if value is not None:
        return _from_value(value, ctx, expr, False)
    return _one(ctx.select(expr, ctx.runs), f"no marked or completed run matching '{expr}'")


def resolve_multi_run(dep, value, ctx):
    spec = dep["multi-run"]
    expr = _expr(spec)
    if value is not None:
        return _from_value(value, ctx, expr, True)
    if _bare(spec):
        return ctx.select(expr + " and completed", ctx.runs)
    return ctx.select(expr, ctx.runs)


def _op_matches(run, spec: str) -> bool:
    """Whether `run` is of an operation `spec` names, as Guild AI 0.9
    matches: a comma-separated list of ``[MODEL:]OP``, each part a
    regular expression the whole name must match (``.*``, ``train-.+``);
    with no model, runs of every model match."""
    model, _, op = run.op_name.rpartition(":")
    for part in spec.split(","):
        part = part.strip()
        want_model, colon, want_op = part.rpartition(":")
        if not want_op:
            continue
        if _name_matches(op, want_op) and (not colon or _name_matches(model, want_model)):
            return True
    return False


def _name_matches(name: str, pattern: str) -> bool:
    if name == pattern:
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _bare(spec) -> bool:
    from guild_core.deps import bare_operation

    return bare_operation(spec) is not None


def _expr(spec) -> str:
    """A bare operation name is shorthand for ``operation = NAME``."""
    return f"operation = {_quote(str(spec).strip())}" if _bare(spec) else str(spec)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _one(runs, why: str):
    marked = [r for r in runs if r.get("marked")]
    if marked:
        return marked[:1]
    completed = [r for r in runs if r.status == "completed"]
    if completed:
        return completed[:1]
    from guild_core.errors import GuildError

    raise GuildError(why)


_WHERE_P = re.compile(r"^\s*where\s+(.+)$", re.IGNORECASE | re.DOTALL)


def _from_value(value: str, ctx, base_expr: str | None, multi: bool, pool=None):
    """The runs a command-line value names: ``where EXPR`` (among the
    runs `base_expr` selects, or `pool`) or ids."""
    from guild_core.errors import GuildError

    m = _WHERE_P.match(str(value))
    if m:
        if not multi:
            raise GuildError(f"'{value}': 'where' selects many runs; this dependency takes one run id")
        if base_expr is None:
            return ctx.select(m.group(1), pool)
        return ctx.select(f"({base_expr}) and ({m.group(1)})", ctx.runs)
    specs = [s for s in re.split(r"[,\s]+", str(value)) if s]
    if not specs:
        raise GuildError("no run given")
    if not multi and len(specs) > 1:
        raise GuildError(f"'{value}' names {len(specs)} runs; this dependency takes one")
    runs = []
    for spec in specs:
        runs.extend(_by_id(ctx.runs, spec))
    return runs


def _by_id(runs, spec: str):
    from guild_core.errors import GuildError

    matches = [r for r in runs if r.id.startswith(spec)]
    if not matches:
        raise GuildError(f"no run matches '{spec}'")
    if len(matches) > 1:
        ids = ", ".join(r.short_id for r in matches[:5])
        raise GuildError(f"'{spec}' matches {len(matches)} runs ({ids})")
    return matches
