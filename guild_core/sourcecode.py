"""The source snapshot: which project files are copied into a run.

Default: text files under the project directory, at most 1 MiB each and
100 files in all, skipping hidden and cache directories, virtual
environments and Guild homes. guild.yml's ``sourcecode`` changes that:

- ``sourcecode: no`` copies nothing;
- a list of rules, each a glob (include), ``{include: GLOB|[GLOBS]}`` or
  ``{exclude: GLOB|[GLOBS]}``; ``{exclude: {dir: NAME}}`` skips a
  directory. When the first rule is an include, only what the rules
  include is copied; otherwise the rules refine the default. Later rules
  win over earlier ones;
- a mapping ``{root: DIR, select: RULES, dest: DIR}``.

Each copied file is listed in ``.guild/manifest`` as Guild AI does
(``s DEST SHA1 SOURCE``, shell-quoted) and the ``sourcecode_digest``
attribute is Guild AI's digest over the copied files.
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
SKIP_DIRS = {"__pycache__", "node_modules", "runs", "venv", ".venv", "build", "dist"}


@dataclass
class SourceSpec:
    enabled: bool = True
    root: str | None = None
    dest: str = "."
    rules: list[tuple[str, str, str]] = field(default_factory=list)
    # (action, kind, pattern): action include|exclude, kind file|dir


def parse_spec(config: Any) -> SourceSpec:
    """Read guild.yml's ``sourcecode`` value."""
    if config is None or config is True:
        return SourceSpec()
    if config is False:
        return SourceSpec(enabled=False)
    if isinstance(config, dict):
        spec = parse_spec(config.get("select"))
        spec.root = config.get("root")
        spec.dest = config.get("dest", ".") or "."
        if config.get("disabled"):
            spec.enabled = False
        return spec
    if isinstance(config, str):
        config = [config]
    if not isinstance(config, list):
        raise OpDefError(f"invalid sourcecode: {config!r}")
    rules = []
    for item in config:
        rules.extend(_parse_rule(item))
    return SourceSpec(rules=rules)


def _parse_rule(item: Any) -> list[tuple[str, str, str]]:
    if isinstance(item, str):
        return [("include", "file", item)]
    if isinstance(item, dict) and len(item) == 1:
        action, val = next(iter(item.items()))
        if action in ("include", "exclude"):
            if isinstance(val, dict):
                kind = "dir" if "dir" in val else "file"
                pats = val.get("dir", val.get("file", val.get("text")))
            else:
                kind, pats = "file", val
            if isinstance(pats, str):
                pats = [pats]
            if isinstance(pats, list) and all(isinstance(p, str) for p in pats):
                return [(action, kind, p) for p in pats]
    raise OpDefError(f"invalid sourcecode rule: {item!r}")


def select_files(project_dir: Path, spec: SourceSpec, warn=None) -> list[str]:
    """Relative paths (``/`` separated) of the files to copy."""
    if not spec.enabled:
        return []
    root = (project_dir / spec.root).resolve() if spec.root else project_dir
    only_included = bool(spec.rules) and spec.rules[0][0] == "include"
    selected: list[str] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        dirnames[:] = sorted(
            d for d in dirnames if _keep_dir(Path(dirpath) / d, _join(rel_dir, d), spec)
        )
        for name in sorted(filenames):
            rel = _join(rel_dir, name)
            path = Path(dirpath) / name
            decision = _rule_decision(rel, spec.rules)
            if decision == "exclude":
                continue
            if decision is None:
                if only_included or not _default_file(path):
                    continue
            elif not path.is_file():
                continue
            if len(selected) >= MAX_FILES:
                skipped += 1
                continue
            selected.append(rel)
    if skipped and warn:
        warn(
            f"found more than {MAX_FILES} source files: {skipped} not copied "
            "(use 'sourcecode' in guild.yml to select them)"
        )
    return selected


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _keep_dir(path: Path, rel: str, spec: SourceSpec) -> bool:
    for action, kind, pattern in reversed(spec.rules):
        if kind == "dir" and (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(path.name, pattern)):
            return action == "include"
    name = path.name
    if name.startswith(".") or name in SKIP_DIRS or name.endswith(".egg-info"):
        return False
    if (path / "bin" / "activate").exists() or (path / "pyvenv.cfg").exists():
        return False
    if (path / "runs").is_dir() and (path / "cache").is_dir():
        return False  # a Guild home inside the project
    return True


def _rule_decision(rel: str, rules) -> str | None:
    for action, kind, pattern in reversed(rules):
        if kind == "file" and (
            fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(os.path.basename(rel), pattern)
        ):
            return action
    return None


def _default_file(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if not path.is_file() or st.st_size > MAX_FILE_SIZE:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    return b"\x00" not in head


def copy_files(project_dir: Path, spec: SourceSpec, files: list[str], run_dir: Path) -> str:
    """Copy `files` into the run directory, write ``.guild/manifest`` and
    return the source-code digest."""
    root = (project_dir / spec.root).resolve() if spec.root else project_dir
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
