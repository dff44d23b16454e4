"""Operations: guild.yml definitions and plain scripts.

An operation runs a Python module (``main: train --epochs 1``), a shell
command (``exec: ./train.sh ${flag_args}``) or, with no guild.yml at all,
a script named on the command line (``guild run train.py``).
"""

from __future__ import annotations

import dataclasses
import os
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


def load_guildfile(path: Path) -> dict[str, dict[str, Any]]:
    """Operations defined in a guild.yml, by name.

    Accepts the operation-only format (a mapping of operation names) and
    the full format (a list of ``model:``/``operations:`` items). Every
    value an operation uses is checked here, so a bad guild.yml is an
    `OpDefError` naming the file, line and key, whatever the command.
    """
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
            return {}
        _check_expansion(path, node)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise OpDefError(f"{path}{line}: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise OpDefError(f"{path}: {e}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if isinstance(data, dict):
        return _check_ops(path, data, model="")
    if isinstance(data, list):
        ops: dict[str, dict[str, Any]] = {}
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise OpDefError(f"{path}:{_line(data, i)}: expected a mapping, got {item!r}")
            if "model" not in item and any(k in item for k in TOP_ITEM_KINDS):
                continue  # config, include and package items
            for key in item:
                if key not in MODEL_KEYS:
                    warn(path, _line(item, key), f"unknown attribute '{key}' in model (ignored)")
            model = item.get("model")
            if model is None:
                model = ""
            elif not _is_name(model):
                raise OpDefError(f"{path}:{_line(item, 'model')}: model must be a string")
            ops_data = item.get("operations")
            if ops_data is None:
                ops_data = _Map()
                ops_data.lines, ops_data.line = {}, _line(item)
            ops.update(_check_ops(path, ops_data, str(model), item))
        return ops
    raise OpDefError(f"{path}:1: expected a mapping of operations")


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


def _check_ops(path: Path, data: Any, model: str, parent: Any = None) -> dict[str, dict]:
    if not isinstance(data, dict):
        raise OpDefError(f"{path}:{_line(parent, 'operations')}: operations must be a mapping")
    ops = {}
    for name, op in data.items():
        where = f"{path}:{_line(data, name)}"
        if not _is_name(name):
            raise OpDefError(f"{where}: invalid operation name {name!r} (quote it for a string)")
        if op is None:
            op = _Map()
            op.lines, op.line = {}, _line(data, name)
        if not isinstance(op, dict):
            raise OpDefError(f"{where}: operation '{name}' must be a mapping")
        _check_op(path, str(name), op)
        full = f"{model}:{name}" if model else str(name)
        ops[full] = op
    return ops


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
    if isinstance(requires, str) or (
        isinstance(requires, list) and any(isinstance(r, str) for r in requires)
    ):
        # Guild AI's named resources (`requires: prepared-data`) need a
        # `resources:` section this project does not read.
        fail("requires", "requires: named resources are not supported "
             "(use a mapping such as 'operation: NAME')")
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
    if ftype is not None and ftype not in FLAG_TYPES:
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
    for name in GUILDFILE_NAMES:
        path = cwd / name
        if path.is_file():
            return path
    return None


def list_operations(cwd: Path) -> list[tuple[str, str]]:
    """(name, description) of each guild.yml operation in `cwd`."""
    gf = find_guildfile(cwd)
    if not gf:
        return []
    return sorted(
        (name, (op.get("description") or "").strip().split("\n")[0])
        for name, op in load_guildfile(gf).items()
    )


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
    hint = "Try 'guild operations' for a list of available operations."
    raise GuildError(f"cannot find operation {opspec}", hint=hint)


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
        opdef.main = data.get("main") or op_name
        module = shlex.split(opdef.main)[0]
        script = _module_path(project_dir, module)
        config = _config_dest_file(gf, data, project_dir)
        if script is not None:
            opdef.script = script
            # Flags that go to a config file are that file's values.
            info = detect(config if config is not None else script)
            if info is not None:
                flagdefs = _merge_imported(flagdefs, info.flags, data.get("flags-import"), data.get("flags-import-skip"))
                dest = dest or info.dest
        elif "main" in data or "flags-import" in data:
            raise OpDefError(f"{gf}:{_line(data, 'main')}: cannot find module '{module}' for operation '{name}'")
    opdef.flagdefs = {n: _typed(f) for n, f in flagdefs.items()}
    opdef.flags_dest = dest or "args"
    return opdef


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
    if not isinstance(data, dict):
        return FlagDef(name=name, default=data)
    return FlagDef.from_dict(name, data)


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
