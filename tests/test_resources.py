"""Resource dependencies (Guild AI 0.9's file, url, config and module
sources) and the placement keys every dependency shares, through the
real CLI: each is resolved before the run exists, so a missing or
mismatched resource is one ``guild:`` line and no run is left behind."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from guild_core.run import Run

TRAIN = """
import os
x = 1
os.makedirs("models", exist_ok=True)
for step in (1, 5, 3):
    open("models/model-%d.ckpt" % step, "w").write("ckpt %d x=%s" % (step, x))
open("model.txt", "w").write("model x=%s" % x)
print("loss: %s" % (1.0 / x))
"""

SHOW = """
import os
for root, dirs, files in sorted(os.walk(".")):
    if root.startswith("./.guild"):
        continue
    for name in sorted(files):
        path = os.path.join(root, name)[2:]
        print(path, "->", open(path, "rb").read().decode("utf-8", "replace").strip()[:40])
"""


def write_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def write_tgz(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runs_of(guild_home, op: str | None = None) -> list[Run]:
    root = guild_home / "runs"
    if not root.exists():
        return []
    runs = [Run.for_dir(p) for p in root.iterdir() if not p.name.startswith(".")]
    return sorted((r for r in runs if op is None or r.op_name == op), key=lambda r: r.get("started") or 0)


def newest(guild_home, op: str) -> Run:
    return runs_of(guild_home, op)[-1]


def fails(cli, guild_home, text: str, *args: str):
    """``guild run use ARGS -y`` fails with one line holding `text`
    and leaves no run (not even a hidden one) behind."""
    before = sorted(p.name for p in (guild_home / "runs").iterdir()) if (guild_home / "runs").exists() else []
    out = cli("run", "use", *args, "-y")
    assert out.exit_code == 1, out.output
    assert out.stderr.startswith("guild: "), out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert text in out.stderr, out.stderr
    after = sorted(p.name for p in (guild_home / "runs").iterdir()) if (guild_home / "runs").exists() else []
    assert after == before
    return out


def yml(text: str) -> str:
    return text


@pytest.fixture
def proj(cli, guild_home, project):
    project.write("show.py", SHOW)
    project.write("train.py", TRAIN)
    project.write("data.csv", "a,b\n1,2\n")
    return project


def use(project, requires: str, extra: str = "") -> None:
    """An operation ``use`` that lists the files it was given."""
    project.write("guild.yml", "use:\n  main: show\n  flags:\n    x: 1\n  requires:\n" + requires + extra)


def info(cli, run) -> dict:
    return json.loads(cli("runs", "info", run.id, "--deps", "--json").output)


# -- file: -------------------------------------------------------------------


def test_file_is_copied_by_default_and_recorded(cli, guild_home, proj):
    """Guild AI 0.9 copies a resource's files unless `target-type: link`."""
    use(proj, "    - file: data.csv\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    assert "data.csv -> a,b" in out.output
    run = newest(guild_home, "use")
    copied = run.path / "data.csv"
    assert copied.is_file() and not copied.is_symlink()
    assert copied.read_text() == (proj.path / "data.csv").read_text()
    assert run.get("deps") == {"file:data.csv": {"file:data.csv": {"uri": "file:data.csv", "paths": ["data.csv"]}}}
    assert info(cli, run)["dependencies"]["file:data.csv"]["file:data.csv"]["paths"] == ["data.csv"]
    use(proj, "    - file: data.csv\n      target-type: link\n")
    assert cli("run", "use", "-y").exit_code == 0
    link = newest(guild_home, "use").path / "data.csv"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == (proj.path / "data.csv").resolve()


def test_file_copy_target_path_and_rename_forms(cli, guild_home, proj):
    proj.write("b.txt", "b")
    proj.write("c.txt", "c")
    proj.write("d.txt", "d")
    use(
        proj,
        "    - file: data.csv\n"
        "      target-type: copy\n"
        "      target-path: data\n"
        "      rename: data train\n"            # PATTERN REPL
        "    - file: b.txt\n"
        "      rename: renamed-b.txt\n"         # NAME: the whole name
        "    - file: c.txt\n"
        "      rename:\n"
        "        - pattern: nomatch\n"
        "          repl: x\n"
        "        - pattern: c\\.txt\n"
        "          repl: see.txt\n"
        "    - file: d.txt\n"
        "      rename: \"'d' 'the d'\"\n",       # quoted, as shlex reads it
    )
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    copied = run.path / "data" / "train.csv"
    assert copied.is_file() and not copied.is_symlink() and copied.read_text() == "a,b\n1,2\n"
    assert (run.path / "renamed-b.txt").read_text() == "b"
    assert (run.path / "see.txt").read_text() == "c"
    assert (run.path / "the d.txt").read_text() == "d"


def test_directory_glob_select_and_preserve_path(cli, guild_home, proj):
    proj.write("data/a.csv", "1")
    proj.write("data/b.csv", "2")
    proj.write("data/notes.txt", "n")
    proj.write("data/sub/c.csv", "3")
    use(
        proj,
        "    - file: data\n"                        # the directory itself
        "    - file: data\n"
        "      name: csvs\n"
        "      select: .*\\.csv\n"                   # its files, by regex
        "      target-path: selected\n"
        "    - file: data/*.csv\n"                  # a glob
        "      target-path: globbed\n"
        "    - file: data/sub/c.csv\n"
        "      preserve-path: yes\n"
        "      target-path: kept\n",
    )
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    assert (run.path / "data").is_dir() and (run.path / "data" / "notes.txt").read_text() == "n"
    assert sorted(p.name for p in (run.path / "selected").iterdir()) == ["a.csv", "b.csv", "c.csv"]
    assert sorted(p.name for p in (run.path / "globbed").iterdir()) == ["a.csv", "b.csv"]
    assert (run.path / "kept" / "data" / "sub" / "c.csv").read_text() == "3"


def test_archives_are_unpacked_into_the_cache(cli, guild_home, proj):
    write_zip(proj.path / "data.zip", {"train/a.txt": "za", "top.txt": "zt"})
    write_tgz(proj.path / "ckpts.tar.gz", {"ckpt/model-1.ckpt": "1", "ckpt/model-12.ckpt": "12", "ckpt/model-3.ckpt": "3"})
    write_zip(proj.path / "keep.zip", {"x.txt": "x"})
    use(
        proj,
        "    - file: data.zip\n"
        "    - file: ckpts.tar.gz\n"
        "      select-max: ckpt/model-(\\d+)\\.ckpt\n"
        "    - file: keep.zip\n"
        "      unpack: no\n",
    )
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    assert (run.path / "train" / "a.txt").read_text() == "za"
    assert (run.path / "top.txt").read_text() == "zt"
    assert (run.path / "model-12.ckpt").read_text() == "12"
    assert not (run.path / "model-1.ckpt").exists()
    assert zipfile.is_zipfile(run.path / "keep.zip")
    digest = hashlib.sha224(("file\n" + str(proj.path / "data.zip")).encode()).hexdigest()
    unpacked = guild_home / "cache" / "resources" / digest
    assert (unpacked / "top.txt").read_text() == "zt"
    assert (run.path / "top.txt").read_bytes() == (unpacked / "top.txt").read_bytes()
    assert run.get("deps")["file:data.zip"]["file:data.zip"]["paths"] == ["top.txt", "train"]
    # A second run uses what is unpacked.
    assert cli("run", "use", "-y").exit_code == 0


def test_gzip_file_is_unpacked_and_help_op_lists_resources(cli, guild_home, proj):
    import gzip

    (proj.path / "words.txt.gz").write_bytes(gzip.compress(b"hello"))
    use(proj, "    - file: words.txt.gz\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    assert (newest(guild_home, "use").path / "words.txt").read_text() == "hello"
    listed = cli("run", "use", "--help-op").output
    assert "  file:words.txt.gz  file:words.txt.gz\n" in listed + "\n" and "many runs" not in listed


def test_archive_member_out_of_the_archive_is_refused(cli, guild_home, proj):
    write_zip(proj.path / "evil.zip", {"../escape.txt": "x"})
    use(proj, "    - file: evil.zip\n")
    out = fails(cli, guild_home, "has a member outside the archive: '../escape.txt'")
    assert not list(guild_home.rglob("escape.txt"))


def test_sha256_is_verified(cli, guild_home, proj):
    good = sha256(proj.path / "data.csv")
    use(proj, f"    - file: data.csv\n      sha256: {good}\n")
    assert cli("run", "use", "-y").exit_code == 0
    use(proj, f"    - file: data.csv\n      sha256: {'f' * 64}\n")
    runs_before = len(runs_of(guild_home))
    out = cli("run", "use", "-y")
    assert out.exit_code == 1 and len(runs_of(guild_home)) == runs_before
    assert out.stderr == (
        "guild: run failed because a dependency was not met: could not resolve 'file:data.csv': "
        f"'data.csv' has an unexpected sha256 (expected {'f' * 64} but got {good})\n"
    )


def test_missing_file_is_one_line_and_no_run(cli, guild_home, proj):
    use(proj, "    - file: nosuch.csv\n")
    out = fails(cli, guild_home, "could not resolve 'file:nosuch.csv': cannot find source file 'nosuch.csv'")
    use(proj, "    - file: none/*.csv\n")
    fails(cli, guild_home, "no file matches 'none/*.csv'")


def test_optional_missing_resource_is_skipped_with_a_note(cli, guild_home, proj):
    use(proj, "    - file: nosuch.csv\n      optional: yes\n    - file: data.csv\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    assert "Skipping optional dependency 'file:nosuch.csv': cannot find source file 'nosuch.csv'" in out.stderr
    run = newest(guild_home, "use")
    assert list(run.get("deps")) == ["file:data.csv"]


def test_help_is_shown_with_the_error(cli, guild_home, proj):
    use(proj, "    - file: weights.h5\n      help: Run 'guild run fetch' first\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 1
    assert out.stderr.splitlines()[0].endswith("cannot find source file 'weights.h5'")
    assert "Run 'guild run fetch' first" in out.stderr
    assert not runs_of(guild_home, "use")


def test_value_on_the_command_line_replaces_the_file(cli, guild_home, proj):
    proj.write("other.csv", "o\n")
    use(proj, "    - file: data.csv\n      name: data\n")
    for spelling in ("data=other.csv", "file:data.csv=other.csv"):
        out = cli("run", "use", spelling, "-y")
        assert out.exit_code == 0, out.stderr
        assert "other.csv -> o" in out.output
        run = newest(guild_home, "use")
        source = run.get("deps")["data"]["data"]
        assert source["config"] == "other.csv" and source["value"] == "other.csv"
        assert run.get("flags")["data"] == "other.csv"
        assert "--data" not in run.get("cmd")


def test_empty_selection_warns_or_fails(cli, guild_home, proj):
    proj.write("data/a.csv", "1")
    use(proj, "    - file: data\n      select: .*\\.json\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0 and "WARNING: nothing resolved for 'file:data'" in out.stderr
    use(proj, "    - file: data\n      select: .*\\.json\n      warn-if-empty: no\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0 and "WARNING" not in out.stderr
    runs_before = len(runs_of(guild_home))
    use(proj, "    - file: data\n      select: .*\\.json\n      fail-if-empty: yes\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 1 and out.stderr.strip().endswith("nothing resolved for 'file:data'")
    assert len(runs_of(guild_home)) == runs_before


def test_resource_with_sources_list(cli, guild_home, proj):
    proj.write("labels.txt", "l")
    write_zip(proj.path / "images.zip", {"img/1.png": "p"})
    use(
        proj,
        "    - name: dataset\n"
        "      target-path: ds\n"
        "      sources:\n"
        "        - file: data.csv\n"
        "        - file: images.zip\n"
        "        - labels.txt\n",            # a string source is a file
    )
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    assert sorted(p.name for p in (run.path / "ds").iterdir()) == ["data.csv", "img", "labels.txt"]
    deps = run.get("deps")
    assert list(deps) == ["dataset"]
    assert deps["dataset"] == {
        "file:data.csv": {"uri": "file:data.csv", "paths": ["ds/data.csv"]},
        "file:images.zip": {"uri": "file:images.zip", "paths": ["ds/img"]},
        "file:labels.txt": {"uri": "file:labels.txt", "paths": ["ds/labels.txt"]},
    }


def test_post_process_runs_once_and_default_unpack(cli, guild_home, proj):
    write_zip(proj.path / "raw.zip", {"raw.txt": "r"})
    use(
        proj,
        "    - file: raw.zip\n"
        "      post-process: echo ran >> post.log\n"
        "    - name: packed\n"
        "      default-unpack: no\n"
        "      sources:\n"
        "        - file: raw.zip\n"
        "          target-path: packed\n",
    )
    assert cli("run", "use", "-y").exit_code == 0
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    assert (run.path / "raw.txt").read_text() == "r"
    assert zipfile.is_zipfile(run.path / "packed" / "raw.zip")
    logs = list((guild_home / "cache" / "resources").glob("*/post.log"))
    assert len(logs) == 1 and logs[0].read_text() == "ran\n"


def test_bad_resource_specs_are_errors(cli, guild_home, proj):
    use(proj, "    - file: data.csv\n      colour: red\n")
    fails(cli, guild_home, "unsupported attribute 'colour' in dependency 'file: data.csv'")
    use(proj, "    - file: data.csv\n      target-type: hardlink\n")
    fails(cli, guild_home, "unsupported target-type 'hardlink' (expected 'link' or 'copy')")
    use(proj, "    - file: data.csv\n      target-path: ../out\n")
    fails(cli, guild_home, "invalid target-path '../out'")


# -- url: --------------------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving `root`; `hits` lists the
    paths requested. Stopped whatever the test does."""
    root = tmp_path / "served"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=str(root), **kw)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    class Server:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"

    Server.root = root
    Server.hits = hits
    try:
        yield Server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_url_is_downloaded_once_into_the_cache(cli, guild_home, proj, server):
    (server.root / "weights.bin").write_text("w")
    url = f"{server.url}/weights.bin"
    use(proj, f"    - url: {url}\n      sha256: {sha256(server.root / 'weights.bin')}\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    assert "weights.bin -> w" in out.output
    assert cli("run", "use", "-y").exit_code == 0
    assert server.hits == ["/weights.bin"]
    from urllib.parse import urlparse

    digest = hashlib.sha224("\n".join(urlparse(url)).encode()).hexdigest()
    cached = guild_home / "cache" / "resources" / digest / "weights.bin"
    assert cached.read_text() == "w"
    run = newest(guild_home, "use")
    assert (run.path / "weights.bin").read_bytes() == cached.read_bytes()
    assert run.get("deps") == {url: {url: {"uri": url, "paths": ["weights.bin"]}}}


def test_url_archive_is_unpacked(cli, guild_home, proj, server):
    write_tgz(server.root / "data.tgz", {"./data/train.csv": "t", "./data/test.csv": "s"})
    use(proj, f"    - url: {server.url}/data.tgz\n      select: data/train\\.csv\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    assert "train.csv -> t" in out.output and "test.csv" not in out.output


def test_url_sha256_mismatch_and_unreachable(cli, guild_home, proj, server):
    (server.root / "weights.bin").write_text("w")
    use(proj, f"    - url: {server.url}/weights.bin\n      sha256: {'1' * 64}\n")
    out = fails(cli, guild_home, f"bad sha256 for '{server.url}/weights.bin' (expected {'1' * 64} but got ")
    assert not list((guild_home / "cache" / "resources").rglob("weights.bin"))
    use(proj, f"    - url: {server.url}/missing.bin\n")
    fails(cli, guild_home, "cannot download " + server.url + "/missing.bin: HTTP 404")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    use(proj, f"    - url: http://127.0.0.1:{port}/x.zip\n")
    out = fails(cli, guild_home, f"could not resolve 'http://127.0.0.1:{port}/x.zip': cannot download http://127.0.0.1:{port}/x.zip: ")


# -- config: -----------------------------------------------------------------


def test_config_files_get_the_run_flags(cli, guild_home, proj):
    proj.write("cfg.yml", "x: 0\nlr: 0.5\nmodel:\n  layers: 2\n")
    proj.write("cfg.json", '{"x": 0, "other": true}')
    proj.write("cfg.ini", "[DEFAULT]\nx = 0\n[model]\nlayers = 2\n")
    proj.write(
        "guild.yml",
        "use:\n  main: show\n  flags:\n    x: 3\n    model.layers: 4\n  requires:\n"
        "    - config: cfg.yml\n      params:\n        extra: yes\n"
        "    - config: cfg.json\n"
        "    - config: cfg.ini\n",
    )
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    import yaml

    assert yaml.safe_load((run.path / "cfg.yml").read_text()) == {"x": 3, "lr": 0.5, "model": {"layers": 4}, "extra": True}
    assert json.loads((run.path / "cfg.json").read_text()) == {"x": 3, "other": True, "model": {"layers": 4}}
    import configparser

    cp = configparser.ConfigParser()
    cp.read_string((run.path / "cfg.ini").read_text())
    assert cp.get("DEFAULT", "x") == "3" and cp.get("model", "layers") == "4"
    # The project's file is untouched.
    assert (proj.path / "cfg.yml").read_text().startswith("x: 0")
    assert run.get("deps")["config:cfg.yml"]["config:cfg.yml"]["paths"] == ["cfg.yml"]


def test_invalid_config_files_are_one_line(cli, guild_home, proj):
    proj.write("bad.yml", "x: [1, 2\ny: :\n")
    use(proj, "    - config: bad.yml\n")
    fails(cli, guild_home, "cannot load config 'bad.yml': ")
    proj.write("bad.json", "{x: 1}")
    use(proj, "    - config: bad.json\n")
    fails(cli, guild_home, "cannot load config 'bad.json': ")
    proj.write("list.yml", "- 1\n- 2\n")
    use(proj, "    - config: list.yml\n")
    fails(cli, guild_home, "expected a mapping at the top, got list")
    proj.write("cfg.txt", "x")
    use(proj, "    - config: cfg.txt\n")
    fails(cli, guild_home, "unsupported config file type 'cfg.txt'")


def test_each_batch_trial_gets_its_own_config(cli, guild_home, proj):
    proj.write("cfg.json", '{"x": 0}')
    use(proj, "    - config: cfg.json\n")
    out = cli("run", "use", "x=[1,2]", "-y")
    assert out.exit_code == 0, out.stderr
    trials = [r for r in runs_of(guild_home, "use") if (r.path / "cfg.json").exists()]
    assert sorted(json.loads((r.path / "cfg.json").read_text())["x"] for r in trials) == [1, 2]


# -- module: -----------------------------------------------------------------


def test_module_dependency(cli, guild_home, proj):
    proj.write("helpers/__init__.py", "")
    use(proj, "    - module: json\n    - module: helpers\n")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    assert newest(guild_home, "use").get("deps")["module:json"] == {"module:json": {"uri": "module:json", "paths": []}}
    use(proj, "    - module: no_such_module_here\n")
    fails(
        cli, guild_home,
        "could not resolve 'module:no_such_module_here': No module named 'no_such_module_here'",
    )


# -- operation: --------------------------------------------------------------

OP_YML = """
train:
  main: train
  flags:
    x: 1
use:
  main: show
  flags:
    y: 1
  requires:
    - operation: train
      select: models/model-.*\\.ckpt
      target-path: ckpts
      rename: model ckpt
"""


def test_operation_placement_flag_label_and_compare(cli, guild_home, proj):
    proj.write("guild.yml", OP_YML)
    assert cli("run", "train", "x=2", "-y").exit_code == 0
    first = newest(guild_home, "train")
    assert cli("run", "train", "x=3", "-y").exit_code == 0
    latest = newest(guild_home, "train")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    # Guild AI's placement: the selected files by name, renamed, under target-path.
    assert sorted(p.name for p in (run.path / "ckpts").iterdir()) == ["ckpt-1.ckpt", "ckpt-3.ckpt", "ckpt-5.ckpt"]
    assert (run.path / "ckpts" / "ckpt-5.ckpt").read_text() == "ckpt 5 x=3"
    # The dependency is a flag holding the full run id, as Guild AI records it.
    assert run.get("flags") == {"operation:train": latest.id, "y": 1}
    assert run.get("label") == f"operation:train={latest.id} y=1"
    assert not any("operation:train" in a for a in run.get("cmd"))
    table = cli("compare", "-t", "-Fo", "use").output
    assert "operation:train" in table and latest.id[:8] in table
    # Guild AI's spelling on the command line, as well as the name.
    for spelling in (f"operation:train={first.short_id}", f"train={first.short_id}"):
        out = cli("run", "use", spelling, "-y")
        assert out.exit_code == 0, out.stderr
        run = newest(guild_home, "use")
        assert run.get("flags")["operation:train"] == first.id
        assert (run.path / "ckpts" / "ckpt-5.ckpt").read_text() == "ckpt 5 x=2"


def test_operation_takes_the_latest_completed_running_or_terminated_run(cli, guild_home, proj):
    proj.write("stop.py", "import os, signal\nopen('model.txt', 'w').write('stopped')\nos.kill(os.getpid(), signal.SIGTERM)\n")
    proj.write("fail.py", "open('model.txt', 'w').write('failed')\nraise SystemExit(3)\n")
    proj.write("guild.yml", "train:\n  main: train\nstop:\n  main: stop\nfail:\n  main: fail\n"
               "use:\n  main: show\n  requires:\n    - operation: stop\n      name: up\n      select: model.txt\n")
    cli("run", "stop", "-y")
    stopped = newest(guild_home, "stop")
    assert stopped.status == "terminated"
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    assert "model.txt -> stopped" in out.output
    proj.write("guild.yml", proj.path.joinpath("guild.yml").read_text().replace("operation: stop", "operation: fail"))
    cli("run", "fail", "-y")
    assert newest(guild_home, "fail").status == "error"
    fails(cli, guild_home, "could not resolve 'operation:fail': no marked or completed run of fail")


def test_flag_name_names_the_flag(cli, guild_home, proj):
    proj.write("guild.yml", OP_YML.replace("      rename: model ckpt\n", "      rename: model ckpt\n      flag-name: weights\n"))
    assert cli("run", "train", "-y").exit_code == 0
    first = newest(guild_home, "train")
    assert cli("run", "train", "-y").exit_code == 0
    out = cli("run", "use", f"weights={first.short_id}", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    assert run.get("flags") == {"weights": first.id, "y": 1}
    assert run.get("label") == f"weights={first.id} y=1"


def test_operation_without_select_gets_what_the_run_made(cli, guild_home, proj):
    proj.write("guild.yml", OP_YML.replace("      select: models/model-.*\\.ckpt\n      target-path: ckpts\n      rename: model ckpt\n", "      name: model\n"))
    assert cli("run", "train", "-y").exit_code == 0
    up = newest(guild_home, "train")
    out = cli("run", "use", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "use")
    # Top-level files and directories the run made; not its source code.
    assert (run.path / "models").is_symlink() and (run.path / "model.txt").is_symlink()
    assert not (run.path / "train.py").is_symlink()
    assert run.get("flags")["model"] == up.id
    assert sorted(run.get("deps")["model"]["operation:train"]["paths"]) == ["model.txt", "models"]


def test_restart_resolves_again_and_keeps_the_flag_out_of_the_command(cli, guild_home, proj):
    proj.write("guild.yml", OP_YML)
    assert cli("run", "train", "-y").exit_code == 0
    assert cli("run", "use", "-y").exit_code == 0
    run = newest(guild_home, "use")
    assert cli("run", "train", "x=7", "-y").exit_code == 0
    newer = newest(guild_home, "train")
    out = cli("run", "--restart", run.id, "-y")
    assert out.exit_code == 0, out.stderr
    run = Run(run.id, run.path)
    assert run.get("deps")["train"]["operation:train"]["config"] == newer.id
    assert run.get("flags")["operation:train"] == newer.id
    assert not any("operation:train" in a for a in run.get("cmd"))
    assert (run.path / "ckpts" / "ckpt-5.ckpt").read_text() == "ckpt 5 x=7"


# -- the plugin --------------------------------------------------------------


def test_disabling_the_resources_plugin_removes_only_its_kinds(sh, guild_home, proj):
    proj.write("guild.yml", OP_YML + "data:\n  main: show\n  requires:\n    - file: data.csv\n")
    off = {"GUILD_DISABLE_PLUGINS": "resources"}
    out = sh("run", "data", "-y", env=off)
    assert out.exit_code == 1
    assert out.stderr == "guild: unsupported dependency (file): no resolver plugin handles it (see 'guild plugins')\n"
    assert sh("run", "train", "-y", env=off).exit_code == 0
    assert sh("run", "use", "-y", env=off).exit_code == 0
    assert sh("run", "data", "-y").exit_code == 0


def test_restart_never_removes_what_lies_outside_the_run(cli, guild_home, proj):
    use(proj, "    - file: data.csv\n")
    assert cli("run", "use", "-y").exit_code == 0
    run = newest(guild_home, "use")
    # Guild AI records its sources' paths, relative to the run.
    rel = str(Path("..") / ".." / ".." / "project" / "data.csv")
    assert (run.path / rel).resolve() == (proj.path / "data.csv").resolve()
    run.write_attr("deps", {"file:data.csv": {"file:data.csv": {"uri": "file:data.csv", "paths": [rel]}}})
    (run.path / "data.csv").unlink()
    out = cli("run", "--restart", run.id, "-y")
    assert out.exit_code == 0, out.stderr
    assert (proj.path / "data.csv").read_text() == "a,b\n1,2\n"
    assert (run.path / "data.csv").read_text() == "a,b\n1,2\n"


def test_same_dependency_twice_and_shared_source_names(cli, project, guild_home):
    """As Guild AI: a file listed twice is resolved once; sources of one
    resource may place the same file twice."""
    project.write("file-1", "one\n")
    project.write(
        "guild.yml",
        "twice:\n  main: guild.pass\n  requires:\n    - file: file-1\n    - file: file-1\n"
        "placed:\n  main: guild.pass\n  requires:\n    - name: data\n      sources:\n"
        "        - file: file-1\n        - file: file-1\n          rename: file-1 copy-1\n",
    )
    assert cli("run", "twice", "-y").exit_code == 0
    result = cli("run", "placed", "-y")
    assert result.exit_code == 0, result.stderr
    run_dir = Path(json.loads(cli("runs", "info", "--json").output)["run_dir"])
    assert (run_dir / "file-1").read_text() == "one\n" and (run_dir / "copy-1").read_text() == "one\n"


def test_a_placed_file_stays_unless_replace_existing(cli, project, guild_home):
    """As Guild AI: a dependency whose file is already there is skipped
    with a warning, or replaces it with `replace-existing: yes`."""
    project.write("file-0", "zero\n")
    project.write("file-1", "one\n")
    deps = "    - file: file-0\n      rename: file-0 file-1\n    - file: file-1\n"
    project.write("guild.yml", f"keep:\n  main: guild.pass\n  requires:\n{deps}"
                  f"replace:\n  main: guild.pass\n  requires:\n{deps}      replace-existing: yes\n")
    result = cli("run", "keep", "-y")
    assert result.exit_code == 0 and "file-1 already exists, skipping it" in result.stderr
    run_dir = Path(json.loads(cli("runs", "info", "--json").output)["run_dir"])
    assert (run_dir / "file-1").read_text() == "zero\n"
    assert cli("run", "replace", "-y").exit_code == 0
    run_dir = Path(json.loads(cli("runs", "info", "--json").output)["run_dir"])
    assert (run_dir / "file-1").read_text() == "one\n"


def test_flag_references_in_dependencies(cli, project, guild_home):
    """As Guild AI: ${flag} in a source path or a rename takes the run's
    value; a reference to no flag is one line and no run."""
    project.write("foo-file.txt", "foo\n")
    project.write("bar-file.txt", "bar\n")
    project.write(
        "guild.yml",
        "pick:\n  main: guild.pass\n  flags:\n    which:\n      default: foo\n      arg-skip: yes\n"
        "  requires:\n    - file: ${which}-file.txt\n      name: data\n      rename: ${which}-file.txt chosen.txt\n"
        "broken:\n  main: guild.pass\n  requires:\n    - file: ${nope}.txt\n",
    )
    assert cli("run", "pick", "which=bar", "-y").exit_code == 0
    run_dir = Path(json.loads(cli("runs", "info", "--json").output)["run_dir"])
    assert (run_dir / "chosen.txt").read_text() == "bar\n"
    result = cli("run", "broken", "-y")
    assert result.exit_code == 1 and "'${nope}' names no flag with a value" in result.stderr
    assert len(list((guild_home / "runs").iterdir())) == 1
