"""Built-in plugin ``resources``: Guild AI 0.9's resource sources as
dependency kinds.

- ``file: PATH``: a file, a directory or a glob (``data/*.csv``),
  relative to the project. An archive (``.zip``, ``.tar``, ``.tar.gz``,
  ``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.gz``) is unpacked, unless
  ``unpack: no``, into ``$GUILD_HOME/cache/resources/DIGEST/`` and its
  members are what the run gets (``select`` chooses among them).
- ``url: URL``: downloaded once into ``$GUILD_HOME/cache/resources/
  DIGEST/NAME`` (Guild AI's layout: DIGEST is the SHA-224 of the URL's
  parts), then as ``file:``.
- ``config: PATH``: a YAML, JSON or INI file written into the run with
  the run's flag values (and ``params:``) applied; dotted flag names
  nest (``train.lr=0.1`` sets ``lr`` under ``train``).
- ``module: NAME``: an importable Python module; nothing is placed.

``sha256`` (of the file or archive, before unpacking) is checked;
a mismatch is an error. A value on the command line
(``file:data.csv=other.csv``, or the dependency's name) is a local path
used instead, as is, neither unpacked nor selected from.

The core places what these return (``target-path``, ``target-type``,
``rename``, ``preserve-path``), records it and applies ``optional``,
``warn-if-empty`` and ``fail-if-empty``.
"""

from __future__ import annotations

import os
from pathlib import Path

from guild_core.hookspecs import hookimpl

ARCHIVE_EXTS = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".gz")


@hookimpl(trylast=True)
def guild_register_resolvers(register):
    register("file", resolve_file)
    register("url", resolve_url)
    register("config", resolve_config)
    register("module", resolve_module)


def _error(msg):
    from guild_core.errors import GuildError

    return GuildError(msg)


def _deps():
    from guild_core import deps

    return deps


# ---------------------------------------------------------------------
# file:
# ---------------------------------------------------------------------


def resolve_file(dep, value, ctx):
    deps = _deps()
    if value is not None:
        return _given_path(value, deps)
    spec = str(dep["file"])
    root = Path(ctx.project_dir)
    if any(c in spec for c in "*?["):
        import glob

        matches = sorted(glob.glob(spec, root_dir=root, recursive=True))
        if not matches:
            raise _error(f"no file matches '{spec}'")
        files = []
        for rel in matches:
            files.extend(_path_files(root / rel, rel, dep, ctx, deps))
        return deps.Resolution(files)
    path = root / spec
    if not os.path.exists(path):
        raise _error(f"cannot find source file '{spec}'")
    return deps.Resolution(_path_files(path, spec, dep, ctx, deps))


def _given_path(value, deps):
    path = Path(str(value)).expanduser().absolute()
    if not path.exists():
        raise _error(f"'{value}' does not exist")
    return deps.Resolution([deps.SourceFile(path, path.name)], config=str(value))


def _path_files(path: Path, rel: str, dep, ctx, deps):
    """What one existing path gives: a directory itself (or its
    selected paths), a file itself, or an archive's members."""
    rel = rel.replace(os.sep, "/").rstrip("/")
    specs = deps.select_specs(dep)
    if path.is_dir():
        if dep.get("sha256") is not None:
            ctx.warn(f"cannot verify '{rel}': it is a directory")
        if not specs:
            return [deps.SourceFile(path, rel)]
        return [deps.SourceFile(path / p, f"{rel}/{p}") for p in deps.select_paths(deps.tree_paths(path), specs)]
    _verify(path, dep.get("sha256"), rel)
    kind = _archive_type(path, dep)
    if kind is None:
        return [deps.SourceFile(path, rel)]
    unpack_dir = Path(ctx.cache_dir) / "resources" / _digest("file\n" + str(path.absolute()))
    return _archive_files(path, kind, unpack_dir, dep, deps, ctx)


def _no(val):
    return val is False or (isinstance(val, str) and val.lower() in ("no", "false"))


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha224(text.encode("utf-8")).hexdigest()


def _verify(path: Path, sha256, what: str) -> None:
    if sha256 is None:
        return
    actual = _sha256(path)
    if actual != str(sha256).strip().lower():
        raise _error(f"'{what}' has an unexpected sha256 (expected {sha256} but got {actual})")


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------


def _archive_type(path: Path, dep):
    if _no(dep.get("unpack", True)):
        return None
    if dep.get("type"):
        kind = str(dep["type"])
        if kind not in ("zip", "tar", "gzip"):
            raise _error(f"unsupported archive type '{kind}' (expected zip, tar or gzip)")
        return kind
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if any(name.endswith(e) for e in (".tar", ".tgz", ".tbz2", ".txz")) or ".tar." in name:
        return "tar"
    if name.endswith(".gz"):
        return "gzip"
    return None


def _archive_files(path: Path, kind: str, unpack_dir: Path, dep, deps, ctx):
    members = _ensure_unpacked(path, kind, unpack_dir)
    _post_process(dep, unpack_dir)
    specs = deps.select_specs(dep)
    names = deps.select_paths(members, specs) if specs else deps.root_paths(members)
    return [deps.SourceFile(unpack_dir / n, n) for n in names]


def _ensure_unpacked(path: Path, kind: str, unpack_dir: Path) -> list[str]:
    """The archive's member paths (directories included), unpacked into
    `unpack_dir` once: the list is kept beside them and used while it is
    newer than the archive."""
    listing = unpack_dir / f".guild-cache-{path.name}.unpacked"
    try:
        if listing.stat().st_mtime >= path.stat().st_mtime:
            names = [line for line in listing.read_text().splitlines() if line]
            if all(os.path.lexists(unpack_dir / n) for n in names):
                return names
    except OSError:
        pass
    unpack_dir.mkdir(parents=True, exist_ok=True)
    try:
        names = _unpack(path, kind, unpack_dir)
    except (OSError, EOFError, ValueError) as e:
        raise _error(f"cannot unpack '{path.name}': {e}") from None
    dirs = sorted({n.rsplit("/", 1)[0] for n in names if "/" in n} - set(names))
    names = dirs + names
    tmp = listing.with_name(listing.name + f".{os.getpid()}")
    tmp.write_text("".join(n + "\n" for n in names))
    os.replace(tmp, listing)
    return names


def _safe_name(name: str, archive: Path) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    parts = name.split("/")
    if not name or name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise _error(f"'{archive.name}' has a member outside the archive: '{name}'")
    return name


def _unpack(path: Path, kind: str, dest: Path) -> list[str]:
    if kind == "zip":
        import zipfile

        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise _error(f"cannot unpack '{path.name}': {e}") from None
        with zf:
            infos = [i for i in zf.infolist()]
            names = [_safe_name(i.filename, path) for i in infos]
            zf.extractall(dest)
            return sorted(n for n in names if n)
    if kind == "tar":
        import tarfile

        try:
            tf = tarfile.open(path)
        except tarfile.TarError as e:
            raise _error(f"cannot unpack '{path.name}': {e}") from None
        with tf:
            members = [m for m in tf.getmembers() if m.name not in (".", "./")]
            for m in members:
                _safe_name(m.name, path)
                if m.issym() or m.islnk() or m.isdev():
                    if m.isdev() or os.path.isabs(m.linkname) or ".." in m.linkname.split("/"):
                        raise _error(f"'{path.name}' has a link out of the archive: '{m.name}'")
            try:
                tf.extractall(dest, members=members, filter="data")
            except TypeError:  # Python without extraction filters
                tf.extractall(dest, members=members)
            return sorted(_safe_name(m.name, path) for m in members)
    if kind == "gzip":
        import gzip
        import shutil

        name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name + ".out"
        try:
            with gzip.open(path, "rb") as src, open(dest / name, "wb") as out:
                shutil.copyfileobj(src, out)
        except gzip.BadGzipFile as e:
            raise _error(f"cannot unpack '{path.name}': {e}") from None
        return [name]
    raise _error(f"'{path.name}' cannot be unpacked (unsupported archive type '{kind}')")


def _post_process(dep, cwd: Path) -> None:
    """``post-process: CMD``: run once in the unpack directory."""
    cmd = dep.get("post-process")
    if not cmd:
        return
    import hashlib
    import subprocess

    cmd = " ".join(str(cmd).strip().split("\n"))
    marker = cwd / f".guild-cache-{hashlib.sha1(cmd.encode()).hexdigest()}.post"
    if marker.exists():
        return
    result = subprocess.run(cmd, shell=True, cwd=cwd)
    if result.returncode != 0:
        raise _error(f"post-process '{cmd}' failed with exit status {result.returncode}")
    marker.touch()


# ---------------------------------------------------------------------
# url:
# ---------------------------------------------------------------------


def resolve_url(dep, value, ctx):
    deps = _deps()
    if value is not None:
        return _given_path(value, deps)
    from urllib.parse import urlparse

    url = str(dep["url"])
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https", "file"):
        raise _error(f"unsupported url '{url}' (expected http, https or file)")
    download_dir = Path(ctx.cache_dir) / "resources" / _digest("\n".join(parsed))
    name = os.path.basename(parsed.path.rstrip("/")) or "download"
    path = download_dir / name
    sha256 = dep.get("sha256")
    if not (path.is_file() and (sha256 is None or _sha256(path) == str(sha256).strip().lower())):
        _download(url, path, sha256)
    kind = _archive_type(path, dep)
    if kind is None:
        return deps.Resolution([deps.SourceFile(path, name)])
    return deps.Resolution(_archive_files(path, kind, download_dir, dep, deps, ctx))


def _download(url: str, path: Path, sha256) -> None:
    import urllib.error
    import urllib.request

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
    except urllib.error.HTTPError as e:
        _unlink(tmp)
        raise _error(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        _unlink(tmp)
        raise _error(f"cannot download {url}: {e.reason}") from None
    except OSError as e:
        _unlink(tmp)
        raise _error(f"cannot download {url}: {e}") from None
    if sha256 is not None:
        actual = _sha256(tmp)
        if actual != str(sha256).strip().lower():
            _unlink(tmp)
            raise _error(f"bad sha256 for '{url}' (expected {sha256} but got {actual})")
    os.replace(tmp, path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


# ---------------------------------------------------------------------
# config:
# ---------------------------------------------------------------------

YAML_EXTS = (".yml", ".yaml")
JSON_EXTS = (".json",)
INI_EXTS = (".ini", ".cfg")


def resolve_config(dep, value, ctx):
    deps = _deps()
    spec = str(value if value is not None else dep["config"])
    path = Path(spec) if value is not None else Path(ctx.project_dir) / spec
    if not path.is_file():
        raise _error(f"cannot find source file '{spec}'")
    ext = _config_ext(path.name)
    if ext not in YAML_EXTS + JSON_EXTS + INI_EXTS:
        raise _error(f"unsupported config file type '{path.name}' (expected .yml, .yaml, .json, .ini or .cfg)")
    _verify(path, dep.get("sha256"), spec)
    base = _load_config(path, ext, spec)  # errors before any run exists
    params = dep.get("params") or {}
    if not isinstance(params, dict):
        raise _error(f"invalid params {params!r}: expected a mapping")

    def generate(flags, op):
        import copy

        data = copy.deepcopy(base)
        _nest(params, data)
        cmd_flags = (op.get("op-cmd") or {}).get("cmd-flags") or {}
        named = {
            (cmd_flags.get(name) or {}).get("arg-name") or name: val
            for name, val in flags.items()
            if val is not None
        }
        _nest(named, data)
        return _encode_config(data, ext).encode("utf-8")

    return deps.Resolution([deps.SourceFile(path, path.name, generate=generate)],
                           config=str(value) if value is not None else None)


def _config_ext(name: str) -> str:
    name = name.lower()
    if name.endswith(".in"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def _load_config(path: Path, ext: str, what: str) -> dict:
    try:
        text = path.read_text()
        if ext in YAML_EXTS:
            import yaml

            data = yaml.safe_load(text)
        elif ext in JSON_EXTS:
            import json

            data = json.loads(text)
        else:
            import configparser

            cp = configparser.ConfigParser()
            cp.read_string(text, source=what)
            flat = dict(cp.defaults())
            for section in cp.sections():
                for option in cp.options(section):
                    if option not in cp.defaults():
                        flat[f"{section}.{option}"] = cp.get(section, option)
            data = {}
            _nest(flat, data)
    except Exception as e:  # a parser's error, whatever its class
        detail = " ".join(str(e).split())
        raise _error(f"cannot load config '{what}': {detail}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _error(f"cannot load config '{what}': expected a mapping at the top, got {type(data).__name__}")
    return data


def _nest(kv: dict, data: dict) -> None:
    for name, val in sorted(kv.items(), key=lambda item: str(item[0])):
        parts = str(name).split(".")
        cur = data
        for i, part in enumerate(parts[:-1]):
            nxt = cur.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise _error(f"flag '{name}' cannot be nested: '{'.'.join(parts[:i + 1])}' is {nxt!r}")
            cur = nxt
        cur[parts[-1]] = val


def _encode_config(data: dict, ext: str) -> str:
    if ext in YAML_EXTS:
        import yaml

        return yaml.safe_dump(data, default_flow_style=False)
    if ext in JSON_EXTS:
        import json

        return json.dumps(data, sort_keys=True)
    import configparser
    import io

    cp = configparser.ConfigParser()
    for key, val in sorted(data.items()):
        if isinstance(val, dict):
            cp.add_section(key)
            for opt, opt_val in sorted(val.items()):
                cp.set(key, opt, str(opt_val))
        else:
            cp.set("DEFAULT", key, str(val))
    out = io.StringIO()
    cp.write(out)
    return out.getvalue()


# ---------------------------------------------------------------------
# module:
# ---------------------------------------------------------------------


def resolve_module(dep, value, ctx):
    import importlib.util
    import sys

    name = str(dep["module"])
    saved = list(sys.path)
    sys.path.insert(0, str(ctx.project_dir))
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as e:
        raise _error(str(e) or f"No module named '{name}'") from None
    finally:
        sys.path[:] = saved
    if spec is None:
        raise _error(f"No module named '{name}'")
    return _deps().Resolution([])
