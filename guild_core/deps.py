"""Run dependencies: an operation's ``requires:`` resolved to runs before
the run starts, then installed in the new run directory.

A dependency is a mapping in guild.yml::

    requires:
      - operation: train            # one run: marked, else latest completed
        select: model\\.txt          # files from it (regular expressions)
      - operation: train
        multi-run: yes              # every matching run, linked by id
        select: label contains red and completed
      - run: train                  # the same, spelled as the seed's
      - multi-run: "operation = train and loss < 0.1"   # alternative

Which resolver handles a dependency is chosen by its keys (see
`kind_of`); resolvers are plugins (``guild_register_resolvers``). The
core owns what happens around them: the flag that overrides a
dependency on the command line, the preview, installing files or links
and ``guild-runs.json``, and the ``deps`` attribute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import home
from .errors import GuildError
from .run import Run

# Kinds the core knows how to spell; a plugin kind (``best``) found
# among a dependency's keys takes precedence over these.
BASE_KINDS = ("multi-run", "run", "operation")
SINGLE_KINDS = ("run", "operation")

DEP_KEYS = {
    "operation", "run", "multi-run", "name", "select", "target-path", "rename",
    "min", "target-type", "description",
}


@dataclass
class Dependency:
    spec: dict[str, Any]
    name: str
    kind: str

    @property
    def multi(self) -> bool:
        if self.kind == "multi-run":
            return True
        if self.kind in SINGLE_KINDS:
            return _truthy(self.spec.get("multi-run"))
        # A plugin kind selects many runs unless it says otherwise.
        return self.spec.get("multi-run") not in (False, "no")

    @property
    def uri(self) -> str:
        val = self.spec.get(self.kind)
        if self.kind == "multi-run" and val in (True, "yes"):
            val = self.spec.get("operation")
        return f"{self.kind}:{val}"


@dataclass
class Resolved:
    dep: Dependency
    runs: list[Run]
    value: str | None = None
    paths: list[str] = field(default_factory=list)


def _truthy(val: Any) -> bool:
    return val is True or (isinstance(val, str) and val.lower() in ("yes", "true"))


def dependencies(requires: Any, kinds: set[str] | None = None) -> list[Dependency]:
    """The dependencies of an operation's ``requires:`` (a list)."""
    if requires is None:
        return []
    if isinstance(requires, dict):
        requires = [requires]
    if not isinstance(requires, list):
        raise GuildError("requires must be a list of dependencies")
    deps = []
    for spec in requires:
        if not isinstance(spec, dict):
            raise GuildError(f"unsupported dependency {spec!r}: expected a mapping such as 'operation: train'")
        kind = kind_of(spec, kinds or set(BASE_KINDS))
        if kind in BASE_KINDS:
            # A key no resolver claims is most likely a plugin's that is
            # not installed or disabled: ignoring it would select other runs.
            unknown = [str(k) for k in spec if k not in DEP_KEYS]
            if unknown:
                raise GuildError(
                    f"unsupported dependency attribute '{unknown[0]}' "
                    "(no resolver plugin handles it; see 'guild plugins')"
                )
        deps.append(Dependency(spec, _dep_name(spec, kind), kind))
    names = [d.name for d in deps]
    for name in names:
        if names.count(name) > 1:
            raise GuildError(f"two dependencies are named '{name}': give one a 'name:'")
    return deps


def kind_of(spec: dict[str, Any], kinds: set[str]) -> str:
    """The resolver kind for a dependency mapping: a plugin kind among its
    keys first, then ``multi-run`` (when it names runs, not ``yes``),
    ``run``, ``operation``."""
    for key in spec:
        if key in kinds and key not in BASE_KINDS:
            return key
    multi = spec.get("multi-run")
    if "multi-run" in spec and not isinstance(multi, bool) and str(multi).lower() not in ("yes", "no", "true", "false"):
        return "multi-run"
    for key in ("run", "operation"):
        if key in spec:
            return key
    if "multi-run" in spec:
        raise GuildError("a 'multi-run: yes' dependency needs an 'operation:'")
    unknown = ", ".join(str(k) for k in spec)
    raise GuildError(f"unsupported dependency ({unknown}): expected operation, run or multi-run")


_BARE_NAME_P = re.compile(r"^[\w.+:/-]+$")


def bare_operation(text: Any) -> str | None:
    """`text` when it is a plain operation name (``train``, ``train.py``),
    not a filter expression."""
    if isinstance(text, str) and _BARE_NAME_P.match(text.strip()):
        return text.strip()
    return None


def _dep_name(spec: dict[str, Any], kind: str) -> str:
    if spec.get("name"):
        return str(spec["name"])
    op = spec.get("operation")
    if op:
        return str(op).rsplit(":", 1)[-1]
    # A base spelling names it (`run: train` is `train`); a plugin kind's
    # own value (`best: 3`) never does.
    for key in ("run", "multi-run"):
        named = bare_operation(spec.get(key)) if key in spec else None
        if named and named.lower() not in ("yes", "no", "true", "false"):
            return named.rsplit(":", 1)[-1]
    return kind


# ---------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------


class Context:
    """What resolvers get (the ``ResolveContext`` of the hook specs)."""

    def __init__(self, runs: list[Run], project_dir: Path, resolvers: dict[str, Callable], extensions=None):
        self.runs = runs
        self.project_dir = project_dir
        self._resolvers = resolvers
        self._extensions = extensions

    def select(self, expr: str, runs: list[Run]) -> list[Run]:
        from .select import RunFilter, filter_runs

        return filter_runs(runs, RunFilter(expr=expr), self._extensions)

    def resolve(self, spec: dict[str, Any], value: str | None) -> list[Run]:
        """Resolve `spec` as a dependency of its own (a plugin kind may
        narrow what a base kind selects)."""
        kind = kind_of(spec, set(self._resolvers))
        return self._resolvers[kind](spec, value, self)


def resolve_all(
    deps: list[Dependency],
    values: dict[str, str],
    ctx: Context,
    resolvers: dict[str, Callable],
) -> list[Resolved]:
    """Each dependency's runs, or GuildError for the first not met."""
    out = []
    for dep in deps:
        resolve = resolvers.get(dep.kind)
        if resolve is None:
            raise GuildError(f"no resolver for dependency kind '{dep.kind}' (see 'guild plugins')")
        value = values.get(dep.name)
        try:
            runs = resolve(dep.spec, value, ctx)
        except GuildError as e:
            raise unmet(dep, str(e)) from None
        runs = _unique(runs)
        if not dep.multi and len(runs) != 1:
            raise unmet(dep, f"expected one run, found {len(runs)}")
        minimum = dep.spec.get("min", 1)
        if dep.multi and len(runs) < int(minimum):
            what = "no runs" if not runs else f"{len(runs)} run(s), fewer than {minimum}"
            raise unmet(dep, f"{what} selected (set 'min: 0' to allow none)")
        out.append(Resolved(dep, runs, value))
    return out


def unmet(dep: Dependency, why: str) -> GuildError:
    return GuildError(f"run failed because a dependency was not met: could not resolve '{dep.uri}': {why}")


def _unique(runs: list[Run]) -> list[Run]:
    seen: set[str] = set()
    out = []
    for run in runs:
        if run.id not in seen:
            seen.add(run.id)
            out.append(run)
    return out


# ---------------------------------------------------------------------
# Installing in the new run directory
# ---------------------------------------------------------------------


def install(resolved: list[Resolved], run_dir: Path) -> dict[str, Any]:
    """Links or copies for each dependency under `run_dir` (the run
    being assembled); returns the ``deps`` attribute."""
    attr: dict[str, Any] = {}
    for res in resolved:
        dep = res.dep
        target = run_dir / str(dep.spec.get("target-path") or "")
        target.mkdir(parents=True, exist_ok=True)
        if dep.multi:
            res.paths = _link_runs(res.runs, target, run_dir)
        else:
            res.paths = _install_files(res.runs[0], dep.spec, target, run_dir)
        source = {
            "uri": dep.uri,
            "config": [r.id for r in res.runs] if dep.multi else res.runs[0].id,
            "paths": res.paths,
        }
        if res.value is not None:
            # What the user chose on the command line, for a restart.
            source["value"] = res.value
        attr[dep.name] = {dep.uri: source}
    return attr


def reinstall(run: Run, resolved: list[Resolved]) -> None:
    """Replace what a run's dependencies installed before (on restart):
    the old links, copies and guild-runs.json go, the new ones come."""
    for sources in (run.get("deps") or {}).values():
        for source in (sources or {}).values():
            for rel in source.get("paths") or [] if isinstance(source, dict) else []:
                path = run.path / rel
                if path.is_symlink() or path.is_file():
                    path.unlink()
    run.write_attr("deps", install(resolved, run.path))


def _link_runs(runs: list[Run], target: Path, run_dir: Path) -> list[str]:
    runs_root = home.runs_dir()
    entries = []
    paths = []
    for run in runs:
        link = target / run.id
        # Relative, as a batch links its trials, so the links survive a
        # moved Guild home and export/import with the runs they name. The
        # run being assembled lies directly under runs/, as it will.
        os.symlink(os.path.relpath(runs_root / run.id, link.parent), link)
        paths.append(os.path.relpath(link, run_dir))
        entries.append(run_entry(run))
    manifest = target / "guild-runs.json"
    manifest.write_text(json.dumps(entries, indent=2, sort_keys=False) + "\n")
    paths.append(os.path.relpath(manifest, run_dir))
    return paths


def run_entry(run: Run) -> dict[str, Any]:
    """A run as ``guild-runs.json`` lists it: what a summary script needs,
    readable without guild."""
    from .runvalues import RunValues

    rv = RunValues(run)
    scalars = {}
    for tag, summ in rv.scalars().items():
        scalars[tag] = {
            "last": summ.get("last", False),
            "min": summ.get("min", False),
            "max": summ.get("max", False),
            "step": summ.get("last", True),
        }
    return {
        "id": run.id,
        "dir": f"./{run.id}",
        "op": run.op_name,
        "status": run.status,
        "started": rv.attr("started"),
        "label": run.get("label") or "",
        "tags": list(run.get("tags") or []),
        "flags": run.get("flags") or {},
        "scalars": scalars,
    }


def _install_files(run: Run, spec: dict[str, Any], target: Path, run_dir: Path) -> list[str]:
    patterns = spec.get("select")
    if isinstance(patterns, str):
        patterns = [patterns]
    try:
        compiled = [re.compile(p) for p in patterns or []]
    except re.error as e:
        raise GuildError(f"invalid select pattern in dependency '{spec}': {e}") from None
    renames = _renames(spec.get("rename"))
    copy = spec.get("target-type") == "copy"
    # Without `select`, what the run made: not the project's source code
    # it was run with (the new run has its own snapshot).
    skip = set() if compiled else _sourcecode_files(run)
    paths = []
    for rel in _run_files(run.path):
        if compiled and not any(p.fullmatch(rel) for p in compiled):
            continue
        if rel in skip:
            continue
        dest_rel = rel
        for pattern, repl in renames:
            dest_rel = pattern.sub(repl, dest_rel)
        dest = target / dest_rel
        if dest.exists() or dest.is_symlink():
            raise GuildError(f"cannot install '{dest_rel}' from run {run.short_id}: the run already has that file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = run.path / rel
        if copy:
            shutil.copy2(src, dest)
        else:
            os.symlink(os.path.relpath(src, dest.parent), dest)
        paths.append(os.path.relpath(dest, run_dir))
    if compiled and not paths:
        raise GuildError(f"run {run.short_id} has no file matching {', '.join(patterns)}")
    return paths


def _sourcecode_files(run: Run) -> set[str]:
    """The source-code snapshot's files, from the run's manifest."""
    try:
        lines = run.guild_path("manifest").read_text().splitlines()
    except OSError:
        return set()
    import shlex

    out = set()
    for line in lines:
        try:
            parts = shlex.split(line)
        except ValueError:
            continue
        if len(parts) >= 2 and parts[0] == "s":
            out.add(parts[1])
    return out


def _run_files(root: Path) -> list[str]:
    """Files a run made or holds, relative to it; not its .guild."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != ".guild"]
        dirnames.sort()
        for name in sorted(filenames):
            out.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return out


def _renames(spec: Any) -> list[tuple[re.Pattern, str]]:
    if not spec:
        return []
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for item in items:
        if isinstance(item, dict):
            pattern, repl = item.get("pattern", ""), item.get("repl", "")
        else:
            parts = str(item).split()
            if len(parts) != 2:
                raise GuildError(f"invalid rename '{item}': expected 'PATTERN REPL'")
            pattern, repl = parts
        out.append((re.compile(pattern), repl))
    return out


def dependents(run_ids: set[str], runs: list[Run]) -> dict[str, list[Run]]:
    """For each id in `run_ids`, the runs whose dependencies resolved to
    it (so deleting it would leave them pointing at nothing)."""
    out: dict[str, list[Run]] = {}
    for run in runs:
        for sources in (run.get("deps") or {}).values():
            if not isinstance(sources, dict):
                continue
            for info in sources.values():
                config = info.get("config") if isinstance(info, dict) else None
                ids = config if isinstance(config, list) else [config]
                for rid in ids:
                    if rid in run_ids and run.id != rid:
                        out.setdefault(rid, []).append(run)
    return out
