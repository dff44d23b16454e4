"""Run dependencies: an operation's ``requires:`` resolved to runs and
files before the run exists, then installed in the new run directory.

A dependency is a mapping in guild.yml::

    requires:
      - file: data.zip              # Guild AI's resource sources: file,
      - url: https://host/w.bin     # url, config, module (plugin resources)
      - name: dataset               # a resource of several sources
        sources: [{file: a.csv}, {url: https://host/b.csv}]
      - operation: train            # one run: marked, else the latest
        select: model\\.txt          # files from it (regular expressions)
      - operation: train
        multi-run: yes              # every matching run, linked by id
        select: label contains red and completed
      - run: train                  # the same, spelled as the seed's
      - multi-run: "operation = train and loss < 0.1"   # alternative

Which resolver handles a dependency is chosen by its keys (see
`kind_of`); resolvers are plugins (``guild_register_resolvers``). The
core owns what happens around them: the flag that overrides a
dependency on the command line, ``optional`` and the empty checks,
placing files (``target-path``, ``target-type``, ``rename``), links and
``guild-runs.json``, the one-run dependency's flag, and the ``deps``
attribute.
"""

from __future__ import annotations

import dataclasses
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
# Guild AI's resource source types: their resolvers are plugins (the
# built-in ``resources``), but guild.yml spells them, so the core knows
# they give files, not runs.
RESOURCE_KINDS = ("file", "url", "config", "module")

# Keys every dependency may have, whatever its kind (Guild AI 0.9's
# resource source attributes).
COMMON_KEYS = {
    "name", "flag-name", "help", "description", "optional", "select", "select-min", "select-max",
    "target-path", "path", "target-type", "rename", "preserve-path", "warn-if-empty", "fail-if-empty",
    "replace-existing", "always-resolve",
}
DEP_KEYS = COMMON_KEYS | {"operation", "run", "multi-run", "min"}
SOURCE_KEYS = COMMON_KEYS | {"sha256", "unpack", "type", "params", "post-process"}

# Keys of a resource (``- name: data`` with ``sources:``) its sources
# inherit.
RESOURCE_KEYS = {"target-path", "path", "target-type", "preserve-path", "default-unpack"}


@dataclass
class Dependency:
    spec: dict[str, Any]
    name: str
    kind: str
    # The resource this source belongs to (Guild AI's ``deps`` key) and
    # its key within it; both the name for a dependency of its own.
    group: str = ""
    key: str = ""

    def __post_init__(self):
        self.group = self.group or self.name
        if not self.key:
            # Guild AI's source name: its name, flag name, else its uri.
            named = self.spec.get("name") or self.spec.get("flag-name") if self.kind in RESOURCE_KINDS else None
            self.key = str(named) if named else self.uri

    # Set when a plugin kind's resolver returns a `Resolution`.
    returns_files: bool = False

    @property
    def resource(self) -> bool:
        """A dependency on files or modules, not runs: Guild AI's source
        types (``file:``, ``url:``, ``config:``, ``module:``), or a
        plugin kind whose resolver returned a `Resolution`."""
        return self.kind in RESOURCE_KINDS or self.returns_files

    @property
    def multi(self) -> bool:
        if self.resource:
            return False
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
        if self.resource and isinstance(val, str) and "://" in val:
            return val  # url: the URL itself, as Guild AI records it
        return f"{self.kind}:{val}"

    @property
    def names(self) -> list[str]:
        """What the dependency answers to on the command line
        (``NAME=VALUE``): its name, its flag name, its uri (Guild AI's
        ``operation:train=RUN``, ``file:data.csv=PATH``)."""
        out = [self.name]
        for extra in (self.spec.get("flag-name"), self.spec.get("name"), self.uri):
            if extra and str(extra) not in out:
                out.append(str(extra))
        if self.spec.get("operation") and not self.multi and not self.resource:
            out.append(f"operation:{self.spec['operation']}")
        return list(dict.fromkeys(out))

    @property
    def flag(self) -> str | None:
        """The flag a one-run dependency is recorded as in the run's
        ``flags`` (and so in its label and ``guild compare``), the full
        run id its value, as Guild AI records ``operation:train``."""
        if self.resource or self.multi:
            return None
        explicit = self.spec.get("flag-name") or self.spec.get("name")
        if explicit:
            return str(explicit)
        if self.spec.get("operation"):
            # A plugin kind choosing one run of an operation (best: 1
            # with multi-run: no) is recorded as that operation's.
            return f"operation:{self.spec['operation']}"
        return self.uri

    @property
    def optional(self) -> bool:
        return _truthy(self.spec.get("optional"))


@dataclass
class SourceFile:
    """One thing a resolver wants placed in the new run.

    `path` is an existing file or directory, linked or copied; `name`
    its path relative to `origin` (its basename is where it goes, under
    ``target-path``, after ``rename``; ``preserve-path`` keeps `name`).
    `generate`, when given, makes the file's bytes from the new run's
    flags and op attribute instead (``config:``)."""

    path: Path | None
    name: str
    generate: Callable[[dict[str, Any], dict[str, Any]], bytes] | None = None


@dataclass
class Resolution:
    """What a resource resolver returns: files to place (none for
    ``module:``), and what to record as the source's ``config``."""

    files: list[SourceFile] = field(default_factory=list)
    config: Any = None


@dataclass
class Resolved:
    dep: Dependency
    runs: list[Run]
    value: str | None = None
    paths: list[str] = field(default_factory=list)
    resolution: Resolution | None = None


def _truthy(val: Any) -> bool:
    return val is True or (isinstance(val, str) and val.lower() in ("yes", "true"))


_FLAG_REF_P = re.compile(r"\$\{([^}]+)\}")


def with_flag_refs(deps: list[Dependency], flags: dict[str, Any]) -> list[Dependency]:
    """`deps` with ``${flag}`` references in their definitions (a source
    path, a rename) replaced by the run's flag values, as Guild AI
    resolves them; a reference to no flag is an error."""
    from .flags import encode_value

    def subst(val: Any, dep: Dependency) -> Any:
        if isinstance(val, str) and "${" in val:
            def repl(m):
                name = m.group(1)
                if name not in flags or flags[name] is None:
                    raise GuildError(f"dependency '{dep.name}': '${{{name}}}' names no flag with a value")
                return encode_value(flags[name])

            return _FLAG_REF_P.sub(repl, val)
        if isinstance(val, list):
            return [subst(v, dep) for v in val]
        if isinstance(val, dict):
            return {k: subst(v, dep) for k, v in val.items()}
        return val

    out = []
    for dep in deps:
        spec = subst(dep.spec, dep)
        out.append(dataclasses.replace(dep, spec=spec) if spec != dep.spec else dep)
    return out


def dependencies(requires: Any, kinds: set[str] | None = None) -> list[Dependency]:
    """The dependencies of an operation's ``requires:`` (a list); a
    resource with ``sources:`` is one dependency per source."""
    if requires is None:
        return []
    if isinstance(requires, (dict, str)):
        requires = [requires]
    if not isinstance(requires, list):
        raise GuildError("requires must be a list of dependencies")
    kinds = kinds or set(BASE_KINDS)
    deps = []
    for spec in requires:
        if isinstance(spec, str):
            raise GuildError(
                f"unsupported dependency '{spec}': named resources (a model's 'resources:') "
                "are not supported; write the source inline, for example 'file: {spec}'"
            )
        if not isinstance(spec, dict):
            raise GuildError(f"unsupported dependency {spec!r}: expected a mapping such as 'operation: train'")
        if "sources" in spec:
            deps.extend(_resource_deps(spec, kinds))
            continue
        deps.append(_dependency(spec, kinds))
    # The same dependency twice (`- file: a` listed again) is resolved
    # once, as Guild AI skips a source it has already resolved.
    unique: list[Dependency] = []
    for dep in deps:
        if not any(d.spec == dep.spec and d.group == dep.group for d in unique):
            unique.append(dep)
    deps[:] = unique
    # Among dependencies of their own, a name is one dependency's, so
    # NAME=VALUE has one meaning. Sources of a resource may share one (a
    # file placed twice, renamed), as Guild AI allows: a value given for
    # it reaches them all.
    names = [n for d in deps if d.group == d.name or not d.group for n in dict.fromkeys([d.name, d.flag or d.name])]
    for name in names:
        if names.count(name) > 1:
            raise GuildError(f"two dependencies are named '{name}': give one a 'name:'")
    return deps


def _dependency(spec: dict[str, Any], kinds: set[str], group: str = "") -> Dependency:
    kind = kind_of(spec, kinds)
    if kind in BASE_KINDS:
        # A key no resolver claims is most likely a plugin's that is
        # not installed or disabled: ignoring it would select other runs.
        unknown = [str(k) for k in spec if k not in DEP_KEYS]
        if unknown:
            raise GuildError(
                f"unsupported dependency attribute '{unknown[0]}' "
                "(no resolver plugin handles it; see 'guild plugins')"
            )
    if kind in RESOURCE_KINDS:
        others = [k for k in RESOURCE_KINDS + BASE_KINDS if k in spec and k != kind]
        if others:
            raise GuildError(f"dependency {kind}: {spec[kind]} also has '{others[0]}': give each its own entry")
        unknown = [str(k) for k in spec if k not in SOURCE_KEYS and k != kind]
        if unknown:
            raise GuildError(f"unsupported attribute '{unknown[0]}' in dependency '{kind}: {spec[kind]}'")
        if spec.get(kind) in (None, ""):
            raise GuildError(f"dependency '{kind}:' needs a value")
    dep = Dependency(spec, _dep_name(spec, kind), kind, group=group)
    _check_common(dep)
    return dep


def _resource_deps(spec: dict[str, Any], kinds: set[str]) -> list[Dependency]:
    """``- name: data`` + ``sources: [...]``: each source a dependency,
    grouped under the resource's name as Guild AI records them."""
    sources = spec.get("sources")
    if not isinstance(sources, list) or not sources:
        raise GuildError(f"invalid sources {sources!r} in dependency {spec.get('name') or ''}: expected a list")
    inherited = {k: v for k, v in spec.items() if k in RESOURCE_KEYS}
    if "default-unpack" in inherited:
        inherited["unpack"] = inherited.pop("default-unpack")
    specs = []
    for source in sources:
        if isinstance(source, str):
            source = {"file": source}  # Guild AI's default source type
        if not isinstance(source, dict):
            raise GuildError(f"invalid source {source!r} in dependency {spec.get('name') or ''}")
        specs.append({**inherited, **source})
    deps = [_dependency(s, kinds) for s in specs]
    group = str(spec.get("name") or ",".join(d.name for d in deps))
    for d in deps:
        d.group = group
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
    raise GuildError(
        f"unsupported dependency ({unknown}): no resolver plugin handles it (see 'guild plugins')"
    )


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
    if kind in RESOURCE_KINDS:
        # A resource source: Guild AI's flag name, else its uri.
        if spec.get("flag-name"):
            return str(spec["flag-name"])
        val = spec.get(kind)
        return val if isinstance(val, str) and "://" in val else f"{kind}:{val}"
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

    @property
    def cache_dir(self) -> Path:
        """``$GUILD_HOME/cache``: where downloads and unpacked archives
        are kept between runs."""
        return home.guild_home() / "cache"

    def warn(self, msg: str) -> None:
        warn(msg)

    def select(self, expr: str, runs: list[Run]) -> list[Run]:
        from .select import RunFilter, filter_runs

        return filter_runs(runs, RunFilter(expr=expr), self._extensions)

    def resolve(self, spec: dict[str, Any], value: str | None) -> list[Run]:
        """Resolve `spec` as a dependency of its own (a plugin kind may
        narrow what a base kind selects)."""
        kind = kind_of(spec, set(self._resolvers))
        return self._resolvers[kind](spec, value, self)


def warn(msg: str) -> None:
    import sys

    sys.stderr.write(f"WARNING: {msg}\n")
    sys.stderr.flush()


def resolve_all(
    deps: list[Dependency],
    values: dict[str, str],
    ctx: Context,
    resolvers: dict[str, Callable],
) -> list[Resolved]:
    """Each dependency's runs or files, or GuildError for the first not
    met. An optional dependency that cannot be resolved is skipped with
    a note."""
    out = []
    for dep in deps:
        resolve = resolvers.get(dep.kind)
        if resolve is None:
            raise GuildError(f"no resolver for dependency kind '{dep.kind}' (see 'guild plugins')")
        value = next((values[n] for n in dep.names if n in values), None)
        try:
            res = _resolve_one(dep, value, ctx, resolve)
        except GuildError as e:
            if dep.optional:
                import sys

                sys.stderr.write(f"Skipping optional dependency '{dep.key}': {e}\n")
                continue
            raise unmet(dep, str(e)) from None
        out.append(res)
    return out


def _resolve_one(dep: Dependency, value, ctx: Context, resolve: Callable) -> Resolved:
    result = resolve(dep.spec, value, ctx)
    if isinstance(result, Resolution):
        dep.returns_files = True
        if dep.spec.get(dep.kind) is not None and dep.kind != "module":
            _check_empty(dep, result.files)
        return Resolved(dep, [], value, resolution=result)
    runs = _unique(result)
    if not dep.multi and len(runs) != 1:
        raise GuildError(f"expected one run, found {len(runs)}")
    minimum = dep.spec.get("min", 1)
    if dep.multi and len(runs) < int(minimum):
        what = "no runs" if not runs else f"{len(runs)} run(s), fewer than {minimum}"
        raise GuildError(f"{what} selected (set 'min: 0' to allow none)")
    resolved = Resolved(dep, runs, value)
    if not dep.multi:
        files = run_files(runs[0], dep.spec)
        _check_empty(dep, files)
        resolved.resolution = Resolution(files, runs[0].id)
    return resolved


def _check_common(dep: Dependency) -> None:
    spec = dep.spec
    target_type = spec.get("target-type")
    if target_type is not None and target_type not in ("link", "copy"):
        raise GuildError(f"unsupported target-type '{target_type}' (expected 'link' or 'copy')")
    target = str(spec.get("target-path") or spec.get("path") or "")
    if os.path.isabs(target) or ".." in Path(target).parts:
        raise GuildError(f"invalid target-path '{target}': it must be a path inside the run")
    _renames(spec.get("rename"))
    select_specs(spec)


def _check_empty(dep: Dependency, files: list) -> None:
    if files:
        return
    if _truthy(dep.spec.get("fail-if-empty")):
        raise GuildError(f"nothing resolved for '{dep.key}'")
    if dep.spec.get("warn-if-empty", True) not in (False, "no"):
        warn(f"nothing resolved for '{dep.key}'")


def unmet(dep: Dependency, why: str) -> GuildError:
    msg = f"run failed because a dependency was not met: could not resolve '{dep.key}': {why}"
    help_text = dep.spec.get("help")
    return GuildError(msg, hint=str(help_text).strip()) if help_text else GuildError(msg)


def _unique(runs: list[Run]) -> list[Run]:
    seen: set[str] = set()
    out = []
    for run in runs:
        if run.id not in seen:
            seen.add(run.id)
            out.append(run)
    return out


# ---------------------------------------------------------------------
# Selecting files (select, select-min, select-max), for every kind
# ---------------------------------------------------------------------


def select_specs(spec: dict[str, Any]) -> list[tuple[re.Pattern, str | None]]:
    """``select``, ``select-min`` and ``select-max`` as (pattern,
    reduce) pairs; a pattern matches a whole relative path."""
    out = []
    for key, reduce in (("select", None), ("select-min", "min"), ("select-max", "max")):
        val = spec.get(key)
        if val is None:
            continue
        items = val if isinstance(val, list) else [val]
        for item in items:
            try:
                out.append((re.compile(str(item)), reduce))
            except re.error as e:
                raise GuildError(f"invalid {key} pattern '{item}': {e}") from None
    return out


def select_paths(paths: list[str], specs: list[tuple[re.Pattern, str | None]]) -> list[str]:
    """The paths (relative, '/'-separated) the select specs choose, in
    order. ``select-min``/``select-max`` keep the one match whose first
    group is the lowest/highest number (``model-(\\d+)\\.ckpt``)."""
    chosen: set[str] = set()
    for pattern, reduce in specs:
        matches = [m for m in (pattern.fullmatch(p) for p in sorted(paths)) if m]
        if reduce:
            best = None
            for m in matches:
                try:
                    val = float(m.group(1))
                except (IndexError, TypeError, ValueError):
                    continue
                if best is None or (val < best[0] if reduce == "min" else val > best[0]):
                    best = (val, m)
            matches = [best[1]] if best else []
        chosen.update(m.string for m in matches)
    return sorted(chosen)


def tree_paths(root: Path) -> list[str]:
    """Every file and directory under `root`, relative, '/'-separated."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + sorted(filenames):
            out.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return out


def root_paths(paths: list[str]) -> list[str]:
    """The top-level names of `paths`, not ``.guild*``."""
    return sorted({p.split("/")[0] for p in paths if not p.split("/")[0].startswith(".guild")})


def run_files(run: Run, spec: dict[str, Any]) -> list[SourceFile]:
    """The files of a one-run dependency, as Guild AI selects them: with
    ``select``, every path of the run matching; without, the top-level
    files and directories the run made (not its source-code snapshot,
    not what its own dependencies installed)."""
    specs = select_specs(spec)
    if specs:
        names = select_paths(tree_paths(run.path), specs)
    else:
        skip = _sourcecode_files(run) | _dep_paths(run)
        made = [p for p in _run_files(run.path) if p not in skip]
        names = root_paths(made)
    return [SourceFile(run.path / name, name) for name in names]


def _dep_paths(run: Run) -> set[str]:
    out = set()
    for sources in (run.get("deps") or {}).values():
        for source in (sources or {}).values() if isinstance(sources, dict) else ():
            if isinstance(source, dict):
                out.update(str(p) for p in source.get("paths") or [])
    return out


# ---------------------------------------------------------------------
# Installing in the new run directory
# ---------------------------------------------------------------------


def install(resolved: list[Resolved], run_dir: Path) -> dict[str, Any]:
    """Links, copies and generated files for each dependency under
    `run_dir` (the run being assembled); one-run dependencies become
    flags (the run id), as Guild AI records them. Returns the ``deps``
    attribute."""
    run = Run(run_dir.name, run_dir)
    flags, op = _record_dep_flags(run, resolved)
    attr: dict[str, Any] = {}
    installed: set[Path] = set()
    sourcecode = _sourcecode_files(run)
    project = run.project_dir
    lines: list[str] = []
    for res in resolved:
        dep = res.dep
        if dep.multi:
            target = run_dir / str(dep.spec.get("target-path") or "")
            target.mkdir(parents=True, exist_ok=True)
            res.paths = _link_runs(res.runs, target, run_dir)
            lines.extend(_manifest_line(run_dir, rel, [dep.uri]) for rel in res.paths)
        else:
            placed: list[tuple[str, SourceFile]] = []
            res.paths = _place(res, run_dir, flags, op, installed, sourcecode, placed)
            # Another run's files are never the project's, even with the
            # Guild home inside the project.
            origin = None if res.runs else project
            lines.extend(_manifest_line(run_dir, rel, _source_args(dep, f, origin)) for rel, f in placed)
        source: dict[str, Any] = {"uri": dep.uri, "paths": res.paths}
        if res.runs:
            source["config"] = [r.id for r in res.runs] if dep.multi else res.runs[0].id
        elif res.resolution is not None and res.resolution.config is not None:
            source["config"] = res.resolution.config
        if res.value is not None:
            # What the user chose on the command line, for a restart.
            source["value"] = res.value
        attr.setdefault(dep.group, {})[dep.key] = source
    _write_manifest_deps(run, lines)
    return attr


def _source_args(dep: Dependency, f: SourceFile, project: str | None) -> list[str]:
    """Guild AI's manifest source for a placed file: ``file:PATH`` for
    a file of the project, else the dependency's URI and the file's
    name (an archive member, a download, another run's file), which
    ``guild merge`` never copies back."""
    if f.generate is None and f.path is not None and project:
        rel = os.path.relpath(os.path.abspath(f.path), os.path.abspath(project))
        if rel != ".." and not rel.startswith(".." + os.sep) and not os.path.isabs(rel):
            return ["file:" + rel.replace(os.sep, "/")]
    return [dep.uri, f.name] if f.name else [dep.uri]


def _manifest_line(run_dir: Path, rel: str, source: list[str]) -> str:
    import shlex

    from . import util

    path = run_dir / rel
    digest = "-"
    if path.is_file():
        try:
            h = util.sha1()
            h.update(path.read_bytes())
            digest = h.hexdigest()
        except OSError:
            pass
    return " ".join(shlex.quote(p) for p in ["d", rel.replace(os.sep, "/"), digest, *source])


def _write_manifest_deps(run: Run, lines: list[str]) -> None:
    """The manifest's ``d`` lines become `lines` (Guild AI's record of
    a run's dependency files); its source-code lines stay, but for a
    file a dependency took the place of."""
    import shlex

    from . import util

    path = run.guild_path("manifest")
    try:
        old = path.read_text().splitlines()
    except FileNotFoundError:
        old = []
    taken = {shlex.split(line)[1] for line in lines}

    def keep(line: str) -> bool:
        try:
            args = shlex.split(line)
        except ValueError:
            return True
        if not args or args[0] == "d":
            return False
        rel = args[1] if len(args) > 1 else ""
        return not any(rel == t or rel.startswith(t.rstrip("/") + "/") for t in taken)

    kept = [line for line in old if keep(line)]
    if not lines and len(kept) == len(old):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    util.atomic_write(path, "".join(line + "\n" for line in kept + lines))


def _record_dep_flags(run: Run, resolved: list[Resolved]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Add each one-run dependency's run id (and any value given for a
    resource) to the run's flags; the label follows. The flags are
    ``arg-skip`` in the op, so the script never receives them."""
    flags = dict(run.get("flags") or {})
    op = run.get("op") or {}
    dep_flags = {}
    for res in resolved:
        if res.dep.flag and res.runs:
            dep_flags[res.dep.flag] = res.runs[0].id
        elif res.dep.resource and res.value is not None:
            dep_flags[res.dep.name] = res.value
    if not dep_flags or not (run.path / ".guild" / "attrs").is_dir():
        return flags, op
    flags.update(dep_flags)
    run.write_attr("flags", flags, atomic=False)
    cmd_flags = op.setdefault("op-cmd", {}).setdefault("cmd-flags", {})
    for name in dep_flags:
        cmd_flags.setdefault(name, {})["arg-skip"] = True
    run.write_attr("op", op, atomic=False)
    from .runner import _run_label

    params = run.get("run_params") or {}
    label = _run_label(params.get("label"), op.get("label-template"), flags)
    if label:
        run.write_attr("label", label, atomic=False)
    return flags, op


def _place(
    res: Resolved, run_dir: Path, flags, op, installed: set[Path], sourcecode: set[str],
    placed: list[tuple[str, SourceFile]],
) -> list[str]:
    spec = res.dep.spec
    files = res.resolution.files if res.resolution else []
    target = run_dir / str(spec.get("target-path") or spec.get("path") or "")
    # Guild AI 0.9 copies a resource's files unless told to link them;
    # files of a run this run depends on are linked (`../RUN_ID/file`).
    copy = spec.get("target-type", "copy" if res.dep.resource else "link") == "copy"
    preserve = _truthy(spec.get("preserve-path"))
    replace = _truthy(spec.get("replace-existing"))
    renames = _renames(spec.get("rename"))
    paths = []
    for f in files:
        name = f.name if preserve else f.name.rstrip("/").rsplit("/", 1)[-1]
        name = _renamed(name, renames)
        dest = target / name
        rel = os.path.relpath(dest, run_dir)
        if rel.startswith("..") or os.path.isabs(rel):
            raise GuildError(f"cannot install '{name}': it would be outside the run")
        if os.path.lexists(dest):
            if not (replace or _from_sourcecode(dest, rel.replace(os.sep, "/"), sourcecode)):
                # As Guild AI: what is there (another dependency's file)
                # stays, unless `replace-existing: yes`.
                import sys

                sys.stderr.write(f"WARNING: {rel} already exists, skipping it for '{res.dep.key}'\n")
                continue
            # The source-code snapshot's copy gives way to the
            # dependency, as Guild AI keeps dependencies out of it.
            _remove(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.generate is not None:
            dest.write_bytes(f.generate(flags, op))
        elif copy:
            if f.path.is_dir():
                shutil.copytree(f.path, dest, symlinks=True)
            else:
                shutil.copy2(f.path, dest)
        else:
            os.symlink(os.path.relpath(f.path, dest.parent), dest)
        installed.add(dest)
        paths.append(rel.replace(os.sep, "/"))
        placed.append((rel, f))
    return paths


def _from_sourcecode(path: Path, rel: str, sourcecode: set[str]) -> bool:
    """Whether `path` (`rel` in the run) is the source-code snapshot's:
    a file it copied, or a directory holding nothing else."""
    if path.is_symlink():
        return False
    if not path.is_dir():
        return rel in sourcecode
    return all(f"{rel}/{p}" in sourcecode for p in tree_paths(path) if not (path / p).is_dir())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def reinstall(run: Run, resolved: list[Resolved]) -> None:
    """Replace what a run's dependencies installed before (on restart):
    the old links, copies and guild-runs.json go, the new ones come."""
    root = run.path.resolve()
    for sources in (run.get("deps") or {}).values():
        for source in (sources or {}).values():
            for rel in source.get("paths") or [] if isinstance(source, dict) else []:
                # Only what lies inside the run: Guild AI records the
                # paths of its sources (../../../proj/data.csv) here.
                path = run.path / rel
                try:
                    inside = path.parent.resolve().is_relative_to(root)
                except OSError:
                    inside = False
                if inside and not os.path.isabs(rel) and ".." not in Path(rel).parts and os.path.lexists(path):
                    _remove(path)
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


def _renames(spec: Any) -> list[tuple[str, str]]:
    """Guild AI's ``rename`` forms: ``'PATTERN REPL'``, ``NAME`` (the
    whole name), ``{pattern: P, repl: R}``, or a list of them."""
    if spec is None:
        return []
    import shlex

    items = spec if isinstance(spec, list) else [spec]
    out = []
    for item in items:
        if isinstance(item, dict):
            pattern, repl = str(item.get("pattern", "")), str(item.get("repl", ""))
        elif isinstance(item, str):
            try:
                parts = shlex.split(item)
            except ValueError as e:
                raise GuildError(f"invalid rename '{item}': {e}") from None
            if len(parts) == 1:
                pattern, repl = ".*", parts[0]
            elif len(parts) == 2:
                pattern, repl = parts
            else:
                raise GuildError(f"invalid rename '{item}': expected 'PATTERN REPL' or 'NAME'")
        else:
            raise GuildError(f"invalid rename {item!r}: expected a string or a mapping")
        try:
            re.compile(pattern)
        except re.error as e:
            raise GuildError(f"invalid rename pattern '{pattern}': {e}") from None
        out.append((pattern, repl))
    return out


def _renamed(name: str, renames: list[tuple[str, str]]) -> str:
    """The first rename that changes `name` wins (Guild AI's order)."""
    for pattern, repl in renames:
        try:
            new = re.sub(pattern, repl, name, count=1)
        except re.error as e:
            raise GuildError(f"cannot rename '{name}' ('{pattern}' -> '{repl}'): {e}") from None
        if new != name:
            return new
    return name


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
