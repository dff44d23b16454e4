"""The source snapshot: which project files are copied into a run.

Files are chosen as Guild AI 0.9 chooses them: a list of rules, each
tested against every file in order, the last rule that applies deciding
(no rule: not copied). Directories are pruned by the ``dir`` rules
alone. The rules are, in order:

1. the defaults: no hidden directories, none holding a
   ``.guild-nocopy`` file, then text files under 1 MiB, at most 100 of
   them; for a Python operation also no ``__pycache__``, virtual
   environments (a ``bin/activate`` or ``Scripts/activate`` inside),
   ``build``, ``dist`` or ``*.egg-info`` directories. Inside a git
   repository instead: every file git does not ignore (``.gitignore``
   and ``.guildignore``), no ``.git`` or ``.guild`` directory;
2. the model's ``sourcecode`` rules, then the operation's.

guild.yml's ``sourcecode``:

- ``no`` (or ``[]``) copies nothing;
- a glob, or a list of globs only: ``exclude *`` first, then each glob
  included, so only those files are copied;
- a list with mappings: ``{include: GLOB|[GLOBS]}``,
  ``{exclude: GLOB|[GLOBS]}``, ``{exclude: {dir: NAME}}`` (also
  ``text:``/``binary:``), each refining what came before;
- a mapping ``{select: RULES, root: DIR, dest: DIR, digest: no}``.

A glob naming an existing directory (``data``) means the files under it
(``data/*``). A glob without ``/`` matches a file's name, one with ``/``
its path. A Guild home inside the project is never copied.

Each copied file is listed in ``.guild/manifest`` as Guild AI does
(``s DEST SHA1 SOURCE``, shell-quoted) and the ``sourcecode_digest``
attribute is Guild AI's digest over the copied files (not written with
``digest: no``).
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import util
from .errors import OpDefError

MAX_FILE_SIZE = 1024 * 1024
MAX_FILES = 100

_HELP = " To control which files are copied, define 'sourcecode' for the operation in guild.yml."


class Rule:
    """One select rule: include or exclude files (or, typed ``dir``,
    directories) matching any of its patterns. (A plain class: a
    dataclass costs start-up time on every run.)"""

    def __init__(self, include: bool, patterns: list[str], type: str | None = None,
                 sentinel: str | None = None, size_lt: int | None = None, max_matches: int | None = None):
        self.include = include
        self.patterns = patterns
        self.type = type  # None, "text", "binary" or "dir"
        self.sentinel = sentinel
        self.size_lt = size_lt
        self.max_matches = max_matches
        self.matches = 0

    def __repr__(self) -> str:
        return f"<Rule {self}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and str(self) == str(other)

    def __str__(self) -> str:
        parts = ["include" if self.include else "exclude"]
        if self.type:
            parts.append(self.type)
        parts.append(", ".join(shlex.quote(p) if " " in p else p for p in self.patterns))
        extras = []
        if self.sentinel:
            extras.append(f"containing {self.sentinel}")
        if self.size_lt:
            extras.append(f"size < {self.size_lt}")
        if self.max_matches:
            extras.append(f"max match {self.max_matches}")
        if extras:
            parts.append(", ".join(extras))
        return " ".join(parts)

    def test(self, root: Path, rel: str) -> tuple[bool | None, str | None]:
        """(result, None) when the rule applies, else (None, the test that
        failed: ``max matches``, ``pattern``, ``type``, ``size``)."""
        if self.max_matches is not None and self.matches >= self.max_matches:
            return None, "max matches"
        if not any(_fnmatch(rel, p) for p in self.patterns):
            return None, "pattern"
        path = root / rel
        if self.type == "dir":
            if not path.is_dir() or (self.sentinel and not (path / self.sentinel).exists()):
                return None, "type"
        elif self.type in ("text", "binary"):
            if is_text_file(path) != (self.type == "text"):
                return None, "type"
        if self.size_lt is not None:
            try:
                if path.stat().st_size >= self.size_lt:
                    return None, "size"
            except OSError:
                pass
        self.matches += 1
        return self.include, None

    def fresh(self) -> "Rule":
        return Rule(self.include, list(self.patterns), self.type, self.sentinel, self.size_lt, self.max_matches)


def _fnmatch(rel: str, pattern: str) -> bool:
    if "/" not in pattern:
        rel = rel.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(rel, pattern.lstrip("/"))


@dataclass
class SourceSpec:
    enabled: bool = True
    root: str | None = None
    dest: str = "."
    digest: bool = True
    rules: list[Rule] = field(default_factory=list)  # guild.yml's, in order


class GitignoreRule(Rule):
    """Guild AI's rule for a project in a git repository: every file
    git does not ignore (``.gitignore``, plus ``.guildignore``
    patterns)."""

    def __init__(self, ignored: set[str]):
        super().__init__(True, [])
        self.ignored = ignored

    def __str__(self) -> str:
        return "gitignore + guildignore patterns"

    def test(self, root: Path, rel: str) -> tuple[bool | None, str | None]:
        if rel in self.ignored:
            return None, "pattern"
        return True, None

    def fresh(self) -> "GitignoreRule":
        return GitignoreRule(self.ignored)


def _git_rules(root: Path) -> list[Rule] | None:
    """Guild AI's base rules inside a git repository (instead of the
    defaults): no ``.guild``, ``.git`` or ignored directories, every file
    git does not ignore, no ``.git*`` or ``.guildignore`` file. One
    ``git ls-files`` process; None outside a repository or without git."""
    if not _git_dir_above(root):
        return None
    import subprocess

    cmd = ["git", "ls-files", "-ioc", "--exclude-standard", "--directory"]
    try:
        with open(root / ".guildignore") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    cmd += ["-x", line]
    except OSError:
        pass
    try:
        proc = subprocess.run(cmd, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    listed = proc.stdout.decode("utf-8", "ignore").splitlines()
    ignored_dirs = [p.rstrip("/") for p in listed if p and (root / p).is_dir()]
    return [
        Rule(False, [".guild"], "dir"),
        Rule(False, ["*"], "dir", sentinel=".guild-nocopy"),
        Rule(False, [".git"] + ignored_dirs, "dir"),
        GitignoreRule({os.path.normpath(p) for p in listed if p}),
        Rule(False, [".git*", ".guildignore"]),
    ]


def _default_rules() -> list[Rule]:
    return [
        Rule(False, [".*"], "dir"),
        Rule(False, ["*"], "dir", sentinel=".guild-nocopy"),
        Rule(True, ["*"], "text", size_lt=MAX_FILE_SIZE + 1, max_matches=MAX_FILES),
    ]


def _python_rules() -> list[Rule]:
    return [
        Rule(False, ["__pycache__"], "dir"),
        Rule(False, ["*"], "dir", sentinel="bin/activate"),
        Rule(False, ["*"], "dir", sentinel="Scripts/activate"),
        Rule(False, ["build"], "dir"),
        Rule(False, ["dist"], "dir"),
        Rule(False, ["*.egg-info"], "dir"),
    ]


# ---------------------------------------------------------------------
# guild.yml's sourcecode
# ---------------------------------------------------------------------


def coerce_config(config: Any) -> dict[str, Any]:
    """guild.yml's ``sourcecode`` as Guild AI reads it: ``select`` (rule
    mappings, a leading ``exclude: '*'`` made explicit), ``root``,
    ``dest``, ``digest``, ``disabled``."""
    out: dict[str, Any] = {"select": [], "root": None, "dest": None, "digest": None, "disabled": False}
    if config is None or config is True:
        return out
    if config is False or config == []:
        out["disabled"] = True
        return out
    if isinstance(config, str):
        out["select"] = [{"exclude": "*"}, {"include": config}]
        return out
    if isinstance(config, dict):
        inner = coerce_config(config.get("select"))
        out["select"], out["disabled"] = inner["select"], inner["disabled"]
        for key in ("root", "dest", "digest"):
            out[key] = config.get(key)
        if config.get("disabled"):
            out["disabled"] = True
        return out
    if not isinstance(config, list):
        raise OpDefError(f"invalid sourcecode: {config!r}")
    rules = []
    for item in config:
        if isinstance(item, str):
            rules.append({"include": item})
        elif isinstance(item, dict):
            _rule(item)  # checked here, with the item in the message
            rules.append(item)
        else:
            raise OpDefError(f"invalid sourcecode rule: {item!r}")
    if all(isinstance(item, str) for item in config):
        rules.insert(0, {"exclude": "*"})
    out["select"] = rules
    return out


def _rule(item: dict) -> Rule:
    actions = [k for k in ("include", "exclude") if k in item]
    if len(actions) != 1 or len(item) != 1:
        if len(actions) == 2:
            raise OpDefError(
                f"invalid sourcecode rule: {item!r}: a rule includes or excludes, "
                "not both (use one rule for each, in the order they apply)"
            )
        raise OpDefError(f"invalid sourcecode rule: {item!r}")
    action = actions[0]
    val = item[action]
    kind = None
    if isinstance(val, dict):
        kinds = [k for k in ("dir", "text", "binary") if k in val]
        if len(kinds) != 1 or len(val) != 1:
            raise OpDefError(f"invalid sourcecode rule: {item!r}: expected dir, text or binary")
        kind = kinds[0]
        val = val[kind]
    if isinstance(val, str):
        val = [val]
    if not (isinstance(val, list) and val and all(isinstance(p, str) for p in val)):
        raise OpDefError(f"invalid sourcecode rule: {item!r}")
    return Rule(action == "include", list(val), kind)


def parse_spec(config: Any) -> SourceSpec:
    """Read guild.yml's ``sourcecode`` value."""
    c = coerce_config(config)
    for key in ("root", "dest"):
        if c[key] is not None and not isinstance(c[key], str):
            raise OpDefError(f"sourcecode {key} must be a path")
    return SourceSpec(
        enabled=not c["disabled"],
        root=c["root"],
        dest=c["dest"] or ".",
        digest=c["digest"] not in (False, "no"),
        rules=[_rule(item) for item in c["select"]],
    )


# ---------------------------------------------------------------------
# Selecting
# ---------------------------------------------------------------------


def is_python_op(opdef: Any) -> bool:
    """Whether the Python default rules apply (Guild AI's python plugin):
    a ``main`` module or script, or a command run by ``${python_exe}``."""
    exec_ = getattr(opdef, "exec", None)
    if exec_ is None:
        return True
    first = exec_.split(None, 1)[0] if exec_.strip() else ""
    return first in ("${python_exe}", "${guild_python_exe}") or os.path.basename(first).lower().startswith("python")


def required_files(requires: Any) -> set[str]:
    """The project files an operation's ``requires:`` names (``file:``
    sources with a relative path), as paths from the project."""
    out: set[str] = set()
    entries = requires if isinstance(requires, list) else [requires]
    for entry in entries:
        sources = entry.get("sources") if isinstance(entry, dict) and "sources" in entry else [entry]
        for source in sources if isinstance(sources, list) else []:
            path = source if isinstance(source, str) else source.get("file") if isinstance(source, dict) else None
            if isinstance(path, str) and path and not os.path.isabs(path) and "://" not in path:
                out.add(os.path.normpath(path).replace(os.sep, "/"))
    return out


def source_root(project_dir: Path, spec: SourceSpec) -> Path:
    return (project_dir / spec.root).resolve() if spec.root else project_dir


def rules_for(project_dir: Path, spec: SourceSpec, python: bool = True) -> list[Rule]:
    """Every rule, in the order it is tested, fresh (match counts zero)."""
    if not spec.enabled:
        return [Rule(False, ["*"])]
    root = source_root(project_dir, spec)
    rules = _git_rules(root) or _default_rules() + (_python_rules() if python else [])
    for rule in spec.rules:
        rule = rule.fresh()
        if rule.type is None:
            # A pattern naming a directory means the files under it.
            rule.patterns = [f"{p.rstrip('/')}/*" if (root / p).is_dir() else p for p in rule.patterns]
        rules.append(rule)
    return rules


def _disabled(rules: list[Rule]) -> bool:
    """Guild AI's shortcut: an untyped ``exclude *`` no later include
    undoes selects nothing, so nothing is walked."""
    disabled = False
    for rule in rules:
        if rule.include:
            disabled = False
        elif "*" in rule.patterns and rule.type is None:
            disabled = True
    return disabled


class Selection:
    """What `select` decided: the rules, then the files selected and
    skipped (directories end with ``/``), in walk order."""

    def __init__(self, root: Path, rules: list[Rule], disabled: bool):
        self.root = root
        self.rules = rules
        self.disabled = disabled
        self.selected: list[str] = []
        self.skipped: list[str] = []
        self.too_many = False
        self.too_big: list[str] = []


def select(project_dir: Path, spec: SourceSpec, python: bool = True, ignore=()) -> Selection:
    """Apply the rules to the files under the source root; paths in
    `ignore` (the project files an operation requires) are never
    source code, as in Guild AI."""
    rules = rules_for(project_dir, spec, python)
    root = source_root(project_dir, spec)
    sel = Selection(root, rules, _disabled(rules))
    if sel.disabled:
        return sel
    dir_rules = [r for r in rules if r.type == "dir"]
    file_rules = [r for r in rules if r.type != "dir"]
    # Guild AI warns of what the default limits leave out only when the
    # default rule is the only file rule.
    default_include = rules[2] if spec.enabled and rules[2].max_matches else None
    warn_limits = default_include is not None and len([r for r in rules if r.type != "dir"]) == 1
    homes = _guild_homes()
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue  # a link back into the tree
        seen_dirs.add(real)
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        kept = []
        for name in sorted(dirnames):
            rel = _join(rel_dir, name)
            decision = None
            for rule in dir_rules:
                result, _ = rule.test(root, rel)
                if result is not None:
                    decision = result
            if decision is False or _is_guild_home(Path(dirpath) / name, homes):
                sel.skipped.append(rel + "/")
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            rel = _join(rel_dir, name)
            if rel in ignore:
                sel.skipped.append(rel)
                continue
            decision = None
            failed_default = None
            for rule in file_rules:
                result, failed = rule.test(root, rel)
                if result is not None:
                    decision = result
                elif rule is default_include:
                    failed_default = failed
            if decision is True:
                sel.selected.append(rel)
                continue
            sel.skipped.append(rel)
            if not warn_limits:
                continue
            if decision is None and failed_default == "max matches":
                sel.too_many = True
            elif decision is None and failed_default == "size":
                sel.too_big.append(rel)
    return sel


def select_files(project_dir: Path, spec: SourceSpec, warn=None, python: bool = True, ignore=()) -> list[str]:
    """Relative paths (``/`` separated, under the source root) of the
    files to copy; `warn` hears about what the default limits left out."""
    sel = select(project_dir, spec, python, ignore)
    if warn:
        for rel in sel.too_big:
            warn(f"skipping potential source code file {rel}: it is larger than 1 MiB.{_HELP}")
        if sel.too_many:
            warn(
                f"found more than {MAX_FILES} source code files: only {MAX_FILES} "
                f"are copied, as a safety measure.{_HELP}"
            )
    return sel.selected


def test_sourcecode_lines(
    project_dir: Path, spec: SourceSpec, python: bool = True, cwd: Path | None = None, ignore=()
) -> list[str]:
    """What ``guild run OP --test-sourcecode`` prints: the source root,
    every rule in order, then the files selected and skipped (paths
    from the current directory, directories with a trailing ``/``)."""
    sel = select(project_dir, spec, python, ignore)
    cwd = Path(cwd or os.getcwd()).resolve()
    root = sel.root.resolve()
    if root == cwd:
        where = "the current directory"
    else:
        rel = os.path.relpath(root, cwd)
        where = repr(rel if not rel.startswith("..") else str(root))
    lines = [f"Copying from {where}", "Rules:"]
    lines.extend(f"  {rule}" for rule in sel.rules)
    if sel.disabled:
        lines.append("Source code copy disabled")
        return lines

    def shown(rel: str) -> str:
        path = os.path.relpath(root / rel.rstrip("/"), cwd)
        return path + "/" if rel.endswith("/") else path

    lines.append("Selected for copy:")
    lines.extend(f"  {shown(rel)}" for rel in sel.selected)
    lines.append("Skipped:")
    lines.extend(f"  {shown(rel)}" for rel in sel.skipped)
    return lines


def is_pipeline(opdef: Any) -> bool:
    """A ``steps:`` operation copies no source code (Guild AI's rule);
    one with a ``main`` or ``exec`` too runs that, not its steps."""
    data = getattr(opdef, "data", None) or {}
    return bool(data.get("steps")) and not (data.get("main") or data.get("exec"))


def files_for(opdef: Any, warn=None) -> list[str]:
    """The files a run of `opdef` copies."""
    if is_pipeline(opdef):
        return []
    return select_files(
        opdef.project_dir, opdef.sourcecode, warn, python=is_python_op(opdef),
        ignore=required_files((opdef.data or {}).get("requires")),
    )


def test_sourcecode_for(opdef: Any, cwd: Path | None = None) -> list[str]:
    """``guild run OP --test-sourcecode`` for a resolved operation."""
    if is_pipeline(opdef):
        return ["Copying from the current directory", "Rules:", "Source code copy disabled"]
    return test_sourcecode_lines(
        opdef.project_dir, opdef.sourcecode, is_python_op(opdef), cwd,
        required_files((opdef.data or {}).get("requires")),
    )


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _guild_homes() -> set[str]:
    home = os.environ.get("GUILD_HOME")
    return {os.path.realpath(home)} if home else set()


def _is_guild_home(path: Path, homes: set[str]) -> bool:
    if os.path.realpath(path) in homes:
        return True
    return (path / "runs").is_dir() and (path / "cache").is_dir()


# Names Guild AI decides by extension alone.
TEXT_EXTS = frozenset(".csv .md .py .sh .txt".split())
BINARY_EXTS = frozenset(
    ".ai .bmp .gif .ico .jpeg .jpg .png .ps .psd .svg .tif .tiff .aif .mid .midi .mpa .mp3 "
    ".ogg .wav .wma .avi .mov .mp4 .mpeg .swf .wmv .7z .deb .gz .pkg .rar .rpm .tar .xz .z "
    ".zip .doc .docx .key .pdf .ppt .pptx .xlr .xls .xlsx .bin .pickle .pkl .pyc".split()
)
_TEXT_CONTROL = b"\n\r\t\f\b"
_PRINTABLE = _TEXT_CONTROL + bytes(range(32, 127))
_HIGH = bytes(range(127, 256))


def is_text_file(path: Path) -> bool:
    """Guild AI's test: the extension when it tells, else the first KiB:
    mostly control or high bytes is binary unless it decodes as UTF-8
    with non-ASCII characters (Guild AI asks chardet; UTF-8 stands in),
    otherwise text unless it holds a NUL or 0xFF byte. Empty is text."""
    try:
        if not path.is_file():
            return False
        ext = os.path.splitext(path.name)[1].lower()
        if ext in TEXT_EXTS:
            return True
        if ext in BINARY_EXTS:
            return False
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    if not head:
        return True
    odd = len(head.translate(None, _PRINTABLE)) / len(head)
    low = len(head.translate(None, _HIGH)) / len(head)
    likely_binary = (odd > 0.3 and low < 0.05) or (odd > 0.8 and low > 0.8)
    decodable = False
    if not head.isascii():
        import codecs

        try:
            # A character cut at the end of the sample is not an error.
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            decodable = True
        except UnicodeDecodeError:
            pass
    if likely_binary:
        return decodable
    if decodable:
        return True
    return b"\x00" not in head and b"\xff" not in head


# ---------------------------------------------------------------------
# The project's commit
# ---------------------------------------------------------------------


def _git_dir_above(path: Path) -> bool:
    for d in (path, *path.parents):
        if (d / ".git").exists():
            return True
    return False


def vcs_commit(project_dir: Path) -> str | None:
    """Guild AI's ``vcs_commit``: ``git:SHA`` of the last commit that
    touched the project directory, with ``*`` appended when the work
    tree has changes (``git status`` lists anything, untracked files
    included); None outside a repository, before the first commit, or
    without git (``NO_VCS_COMMIT=1`` skips it, as in Guild AI).

    One ``git status`` process (it also names HEAD), plus a ``git log``
    only when the project is a subdirectory of its repository.
    """
    if os.environ.get("NO_VCS_COMMIT") == "1":
        return None
    project_dir = Path(project_dir)
    if not _git_dir_above(project_dir):
        return None  # no process at all outside a repository
    import subprocess

    def start(*args: str):
        try:
            return subprocess.Popen(
                ["git", "--no-optional-locks", *args], cwd=project_dir,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
        except OSError:
            return None

    def output(proc) -> str | None:
        if proc is None:
            return None
        out = proc.communicate()[0]
        return out.decode("utf-8", "replace") if proc.returncode == 0 else None

    # Both at once when both are needed: the wait is the longer one's.
    status_proc = start("status", "--porcelain=v2", "--branch")
    log_proc = None if (project_dir / ".git").exists() else start("log", "-1", "--format=%H", "--", ".")
    status = output(status_proc)
    logged = output(log_proc)
    if status is None:
        return None
    head = None
    dirty = False
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            head = line.split()[2]
        elif line and not line.startswith("#"):
            dirty = True
    if head is None or head == "(initial)":
        return None
    commit = head
    if log_proc is not None:
        commit = (logged or "").strip()
        if not commit:
            return None
    return f"git:{commit}" + ("*" if dirty else "")


# ---------------------------------------------------------------------
# Copying
# ---------------------------------------------------------------------


def copy_files(project_dir: Path, spec: SourceSpec, files: list[str], run_dir: Path) -> str:
    """Copy `files` into the run directory, write ``.guild/manifest`` and
    return the source-code digest."""
    root = source_root(project_dir, spec)
    dest_root = run_dir / spec.dest if spec.dest not in (".", "") else run_dir
    lines = []
    digest = util.md5()
    for rel in sorted(files):
        src = root / rel
        dest = dest_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Read once: the bytes are copied, hashed and digested. (Not
        # shutil: importing it costs more than copying a few sources.)
        data = src.read_bytes()
        dest.write_bytes(data)
        st = src.stat()
        os.chmod(dest, st.st_mode & 0o7777)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
        sha1 = util.sha1()
        sha1.update(data)
        dest_rel = os.path.relpath(dest, run_dir).replace(os.sep, "/")
        lines.append(" ".join(shlex.quote(p) for p in ("s", dest_rel, sha1.hexdigest(), rel)))
        # Guild AI's digest: each path, NUL, its bytes, NUL.
        digest.update(dest_rel.encode("utf-8"))
        digest.update(b"\x00")
        digest.update(data)
        digest.update(b"\x00")
    manifest = run_dir / ".guild" / "manifest"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(line + "\n" for line in lines))
    return digest.hexdigest()


def warn_stderr(msg: str) -> None:
    sys.stderr.write(f"WARNING: {msg}\n")
