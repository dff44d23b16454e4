"""Operations: guild.yml definitions and plain scripts.

An operation runs a Python module (``main: train --epochs 1``), a shell
command (``exec: ./train.sh ${flag_args}``) or, with no guild.yml at all,
a script named on the command line (``guild run train.py``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import GuildError, OpDefError
from .flagdefs import FLAG_TYPES, FlagDef, FlagsInfo
from .run import OpRef
from .sourcecode import SourceSpec, parse_spec

GUILDFILE_NAMES = ("guild.yml",)

# Keys an operation may have: every key Guild AI 0.9 reads. A key outside
# these is a warning naming file, line and key (as Guild AI warns), never
# an error: the rest of the file keeps working.
OP_KEYS = {
    "main", "exec", "steps", "flags", "flags-dest", "flags-import", "flags-import-skip",
    "output-scalars", "sourcecode", "label", "description", "requires",
    "optimizers", "default", "env", "env-secrets", "tags", "default-max-trials",
    "objective", "optimizer", "compare", "python-requires", "python-path", "plugins",
    "stoppable", "handle-keyboard-interrupt", "flag-encoder", "publish",
    "default-flag-arg-skip", "pip-freeze", "delete-on-success",
    "can-stage-trials", "run-attrs", "set-trace", "sourcecode-digest",
    # guild's own: the Dask worker resources each trial needs (--dask),
    # and the pruner that stops a batch's losing trials (--pruner).
    "dask-resources", "pruner",
}
FLAG_KEYS = {
    "default", "type", "choices", "required", "description", "alias", "arg-name",
    "arg-encoding", "arg-skip", "arg-switch", "arg-split", "allow-other",
    "env-name", "env-encoding", "null-label", "min", "max", "distribution",
}
# Keys of a top-level item: a model (and its parts), or config, include
# and package items.
MODEL_KEYS = {
    "model", "description", "extends", "params", "operations", "resources",
    "sourcecode", "python-requires", "references", "plugins", "extra",
    "default", "operation-defaults", "parents", "__parents__", "python-path",
}
TOP_ITEM_KINDS = ("model", "config", "include", "package")

_warned: set[tuple[str, int, str]] = set()


def forget_warnings() -> None:
    _warned.clear()


def warn(path: Path, line: int, msg: str) -> None:
    """One warning per file, line and message in a command."""
    key = (str(path), line, msg)
    if key in _warned:
        return
    _warned.add(key)
    shown = os.path.relpath(path)
    if shown.startswith(".."):
        shown = str(path)
    sys.stderr.write(f"WARNING: {shown}:{line}: {msg}\n")


FlagDetector = Callable[[Path], FlagsInfo | None]


@dataclass
class OpDef:
    """A runnable operation, resolved and ready to start."""

    name: str
    project_dir: Path
    opref: OpRef
    flagdefs: dict[str, FlagDef] = field(default_factory=dict)
    flags_dest: str = "args"
    main: str | None = None
    script: Path | None = None
    exec: str | None = None
    output_scalars: Any = None
    sourcecode: SourceSpec = field(default_factory=SourceSpec)
    label: str | None = None
    description: str = ""
    env: dict[str, str] = field(default_factory=dict)
    guildfile: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------
# guild.yml loading, with line numbers for errors
# ---------------------------------------------------------------------


class _Map(dict):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[Any, int]
    line: int


class _Seq(list):
    """A YAML sequence that remembers the line of each item."""

    lines: list[int]
    line: int


# Guards against YAML that is valid but hostile: nesting that would
# exhaust Python's stack, and aliases that multiply (a "billion laughs"
# document is a few hundred bytes that expands to gigabytes).
MAX_YAML_DEPTH = 100
MAX_YAML_VALUES = 200_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _loader(path: Path):
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            # Aliases do not come through here, only nodes written out.
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    line = self.peek_event().start_mark.line + 1
                    raise OpDefError(
                        f"{path}:{line}: guild.yml nests too deeply "
                        f"(more than {MAX_YAML_DEPTH} levels)"
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    def construct_mapping(loader, node, deep=False):
        # Keys written in this mapping come last once merge keys (<<) are
        # flattened in; only those may not repeat (a merged key may be
        # overridden, a key written twice is a mistake).
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        loader.flatten_mapping(node)
        first_own = len(node.value) - own
        m = _Map()
        m.lines = {}
        m.line = node.start_mark.line + 1
        seen: dict[Any, int] = {}
        for i, (key_node, val_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise OpDefError(f"{path}:{line}: invalid key {key!r}") from None
            if i >= first_own:
                if key in seen:
                    raise OpDefError(
                        f"{path}:{line}: duplicate key {key!r} (first on line {seen[key]})"
                    )
                seen[key] = line
            m[key] = loader.construct_object(val_node, deep=True)
            m.lines[key] = line
        return m

    def construct_sequence(loader, node):
        s = _Seq(loader.construct_object(child, deep=True) for child in node.value)
        s.line = node.start_mark.line + 1
        s.lines = [child.start_mark.line + 1 for child in node.value]
        return s

    Loader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    Loader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence
    )
    return Loader


def _check_expansion(path: Path, root) -> None:
    """Refuse a document whose aliases refer to themselves or expand it
    past `MAX_YAML_VALUES` values, before anything is constructed.

    Sizes are counted once per node (aliases share nodes), without
    recursion, so this costs time in the size of the text, not of the
    expansion.
    """
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        if done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_YAML_VALUES:
                raise OpDefError(
                    f"{path}:{node.start_mark.line + 1}: guild.yml expands to too much "
                    f"data (more than {MAX_YAML_VALUES:,} values through aliases)"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise OpDefError(
                f"{path}:{node.start_mark.line + 1}: recursive alias (a value that contains itself)"
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _read_guildfile(path: Path) -> Any:
    """The YAML data of a guild.yml, with line numbers (None when empty)."""
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise OpDefError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise OpDefError(f"{path}:{line}: cannot read: not UTF-8 text") from None
    loader = _loader(path)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(path, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise OpDefError(f"{path}{line}: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise OpDefError(f"{path}: {e}") from None
    finally:
        loader.dispose()


def load_guildfile(path: Path) -> dict[str, dict[str, Any]]:
    """Operations defined in a guild.yml, by name (``model:op``, or
    ``op`` for the anonymous model).

    Accepts the operation-only format (a mapping of operations) and the
    full format (a list of ``model``, ``config``, ``include`` and
    ``package`` items), expanded as Guild AI expands them: top-level
    ``include`` files, ``extends``, ``params``, ``$include``,
    ``operation-defaults`` and ``resources``. Every value an operation
    uses is checked here, so a bad guild.yml is an `OpDefError` naming
    the file, line and key, whatever the command.
    """
    models = _load_models(path)
    return models.operations() if models is not None else {}


@dataclass
class ModelInfo:
    """A guild.yml model as `guild help` shows it: its name ("" for the
    anonymous model), description and references after ``extends`` and
    ``params``, and its operations' names in `load_guildfile`'s keys."""

    name: str
    description: str
    references: list[str]
    operations: list[str]


def load_models(path: Path) -> tuple[dict[str, dict[str, Any]], list[ModelInfo]]:
    """`load_guildfile`'s operations, and the models they belong to, in
    file order (models with no operations too)."""
    models = _load_models(path)
    if models is None:
        return {}, []
    ops = models.operations()
    infos = []
    for name, item in models.models:
        data = models._extended(item, [], [models.items])
        refs = data.get("references") or []
        infos.append(ModelInfo(
            name=name,
            description=str(data.get("description") or "").strip(),
            references=[str(r) for r in (refs if isinstance(refs, list) else [refs])],
            operations=[op for op in ops if op.rpartition(":")[0] == name],
        ))
    return ops, infos


def _load_models(path: Path) -> "_Models | None":
    data = _read_guildfile(path)
    if data is None:
        return None
    if isinstance(data, dict):
        # Operation-only format: the anonymous model's operations.
        item = _new_map(_line(data))
        item["model"] = ""
        item["operations"] = data
        item.lines["operations"] = _line(data)
        item.src = path
        items = [item]
    elif isinstance(data, list):
        items = _top_items(path, data, [path.resolve()])
    else:
        raise OpDefError(f"{path}:1: expected a mapping of operations")
    return _Models(path, items)


# --- the top-level list ------------------------------------------------

# What a model takes from the models and configs it extends.
INHERITABLE = (
    "description", "extra", "flags", "operation-defaults", "operations",
    "params", "references", "resources", "sourcecode",
)
MAX_EXTENDS_DEPTH = 100
_INCLUDE_REF_P1 = re.compile(r"([^:#]*):([^#]+)(?:#(.+))?")
_INCLUDE_REF_P2 = re.compile(r"([^:#]+)(?:#(.+))?")
_PARAM_P = re.compile(r"({{.*?}})")


def _new_map(line: int) -> _Map:
    m = _Map()
    m.lines, m.line = {}, line
    return m


def _copy(val: Any) -> Any:
    """A deep copy of loaded YAML that keeps its line numbers."""
    if isinstance(val, dict):
        m = _new_map(_line(val))
        for k, v in val.items():
            m[k] = _copy(v)
            m.lines[k] = _line(val, k)
        if hasattr(val, "src"):
            m.src = val.src
        return m
    if isinstance(val, list):
        s = _Seq(_copy(v) for v in val)
        s.line = _line(val)
        s.lines = [_line(val, i) for i in range(len(val))]
        return s
    return val


def _set(m: dict, key: Any, val: Any, line: int) -> None:
    m[key] = val
    if isinstance(m, _Map):
        m.lines[key] = line


def _str_list(path: Path, item: dict, key: str) -> list[str]:
    """`include` and `extends`: a name, a list of names or a YAML list
    written as a string (``'[a, b]'``), as Guild AI reads them."""
    val = item.get(key)
    if val is None:
        return []
    if isinstance(val, str):
        if val.startswith("[") and val.endswith("]"):
            import yaml

            try:
                val = yaml.safe_load(val)
            except yaml.YAMLError:
                val = None
        else:
            return [val]
    if isinstance(val, list) and all(isinstance(v, str) for v in val):
        return list(val)
    raise OpDefError(f"{path}:{_line(item, key)}: {key} must be a name or a list of names")


def _item_path(item: Any, default: Path) -> Path:
    return getattr(item, "src", None) or default


def _top_items(path: Path, data: list, including: list[Path]) -> list[_Map]:
    """The items of a top-level list, each file named in an ``include``
    item replaced by its own items (recursively), each item knowing its
    file (``src``)."""
    items: list[_Map] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise OpDefError(f"{path}:{_line(data, i)}: expected a mapping, got {item!r}")
        item.src = path
        if "include" not in item:
            items.append(item)
            continue
        for ref in _str_list(path, item, "include"):
            where = f"{path}:{_line(item, 'include')}"
            inc = _find_include(path.parent, ref)
            if inc is None:
                raise OpDefError(
                    f"{where}: cannot find include '{ref}' (an include is a file "
                    "beside this guild.yml or a Python package with a guild.yml)"
                )
            if inc in including:
                chain = " -> ".join(_shown(p) for p in including + [inc])
                raise OpDefError(f"{where}: cycle in 'include' ({chain})")
            inc_data = _read_guildfile(inc)
            if inc_data is None:
                continue
            if not isinstance(inc_data, list):
                raise OpDefError(f"{inc}:1: an included guild file must be a list of items")
            items.extend(_top_items(inc, inc_data, including + [inc]))
    return items


def _shown(path: Path) -> str:
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _find_include(base: Path, ref: str) -> Path | None:
    local = base / ref
    if local.is_file():
        return local.resolve()
    if local.is_dir() and (local / "guild.yml").is_file():
        return (local / "guild.yml").resolve()
    return _sys_path_guildfile(ref.replace(".", os.sep))


def _sys_path_guildfile(rel: str) -> Path | None:
    for entry in sys.path:
        candidate = Path(entry or ".") / rel / "guild.yml"
        if candidate.is_file():
            return candidate.resolve()
    return None


def _item_kind(path: Path, item: dict) -> tuple[str, str]:
    used = [k for k in TOP_ITEM_KINDS if k in item]
    if not used:
        if "operations" in item:
            return "model", ""
        raise OpDefError(
            f"{path}:{_line(item)}: missing type (one of: {', '.join(TOP_ITEM_KINDS)})"
        )
    if len(used) > 1:
        raise OpDefError(f"{path}:{_line(item, used[1])}: more than one type ({', '.join(used)})")
    kind = used[0]
    name = item[kind]
    if name is None and kind == "model":
        name = ""
    if not _is_name(name):
        raise OpDefError(f"{path}:{_line(item, kind)}: {kind} must be a string")
    return kind, str(name)


def _coerce_ops(path: Path, ops: Any) -> Any:
    """An operation written as a string is its ``main`` (``op: guild.pass``);
    an empty one is a mapping. Each knows its file."""
    if not isinstance(ops, dict):
        return ops
    for name, op in list(ops.items()):
        if name == "$include":
            continue
        line = _line(ops, name)
        if op is None or isinstance(op, str):
            m = _new_map(line)
            if op is not None:
                _set(m, "main", op, line)
            ops[name] = op = m
        if isinstance(op, dict) and not hasattr(op, "src"):
            op.src = path
    return ops


class _Models:
    """The models of a guild file, expanded into operations."""

    def __init__(self, path: Path, items: list[_Map]):
        self.path = path
        self.items = items
        self.named: dict[str, _Map] = {}  # models and configs, first wins
        self.models: list[tuple[str, _Map]] = []
        seen_models: dict[str, _Map] = {}
        for item in items:
            src = _item_path(item, path)
            kind, name = _item_kind(src, item)
            if kind == "model":
                if "operations" in item and item["operations"] is not None:
                    if not isinstance(item["operations"], dict):
                        raise OpDefError(f"{src}:{_line(item, 'operations')}: operations must be a mapping")
                    _coerce_ops(src, item["operations"])
                for key in item:
                    if key not in MODEL_KEYS:
                        warn(src, _line(item, key), f"unknown attribute '{key}' in model (ignored)")
                if name in seen_models:
                    raise OpDefError(f"{src}:{_line(item, 'model')}: duplicate model '{name}'")
                seen_models[name] = item
                self.models.append((name, item))
            elif kind == "config":
                ops = item.get("operations")
                if isinstance(ops, dict):
                    _coerce_ops(src, ops)
            if kind in ("model", "config"):
                self.named.setdefault(name, item)
        self._pkg_cache: dict[str, list[_Map]] = {}
        self._memo: dict[int, tuple[_Map, list]] = {}
        self._names_of: dict[int, dict[str, _Map]] = {}  # a package's items: its names

    # -- extends --------------------------------------------------------

    def _parent(self, name: str, child: _Map, seen: list[str], search: list[list[_Map]]) -> _Map:
        src = _item_path(child, self.path)
        where = f"{src}:{_line(child, 'extends')}"
        if name in seen:
            raise OpDefError(f"{where}: cycle in 'extends' ({' -> '.join(seen + [name])})")
        if "/" in name:
            pkg, _, model = name.partition("/")
            items = self._pkg_items(pkg, where)
            if not model:
                raise OpDefError(f"{where}: invalid model or config reference '{name}': missing model name")
            found = _named_item(items, model)
            if found is None:
                raise OpDefError(f"{where}: undefined model or config '{model}' in package '{pkg}'")
            if items not in search:
                search.append(items)
            return self._extended(found, seen + [name], search, params=False)
        # A name is looked up in the file (or package) the child is in.
        found = self._names_of.get(id(child), self.named).get(name)
        if found is None:
            raise OpDefError(f"{where}: undefined model or config '{name}' in 'extends'")
        return self._extended(found, seen + [name], search, params=False)

    def _pkg_items(self, pkg: str, where: str) -> list[_Map]:
        if pkg not in self._pkg_cache:
            gf = _sys_path_guildfile(pkg.replace("-", "_").replace(".", os.sep))
            if gf is None:
                raise OpDefError(f"{where}: cannot find guild file for package '{pkg}'")
            data = _read_guildfile(gf)
            items = _top_items(gf, data, [gf]) if isinstance(data, list) else []
            names: dict[str, _Map] = {}
            for item in items:
                ops = item.get("operations")
                if isinstance(ops, dict):
                    _coerce_ops(gf, ops)
                name = _item_name(item)
                if name is not None:
                    names.setdefault(name, item)
            for item in items:
                self._names_of[id(item)] = names
            self._pkg_cache[pkg] = items
        return self._pkg_cache[pkg]

    def _extended(self, item: _Map, seen: list[str], search: list[list[_Map]], params: bool = True) -> _Map:
        """`item` with its parents applied (and, for a model, its params).

        A parent's expansion is computed once (parents are only read
        when applied), so shared ancestors cost no more than a chain."""
        if not params:
            memo = self._memo.get(id(item))
            if memo is not None:
                for items in memo[1]:
                    if items not in search:
                        search.append(items)
                return memo[0]
        if len(seen) > MAX_EXTENDS_DEPTH:
            raise OpDefError(
                f"{_item_path(item, self.path)}:{_line(item, 'extends')}: extends nests too deeply "
                f"(more than {MAX_EXTENDS_DEPTH} levels)"
            )
        searched = len(search)
        data = _copy(item)
        for name in _str_list(_item_path(item, self.path), item, "extends"):
            parent = self._parent(name, item, seen, search)
            for key in INHERITABLE:
                if key in parent:
                    if key not in data:
                        _set(data, key, _copy(parent[key]), _line(parent, key))
                    elif key == "operations":
                        _merge_ops(parent[key], data[key])
                    elif key == "flags":
                        _merge_flags(parent[key], data[key])
                    elif key == "operation-defaults":
                        _merge_op(parent[key], data[key])
                    else:
                        _merge(parent[key], data[key])
        if params:
            return _resolve_params(data, _params(data))
        self._memo[id(item)] = (data, search[searched:])
        return data

    # -- $include ---------------------------------------------------------

    def _section(self, owner: dict, section: str, search: list[list[_Map]], src: Path) -> _Map:
        """`owner[section]` with its ``$include`` references applied
        (first, then the section's own entries over them)."""
        own = owner.get(section)
        resolved = _new_map(_line(own) if isinstance(own, _Map) else _line(owner, section))
        self._apply_section(owner.get(section) or {}, section, search, src, resolved, set())
        return resolved

    def _apply_section(self, data, section, search, src, resolved, seen_refs) -> None:
        if not isinstance(data, dict):
            return
        if "$include" in data:
            line = _line(data, "$include")
            val = data["$include"]
            refs = [val] if isinstance(val, str) else val
            if not (isinstance(refs, list) and all(isinstance(r, str) for r in refs)):
                raise OpDefError(f"{src}:{line}: $include must be a reference or a list of references")
            for ref in refs:
                if ref in seen_refs:
                    continue
                seen_refs.add(ref)
                if len(seen_refs) > MAX_EXTENDS_DEPTH:
                    raise OpDefError(f"{src}:{line}: $include nests too deeply (more than {MAX_EXTENDS_DEPTH} includes)")
                included = self._include_target(ref, section, search, f"{src}:{line}")
                self._apply_section(included, section, search, src, resolved, seen_refs)
        for name, val in data.items():
            if name == "$include":
                continue
            line = _line(data, name)
            cur = resolved.get(name)
            if section == "flags":
                if name in resolved:
                    val = _overlay_flag(cur, val)
                else:
                    val = _copy(val)
            elif isinstance(val, dict) and isinstance(cur, dict):
                merged = _copy(cur)
                for k, v in val.items():
                    _set(merged, k, _copy(v), _line(val, k))
                val = merged
            else:
                val = _copy(val)
            _set(resolved, name, val, line)

    def _include_target(self, ref: str, section: str, search, where: str) -> dict:
        m = _INCLUDE_REF_P1.match(ref)
        if m:
            model, op, attrs = m.groups()
        else:
            m = _INCLUDE_REF_P2.match(ref)
            if not m:
                raise OpDefError(
                    f"{where}: invalid include reference '{ref}': expected "
                    "CONFIG[#ATTRS] or MODEL:OPERATION[#ATTRS]"
                )
            model, attrs = m.groups()
            op = None
        for items in search:
            for item in items:
                if _item_name(item) != model:
                    continue
                if op:
                    ops = item.get("operations")
                    op_data = ops.get(op) if isinstance(ops, dict) else None
                    if not isinstance(op_data, dict):
                        continue
                    data = op_data.get(section) or {}
                else:
                    data = item.get(section) or {}
                if attrs:
                    names = {a.strip() for a in attrs.split(",")}
                    data = {k: v for k, v in data.items() if k in names} if isinstance(data, dict) else {}
                return data
        raise OpDefError(f"{where}: invalid include reference '{ref}': cannot find target")

    # -- operations -------------------------------------------------------

    def operations(self) -> dict[str, dict[str, Any]]:
        expanded = []
        for name, item in self.models:
            search = [self.items]
            data = self._extended(item, [], search)
            src = _item_path(item, self.path)
            resources = self._section(data, "resources", search, src) if data.get("resources") else {}
            expanded.append((name, item, data, search, src, resources))
        all_resources = {name: res for name, _, _, _, _, res in expanded}
        ops: dict[str, dict[str, Any]] = {}
        for model, item, data, search, src, resources in expanded:
            ops_data = data.get("operations")
            if ops_data is None:
                continue
            if not isinstance(ops_data, dict):
                raise OpDefError(f"{src}:{_line(data, 'operations')}: operations must be a mapping")
            section = self._section(data, "operations", search, src)
            _coerce_ops(src, section)
            defaults = data.get("operation-defaults")
            if defaults is not None and not isinstance(defaults, dict):
                raise OpDefError(f"{src}:{_line(data, 'operation-defaults')}: operation-defaults must be a mapping")
            for name, op in section.items():
                where = f"{src}:{_line(section, name)}"
                if not _is_name(name):
                    raise OpDefError(f"{where}: invalid operation name {name!r} (quote it for a string)")
                if not isinstance(op, dict):
                    raise OpDefError(f"{where}: operation '{name}' must be a mapping")
                op_src = _op_path(op, src)
                for key, val in (defaults or {}).items():
                    if key not in op:
                        _set(op, key, _copy(val), _line(defaults, key))
                if isinstance(op.get("flags"), dict):
                    _set(op, "flags", self._section(op, "flags", search, op_src), _line(op, "flags"))
                if isinstance(op.get("steps"), list):
                    self._step_flag_includes(op["steps"], search, op_src)
                if "requires" in op:
                    self._named_resources(op, model, resources, all_resources, op_src)
                if "sourcecode" in data:
                    _fold_sourcecode(data, op)
                _check_op(op_src, str(name), op)
                full = f"{model}:{name}" if model else str(name)
                ops[full] = op
        return ops

    def _step_flag_includes(self, steps: list, search, src: Path) -> None:
        """A step's ``flags: {$include: REF}`` takes the flag values of
        REF (``:op`` is an operation of the anonymous model): each
        included flag's default, then the step's own values."""
        for step in steps:
            if not (isinstance(step, dict) and isinstance(step.get("flags"), dict) and "$include" in step["flags"]):
                continue
            resolved = self._section(step, "flags", search, src)
            for name, val in list(resolved.items()):
                if isinstance(val, dict):
                    resolved[name] = val.get("default")
            _set(step, "flags", resolved, _line(step, "flags"))

    def _named_resources(self, op, model, resources, all_resources, src) -> None:
        """`requires:` entries naming a resource (``data``,
        ``model:data``, ``resource: data``) replaced by the resource's
        sources, as mappings `deps` reads."""
        requires = op["requires"]
        line = _line(op, "requires")
        if isinstance(requires, dict) and "resource" not in requires:
            return
        entries = requires if isinstance(requires, list) else [requires]
        out = _Seq()
        out.line, out.lines = line, []
        for i, entry in enumerate(entries):
            entry_line = _line(requires, i) if isinstance(requires, list) else line
            ref = entry
            if isinstance(entry, dict) and set(entry) <= {"resource", "description"} and isinstance(entry.get("resource"), str):
                ref = entry["resource"]
            if not isinstance(ref, str):
                out.append(entry)
                out.lines.append(entry_line)
                continue
            res_model, _, res_name = ref.rpartition(":")
            pool = all_resources.get(res_model, {}) if ":" in ref else resources
            if res_name not in pool:
                raise OpDefError(f"{src}:{entry_line}: requires: undefined resource '{ref}'")
            out.append(_resource_dep(pool[res_name], res_name, entry_line, f"{src}:{entry_line}"))
            out.lines.append(entry_line)
        _set(op, "requires", out, line)


def _named_item(items: list[_Map], name: str) -> _Map | None:
    for item in items:
        if _item_name(item) == name:
            return item
    return None


def _item_name(item: dict) -> str | None:
    for kind in ("model", "config"):
        if kind in item:
            return "" if item[kind] is None else str(item[kind])
    if "operations" in item and not any(k in item for k in TOP_ITEM_KINDS):
        return ""
    return None


def _op_path(op: dict, default: Path) -> Path:
    return getattr(op, "src", None) or default


def _resource_dep(res: Any, name: str, line: int, where: str) -> _Map:
    """A named resource as the inline resource `deps` reads: ``name:``
    (the resource's) and ``sources:`` (a list of sources), with the
    resource's other attributes (``target-path``, ``description``...)."""
    out = _new_map(line)
    if isinstance(res, list):
        _set(out, "sources", _copy(res), line)
    elif isinstance(res, dict) and "sources" in res:
        for k, v in res.items():
            _set(out, k, _copy(v), _line(res, k))
    elif isinstance(res, dict):
        sources = _Seq([_copy(res)])
        sources.line, sources.lines = _line(res), [_line(res)]
        _set(out, "sources", sources, line)
    else:
        raise OpDefError(f"{where}: resource '{name}' must be a list of sources or a mapping with 'sources'")
    if "name" not in out:
        _set(out, "name", name, line)
    return out


# -- merging parents -------------------------------------------------


def _merge(parent: Any, child: Any) -> None:
    """Guild AI's merge: a key the child lacks is copied from the parent,
    a mapping both have is merged the same way; anything else is the
    child's."""
    if not (isinstance(parent, dict) and isinstance(child, dict)):
        return
    for key, pval in parent.items():
        if key not in child:
            _set(child, key, _copy(pval), _line(parent, key))
        else:
            _merge(pval, child[key])


def _merge_ops(parent: Any, child: Any) -> None:
    if not (isinstance(parent, dict) and isinstance(child, dict)):
        return
    for name, pop in parent.items():
        if name not in child:
            _set(child, name, _copy(pop), _line(parent, name))
        elif name == "$include":
            continue
        else:
            cop = child[name]
            if cop is None or isinstance(cop, str):
                m = _new_map(_line(child, name))
                if cop is not None:
                    _set(m, "main", cop, _line(child, name))
                child[name] = cop = m
            if isinstance(pop, str):
                if "main" not in cop and "exec" not in cop:
                    _set(cop, "main", pop, _line(parent, name))
                continue
            _merge_op(pop, cop)


def _merge_op(parent: Any, child: Any) -> None:
    if not (isinstance(parent, dict) and isinstance(child, dict)):
        return
    for key, pval in parent.items():
        if key not in child:
            if key in ("main", "exec") and ("main" in child or "exec" in child):
                continue  # the child's command replaces the parent's
            _set(child, key, _copy(pval), _line(parent, key))
        elif key == "flags":
            _merge_flags(pval, child[key])
        else:
            _merge(pval, child[key])


def _merge_flags(parent: Any, child: Any) -> None:
    """Flags merge attribute by attribute: a child's ``lr: 0.2`` keeps
    the parent's description of ``lr`` and changes its default."""
    if not (isinstance(parent, dict) and isinstance(child, dict)):
        return
    for name, pval in parent.items():
        if name not in child:
            _set(child, name, _copy(pval), _line(parent, name))
        elif name != "$include":
            _set(child, name, _overlay_flag(pval, child[name], keep_child=True), _line(child, name))


def _overlay_flag(base: Any, own: Any, keep_child: bool = False) -> Any:
    """Flag `own` over flag `base` (each a default or a mapping)."""
    if isinstance(own, dict):
        out = _copy(own)
        if isinstance(base, dict):
            if keep_child:
                _merge(base, out)
                return out
            merged = _copy(base)
            for k, v in own.items():
                _set(merged, k, _copy(v), _line(own, k))
            return merged
        if "default" not in out:
            _set(out, "default", base, _line(own))
        return out
    if isinstance(base, dict):
        merged = _copy(base)
        _set(merged, "default", own, _line(base))
        return merged
    return own


# -- params ---------------------------------------------------------


def _params(data: dict) -> dict[str, Any]:
    params = data.get("params")
    if not isinstance(params, dict):
        return {}
    out = {}
    for name, val in params.items():
        seen = {val} if isinstance(val, str) else set()
        for _ in range(100):
            if not isinstance(val, str):
                break
            val = _resolve_str(val, params)
            if isinstance(val, str) and val in seen:
                break
            if isinstance(val, str):
                seen.add(val)
        out[name] = val
    return out


def _resolve_params(val: Any, params: dict[str, Any]) -> Any:
    """``{{NAME}}`` in every string value replaced by the param; a value
    that is only a reference takes the param's type (``'{{n}}'`` is 10.0
    when ``n: 10.0``)."""
    if not params:
        return val
    if isinstance(val, dict):
        for k in list(val):
            val[k] = _resolve_params(val[k], params)
        return val
    if isinstance(val, list):
        for i, v in enumerate(val):
            val[i] = _resolve_params(v, params)
        return val
    if isinstance(val, str):
        return _resolve_str(val, params)
    return val


def _resolve_str(s: str, params: dict[str, Any]) -> Any:
    if "{{" not in s:
        return s
    parts = [p for p in _PARAM_P.split(s) if p != ""]
    resolved = []
    for part in parts:
        if part.startswith("{{") and part.endswith("}}") and part[2:-2].strip() in params:
            resolved.append(params[part[2:-2].strip()])
        else:
            resolved.append(part)
    if len(resolved) == 1:
        return resolved[0]
    return "".join(str(p) for p in resolved)


# -- model sourcecode --------------------------------------------------


def _fold_sourcecode(model: dict, op: dict) -> None:
    """A model's ``sourcecode`` comes before each operation's, as Guild AI
    applies them: the model's rules, then the operation's; the
    operation's root and dest over the model's; a model's ``no`` unless
    the operation selects files itself."""
    from .sourcecode import coerce_config

    try:
        msc = coerce_config(_plain(model.get("sourcecode")))
        osc = coerce_config(_plain(op.get("sourcecode")))
    except OpDefError:
        return  # reported with its line when the operation is checked
    line = _line(op, "sourcecode") if "sourcecode" in op else _line(model, "sourcecode")
    if osc["disabled"] or (msc["disabled"] and not osc["select"]):
        _set(op, "sourcecode", False, line)
        return
    folded = _new_map(line)
    select = msc["select"] + osc["select"]
    if select:
        folded["select"] = select
    for key in ("root", "dest", "digest"):
        val = osc[key] if osc[key] is not None else msc[key]
        if val is not None:
            folded[key] = val
    for key in folded:
        folded.lines[key] = line
    _set(op, "sourcecode", folded, line)


def _line(m: Any, key: Any = None) -> int:
    """The line of `key` in a loaded mapping (an index in a sequence),
    else of the mapping itself."""
    if isinstance(m, _Map):
        return m.lines.get(key, m.line) if key is not None else m.line
    if isinstance(m, _Seq):
        if isinstance(key, int) and 0 <= key < len(m.lines):
            return m.lines[key]
        return m.line
    return 1


def _is_name(val: Any) -> bool:
    """A name YAML may give as a number (``5:``) but not as a boolean,
    null or anything else."""
    return isinstance(val, (str, int)) and not isinstance(val, bool)


# guild.yml's flags-dest, as Guild AI reads it: exact words and prefixes
# that need a name after the colon.
FLAGS_DEST_WORDS = ("args", "globals", "none")
FLAGS_DEST_PREFIXES = ("global:", "dict:", "namespace:", "args:", "config:")
FLAGS_DEST_FORMS = (
    "args", "globals", "global:NAME", "dict:NAME", "namespace:NAME",
    "args:NAME", "config:PATH", "none",
)


def _check_op(path: Path, name: str, op: dict) -> None:
    """Every attribute an operation may have, checked for its shape, so
    nothing malformed is silently ignored or fails later with no line."""

    def fail(key: str, msg: str) -> None:
        raise OpDefError(f"{path}:{_line(op, key)}: {msg}")

    for key in op:
        if key not in OP_KEYS:
            warn(path, _line(op, key), f"unknown attribute '{key}' in operation '{name}' (ignored)")
    if "main" in op and "exec" in op:
        raise OpDefError(f"{path}:{_line(op)}: operation '{name}' has both main and exec")
    for key in ("main", "exec", "label", "description"):
        if key in op and op[key] is not None and not isinstance(op[key], str):
            fail(key, f"{key} must be a string")
    for key in ("main", "exec"):
        # Split as the runner will split it, so a bad quote is reported
        # here, with its line, and not as the run starts.
        cmd = op.get(key)
        if cmd is None:
            continue
        if not cmd.strip():
            fail(key, f"{key} is empty")
        try:
            shlex.split(cmd)
        except ValueError as e:
            fail(key, f"invalid {key}: {str(e).lower()} in {cmd!r}")
    if op.get("flags-dest") is not None:
        dest = op["flags-dest"]
        if not isinstance(dest, str) or not (
            dest in FLAGS_DEST_WORDS
            or any(dest.startswith(p) and len(dest) > len(p) for p in FLAGS_DEST_PREFIXES)
        ):
            fail("flags-dest", f"invalid flags-dest {dest!r} (expected one of: {', '.join(FLAGS_DEST_FORMS)})")
    env = op.get("env")
    if env is not None:
        if not isinstance(env, dict):
            fail("env", "env must be a mapping of names to values")
        for var, val in env.items():
            if not _is_name(var):
                raise OpDefError(f"{path}:{_line(env, var)}: invalid env name {var!r}")
            if val is not None and not _is_scalar(val):
                raise OpDefError(
                    f"{path}:{_line(env, var)}: env value for '{var}' must be a string, "
                    f"number or boolean (got {_kind(val)})"
                )
    flags = op.get("flags")
    if flags is not None and not isinstance(flags, dict):
        fail("flags", "flags must be a mapping")
    for fname, fdata in (flags or {}).items():
        if not _is_name(fname):
            raise OpDefError(
                f"{path}:{_line(flags, fname)}: invalid flag name {fname!r} (quote it for a string)"
            )
        _check_flag(path, flags, str(fname), fdata)
    imports = op.get("flags-import")
    if not (imports is None or isinstance(imports, (bool, str)) or _is_name_list(imports)):
        fail("flags-import", "flags-import must be yes, no, all or a list of flag names")
    skip = op.get("flags-import-skip")
    if not (skip is None or isinstance(skip, str) or _is_name_list(skip)):
        fail("flags-import-skip", "flags-import-skip must be a list of flag names")
    if "output-scalars" in op:
        _check_output_scalars(path, op)
    if op.get("sourcecode") is not None:
        _check_sourcecode(path, op)
    requires = op.get("requires")
    if not (
        requires is None
        or isinstance(requires, dict)
        or (isinstance(requires, list) and all(isinstance(r, dict) for r in requires))
    ):
        fail("requires", "requires must be a mapping or a list of mappings")
    optimizers = op.get("optimizers")
    if not (
        optimizers is None
        or _is_name_list(optimizers)
        or (isinstance(optimizers, dict) and all(
            _is_name(k) and (v is None or isinstance(v, (str, dict))) for k, v in optimizers.items()
        ))
    ):
        fail("optimizers", "optimizers must be a mapping or a list of names")
    if op.get("default") is not None and not isinstance(op["default"], bool):
        fail("default", "default must be yes or no")
    tags = op.get("tags")
    if not (tags is None or isinstance(tags, str) or (
        isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    )):
        fail("tags", "tags must be a string or a list of strings")
    trials = op.get("default-max-trials")
    if trials is not None and not (_is_name(trials) and isinstance(trials, int) and trials >= 1):
        fail("default-max-trials", f"default-max-trials must be a positive integer (got {trials!r})")
    objective = op.get("objective")
    if not (objective is None or isinstance(objective, str) or (
        isinstance(objective, dict)
        and len(objective) == 1
        and next(iter(objective)) in ("minimize", "maximize")
        and isinstance(next(iter(objective.values())), str)
    )):
        fail("objective", "objective must be a scalar name or a mapping with minimize or maximize")
    resources = op.get("dask-resources")
    if resources is not None and not (
        isinstance(resources, dict) and resources and all(
            isinstance(n, str) and n.strip() and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for n, v in resources.items()
        )
    ):
        fail("dask-resources", "dask-resources must be a mapping of resource names to positive numbers, as {gpu: 1}")


def _check_output_scalars(path: Path, op: dict) -> None:
    """Guild AI's forms (a mapping TAG: REGEX, a list of mappings or
    regexes, a regex, no/null), each regex compiled as the run will."""
    from .scalars import compile_patterns

    config = op["output-scalars"]
    line = _line(op, "output-scalars")
    if config is None or config is False:
        return
    if isinstance(config, (str, dict)):
        items, lines = [config], [line]
    elif isinstance(config, list):
        items, lines = config, [_line(config, i) for i in range(len(config))]
    else:
        raise OpDefError(
            f"{path}:{line}: invalid output-scalars {config!r}: expected a mapping "
            "(TAG: REGEX), a list, a regex or no"
        )
    for item, item_line in zip(items, lines):
        if isinstance(item, dict):
            parts = [({key: val}, _line(item, key)) for key, val in item.items()]
        else:
            parts = [(item, item_line)]
        for part, part_line in parts:
            try:
                compile_patterns([_plain(part)])
            except OpDefError as e:
                raise OpDefError(f"{path}:{part_line}: {e}") from None


SOURCECODE_KEYS = {"select", "root", "dest", "digest", "disabled"}


def _check_sourcecode(path: Path, op: dict) -> None:
    config = op["sourcecode"]
    if isinstance(config, dict):
        for key, val in config.items():
            where = f"{path}:{_line(config, key)}"
            if key not in SOURCECODE_KEYS:
                warn(path, _line(config, key), f"unknown attribute '{key}' in sourcecode (ignored)")
                continue
            if key in ("root", "dest") and val is not None and not isinstance(val, str):
                raise OpDefError(f"{where}: sourcecode {key} must be a path")
    try:
        parse_spec(_plain(config))
    except OpDefError as e:
        raise OpDefError(f"{path}:{_line(op, 'sourcecode')}: {e}") from None


def _check_flag(path: Path, flags: dict, name: str, data: Any) -> None:
    if not isinstance(data, dict):
        _check_value(path, _line(flags, name), f"invalid default for flag '{name}'", data)
        return

    def fail(key: str, msg: str) -> None:
        raise OpDefError(f"{path}:{_line(data, key)}: {msg}")

    for key in data:
        if key not in FLAG_KEYS:
            warn(path, _line(data, key), f"unknown attribute '{key}' in flag '{name}' (ignored)")
    ftype = data.get("type")
    if ftype is not None and ftype != "auto" and ftype not in FLAG_TYPES:
        fail("type", f"invalid type '{ftype}' for flag '{name}' (expected one of: {', '.join(FLAG_TYPES)})")
    if "default" in data:
        _check_value(path, _line(data, "default"), f"invalid default for flag '{name}'", data["default"])
    choices = data.get("choices")
    if choices is not None and not isinstance(choices, list):
        fail("choices", "choices must be a list")
    for i, choice in enumerate(choices or []):
        line = _line(choices, i)
        if isinstance(choice, dict):
            if "value" not in choice:
                raise OpDefError(f"{path}:{line}: invalid choice for flag '{name}': a choice mapping needs a 'value'")
            choice = choice["value"]
        _check_value(path, line, f"invalid choice for flag '{name}'", choice)
    for key in ("description", "arg-name", "null-label", "distribution"):
        if data.get(key) is not None and not isinstance(data[key], str):
            fail(key, f"{key} of flag '{name}' must be a string")
    if data.get("required") is not None and not isinstance(data["required"], bool):
        fail("required", f"required of flag '{name}' must be yes or no")
    if data.get("arg-switch") is not None and not _is_scalar(data["arg-switch"]):
        fail("arg-switch", f"arg-switch of flag '{name}' must be a string, number or boolean")
    for key in ("min", "max"):
        val = data.get(key)
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
            fail(key, f"{key} of flag '{name}' must be a number")
    if data.get("default") is not None and ("type" in data or "choices" in data) and data.get("type") not in ("path", "existing-path"):
        # A default is checked as the same value given on the command
        # line would be, so `type: boolean` takes `default: 0` as `x=0`
        # does (Guild AI refuses such a run too, but only once started).
        from .errors import FlagError
        from .flags import coerce, encode_value

        flagdef = _guildfile_flagdef(name, _plain(data))
        default = flagdef.default
        try:
            coerce(flagdef, default if isinstance(default, str) else encode_value(default))
        except FlagError as e:
            fail("default", f"default of flag '{name}': {e}")


def _check_value(path: Path, line: int, what: str, val: Any) -> None:
    problem = _value_problem(val)
    if problem:
        raise OpDefError(f"{path}:{line}: {what}: {problem}")


def _value_problem(val: Any) -> str | None:
    """Why `val` cannot be a flag value, or None. Values are Guild AI's:
    scalars, lists (nested lists too) and mappings. A list may not hold a
    mapping: a list is a value list (a batch) or a list-valued flag's
    value, and neither has a command-line form for a mapping item."""
    stack = [(val, False)]
    while stack:
        item, in_list = stack.pop()
        if item is None or _is_scalar(item):
            continue
        if isinstance(item, dict):
            if in_list:
                return "a list may not contain a mapping"
            bad_keys = [k for k in item if not _is_scalar(k)]
            if bad_keys:
                return f"invalid key {bad_keys[0]!r}"
            stack.extend((v, False) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, True) for v in item)
        else:
            return f"{item} is {_kind(item)} (quote it for a string)"
    return None


def _is_scalar(val: Any) -> bool:
    return isinstance(val, (str, int, float, bool))


def _is_name_list(val: Any) -> bool:
    return isinstance(val, list) and all(_is_name(v) for v in val)


def _kind(val: Any) -> str:
    import datetime

    if isinstance(val, dict):
        return "a mapping"
    if isinstance(val, list):
        return "a list"
    if isinstance(val, datetime.datetime):
        return "a timestamp"
    if isinstance(val, datetime.date):
        return "a date"
    if isinstance(val, bytes):
        return "binary data"
    if isinstance(val, (set, frozenset)):
        return "a set"
    if isinstance(val, tuple):
        return "an ordered-mapping entry"
    return f"a {type(val).__name__}"


# ---------------------------------------------------------------------
# Resolving an operation spec
# ---------------------------------------------------------------------


def find_guildfile(cwd: Path) -> Path | None:
    from . import log

    for name in GUILDFILE_NAMES:
        path = cwd / name
        if path.is_file():
            log.debug("found guild file %s", path)
            return path
    log.debug("no guild file in %s", cwd)
    return None


def list_operations(cwd: Path, private: bool = False) -> list[tuple[str, str]]:
    """(name, description) of each guild.yml operation in `cwd`, by
    model, then operation, as Guild AI lists them; without `private`,
    not those whose name or model's name starts with ``_``."""
    gf = find_guildfile(cwd)
    if not gf:
        return []
    ops = []
    for name, op in load_guildfile(gf).items():
        model, _, op_name = name.rpartition(":")
        if not private and (op_name.startswith("_") or model.startswith("_")):
            continue
        ops.append(((model, op_name), name, (op.get("description") or "").strip().split("\n")[0]))
    return [(name, desc) for _, name, desc in sorted(ops)]


def default_operation(cwd: Path) -> str | None:
    """The operation a plain ``guild run`` runs, as Guild AI picks it:
    the one marked ``default: yes``, else the only one."""
    gf = find_guildfile(cwd)
    if gf is None:
        return None
    ops = load_guildfile(gf)
    marked = [name for name, op in ops.items() if op.get("default") is True]
    if len(marked) == 1:
        return marked[0]
    if not marked and len(ops) == 1:
        return next(iter(ops))
    return None


def resolve(opspec: str, cwd: Path, detect: FlagDetector) -> OpDef:
    """Find `opspec`: a guild.yml operation in `cwd`, else a script path.

    `detect(script)` runs the flag-detection hook for Python scripts.
    """
    gf = find_guildfile(cwd)
    if gf is not None:
        ops = load_guildfile(gf)
        name = _match_op(opspec, ops)
        if name is not None:
            return _guildfile_opdef(name, ops[name], gf, detect)
    script = (cwd / opspec) if not os.path.isabs(opspec) else Path(opspec)
    if script.is_file():
        return _script_opdef(opspec, script.resolve(), cwd, detect)
    if opspec == "queue":
        # Built in, as in Guild AI: a project's own `queue` comes first.
        from . import queue

        return queue.opdef(cwd)
    executor, sep, op = opspec.rpartition(":")
    if sep and op == "queue" and executor and ":" not in executor:
        # `NAME:queue`: a queue whose runs go to executor NAME.
        from . import queue

        return queue.executor_opdef(cwd, executor)
    hint = "Try 'guild operations' for a list of available operations."
    raise GuildError(f"cannot find operation {opspec}", hint=hint)


def operation(gf: Path, ops: dict[str, dict[str, Any]], name: str, detect: FlagDetector) -> OpDef:
    """Operation `name` of guild file `gf`, whose `load_guildfile`
    result is `ops`, resolved as `resolve` resolves it."""
    return _guildfile_opdef(name, ops[name], gf, detect)


def guildfile_flagdef(name: str, data: Any) -> FlagDef:
    """A guild.yml flag as an operation has it (typed from its default)."""
    return _typed(_guildfile_flagdef(name, _plain(data)))


def _match_op(opspec: str, ops: dict[str, Any]) -> str | None:
    if opspec in ops:
        return opspec
    matches = [name for name in ops if name.split(":", 1)[-1] == opspec]
    return matches[0] if len(matches) == 1 else None


def _script_opdef(opspec: str, script: Path, cwd: Path, detect: FlagDetector) -> OpDef:
    project_dir = cwd.resolve()
    try:
        rel = script.relative_to(project_dir).as_posix()
    except ValueError:
        project_dir = script.parent
        rel = script.name
    opref = OpRef("script", str(project_dir), "", "", rel)
    opdef = OpDef(name=rel, project_dir=project_dir, opref=opref)
    if script.suffix == ".py":
        opdef.script = script
        info = detect(script) or FlagsInfo()
        opdef.flagdefs = {n: _typed(f) for n, f in info.flags.items()}
        opdef.flags_dest = info.dest
    else:
        if not os.access(script, os.X_OK):
            raise GuildError(f"cannot run {opspec}: not a Python script or an executable")
        opdef.exec = shlex.quote(str(script)) + " ${flag_args}"
    return opdef


def _guildfile_opdef(name: str, data: dict, gf: Path, detect: FlagDetector) -> OpDef:
    project_dir = gf.parent.resolve()
    model, _, op_name = name.rpartition(":")
    digest = _file_md5(gf)
    opref = OpRef("guildfile", str(gf.resolve()), digest, model, op_name)
    opdef = OpDef(
        name=name,
        project_dir=project_dir,
        opref=opref,
        exec=data.get("exec"),
        output_scalars=_plain(data.get("output-scalars")),
        sourcecode=parse_spec(_plain(data.get("sourcecode"))),
        label=data.get("label"),
        description=(data.get("description") or "").strip(),
        # Scalars as strings, as written; null is empty, as in Guild AI.
        env={str(k): "" if v is None else str(v) for k, v in (data.get("env") or {}).items()},
        guildfile=gf,
        data=_plain(data),
    )
    # Plain values: a flag's default is written into the run's attributes.
    flagdefs = {str(n): _guildfile_flagdef(str(n), v) for n, v in _plain(data.get("flags") or {}).items()}
    dest = data.get("flags-dest")
    if opdef.exec is None and (data.get("main") or "").strip() == "guild.pass":
        # Guild AI's do-nothing module: an operation that only gathers
        # its dependencies (a summary of runs, a staging step).
        opdef.exec = "${python_exe} -c pass"
    if opdef.exec is None:
        # Without main, the module named for the operation, as Guild AI
        # names it: no ".py", "-" as "_" (op json-decodable runs json_decodable).
        opdef.main = data.get("main") or _safe_module_name(op_name)
        module = shlex.split(opdef.main)[0]
        script = _module_path(project_dir, module)
        config = _config_dest_file(gf, data, project_dir)
        if script is not None:
            opdef.script = script
            # Flags that go to a config file are that file's values.
            info = detect(config if config is not None else script)
            if info is not None and info.subcommands and config is None:
                info = info.for_args(shlex.split(opdef.main)[1:])
            mapping_name = _mapping_dest(dest)
            if info is not None and mapping_name:
                info = _mapping_flags(gf, data, info, mapping_name, dest, script)
            if info is not None:
                flagdefs = _merge_imported(flagdefs, info.flags, data.get("flags-import"), data.get("flags-import-skip"))
                dest = dest or info.dest
        elif "main" in data or "flags-import" in data:
            raise OpDefError(f"{gf}:{_line(data, 'main')}: cannot find module '{module}' for operation '{name}'")
    opdef.flagdefs = {n: _typed(f) for n, f in flagdefs.items()}
    opdef.flags_dest = dest or "args"
    return opdef


def _mapping_dest(dest: Any) -> str | None:
    """NAME of ``flags-dest: global:NAME`` (or Guild AI's other spelling,
    ``dict:NAME``, or ``namespace:NAME`` for a SimpleNamespace)."""
    if isinstance(dest, str):
        for prefix in ("global:", "dict:", "namespace:"):
            if dest.startswith(prefix):
                return dest[len(prefix):]
    return None


def _mapping_flags(gf: Path, data: dict, info: FlagsInfo, name: str, dest: str, script: Path) -> FlagsInfo:
    """``flags-dest: global:NAME``: the flags are the keys of the
    script's module-level dict NAME (nested ones dotted)."""
    from .flags import dotted

    mapping = info.mappings.get(name)
    if mapping is None:
        # Guild AI warns and imports nothing: the guild.yml flags still
        # reach the script, which may build NAME itself.
        if data.get("flags-import"):
            kind = "SimpleNamespace" if dest.startswith("namespace:") else "dict"
            warn(gf, _line(data, "flags-dest"), f"cannot import flags: {script.name} defines no module-level {kind} '{name}' for flags-dest {dest}")
        return FlagsInfo({}, dest)
    flags = {key: FlagDef(key, default=val) for key, val in dotted(mapping).items()}
    return FlagsInfo(flags, dest)


def _config_dest_file(gf: Path, data: dict, project_dir: Path) -> Path | None:
    """The config file of ``flags-dest: config:FILE``, which must exist."""
    dest = data.get("flags-dest")
    if not isinstance(dest, str) or not dest.startswith("config:"):
        return None
    path = project_dir / dest[len("config:"):]
    if not path.is_file():
        raise OpDefError(f"{gf}:{_line(data, 'flags-dest')}: cannot find config file '{dest[len('config:'):]}' for flags-dest")
    return path


def _plain(val: Any) -> Any:
    """Loaded YAML without line bookkeeping, safe to store as attributes."""
    if isinstance(val, dict):
        return {k: _plain(v) for k, v in val.items()}
    if isinstance(val, list):
        return [_plain(v) for v in val]
    return val


def _merge_imported(defined, detected, flags_import, skip) -> dict[str, FlagDef]:
    if flags_import in (False, "no", []):
        return defined
    if flags_import in (True, "all", "yes"):
        names = list(detected)
    elif flags_import is None:
        names = [n for n in detected if n in defined]
    else:
        names = [flags_import] if isinstance(flags_import, str) else list(flags_import)
    skip = {skip} if isinstance(skip, str) else set(skip or [])
    merged = dict(defined)
    for n in names:
        if n in skip or n not in detected:
            continue
        imported = detected[n]
        own = defined.get(n)
        if own is None:
            merged[n] = imported
        else:
            # guild.yml wins; the script fills in what guild.yml leaves out.
            merged[n] = dataclasses.replace(
                own,
                type=own.type or imported.type,
                default=own.default if own.default is not None else imported.default,
                choices=own.choices if own.choices is not None else imported.choices,
                required=own.required or imported.required,
                description=own.description or imported.description,
                arg_name=own.arg_name or imported.arg_name,
                arg_switch=own.arg_switch if own.arg_switch is not None else imported.arg_switch,
            )
    return merged


def _guildfile_flagdef(name: str, data: Any) -> FlagDef:
    flagdef = FlagDef(name=name, default=data) if not isinstance(data, dict) else FlagDef.from_dict(name, data)
    # Guild AI runs a batch over a list guild.yml gives as a default.
    flagdef.batch_default = isinstance(flagdef.default, list) and bool(flagdef.default)
    return flagdef


def _typed(flagdef: FlagDef) -> FlagDef:
    """Infer a missing type from the default, so ``x: 0.1`` is a float
    flag (command-line ``x=1`` gives 1.0; a search over it samples reals)."""
    if flagdef.type is None and flagdef.default is not None:
        d = flagdef.default
        if isinstance(d, bool):
            flagdef.type = "boolean"
        elif isinstance(d, int):
            flagdef.type = "int"
        elif isinstance(d, float):
            flagdef.type = "float"
        elif isinstance(d, str):
            flagdef.type = "string"
    return flagdef


def _safe_module_name(name: str) -> str:
    if name.lower().endswith(".py"):
        name = name[:-3]
    return name.replace("-", "_")


def _module_path(project_dir: Path, module: str) -> Path | None:
    rel = Path(*module.split("."))
    for candidate in (project_dir / rel.with_suffix(".py"), project_dir / rel / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def _file_md5(path: Path) -> str:
    from .util import md5

    h = md5()
    h.update(path.read_bytes())
    return h.hexdigest()


def python_exe() -> str:
    return sys.executable
