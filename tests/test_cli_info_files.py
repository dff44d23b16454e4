"""`guild runs info` sections, `guild ls`, `guild cat`, `guild open` and
`guild merge`, through the real CLI over real run directories."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from guild_core.run import Run

TRAIN = """
import os
x = 1
os.makedirs("out/sub", exist_ok=True)
open("out/model.txt", "w").write("model %s\\n" % x)
open("out/sub/deep.bin", "wb").write(b"\\0" * 2048)
open(".hidden", "w").write("h\\n")
open("data.txt", "a").write("changed by the run\\n") if x == 9 else None
print("loss: %s" % (1.0 / x))
print("loss: %s" % (0.5 / x))
print("loss: %s" % (2.0 / x))
print("sys/gpu: 3")
"""

GUILD_YML = """
train:
  main: train
  flags:
    x: 1
  env:
    LEVEL: "20"
  requires:
    - file: data.txt
    - file: cfg
"""


@pytest.fixture
def proj(project):
    project.write("train.py", TRAIN)
    project.write("guild.yml", GUILD_YML)
    project.write("data.txt", "data\n")
    project.write("cfg/a.yml", "a: 1\n")
    project.write("README.md", "readme\n")
    return project


def runs(guild_home) -> list[Run]:
    found = [Run.for_dir(p) for p in (guild_home / "runs").iterdir() if not p.name.startswith(".")]
    return sorted(found, key=lambda r: r.get("started") or 0)


@pytest.fixture
def run(cli, guild_home, proj) -> Run:
    out = cli("run", "train", "-y")
    assert out.exit_code == 0, out.stderr
    return runs(guild_home)[-1]


def one_error(result, text: str, code: int = 1) -> None:
    assert result.exit_code == code, (result.output, result.stderr)
    # One `guild:` line, and at most a hint after it.
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("guild: "), result.stderr
    assert not any(line.startswith("guild: ") for line in lines[1:]), result.stderr
    assert text in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def info_json(cli, *args) -> dict:
    out = cli("runs", "info", *args, "--json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.output)


# -- the manifest records dependencies ---------------------------------------


def test_manifest_lists_dependency_files_as_guild_ai_does(run):
    lines = [shlex.split(line) for line in run.guild_path("manifest").read_text().splitlines()]
    deps = [line for line in lines if line[0] == "d"]
    sha1 = __import__("hashlib").sha1(b"data\n").hexdigest()
    assert ["d", "data.txt", sha1, "file:data.txt"] in deps
    assert ["d", "cfg", "-", "file:cfg"] in deps
    # The dependency took cfg's place: the snapshot's lines for it go.
    assert [line[1] for line in lines if line[0] == "s"] == ["README.md", "guild.yml", "train.py"]


def test_manifest_dependency_from_another_run_is_not_the_projects(cli, guild_home, proj):
    proj.write("guild.yml", GUILD_YML + "use:\n  main: guild.pass\n  requires:\n    - operation: train\n")
    assert cli("run", "train", "-y").exit_code == 0
    assert cli("run", "use", "-y").exit_code == 0
    use = runs(guild_home)[-1]
    deps = [shlex.split(x) for x in use.guild_path("manifest").read_text().splitlines() if x.startswith("d ")]
    assert deps and all(d[3] == "operation:train" for d in deps), deps


# -- runs info ---------------------------------------------------------------


def test_info_default_has_no_extra_sections(cli, run):
    data = info_json(cli)
    for key in ("comments", "environment", "manifest", "dependencies", "plugins"):
        assert key not in data
    # The last value of each scalar; system scalars only with -s.
    assert data["scalars"] == {"loss": [2.0, 2]}


def test_info_comments(cli, run):
    assert cli("runs", "comment", "-m", "first\nsecond line", "-u", "ann@box", "-y").exit_code == 0
    data = info_json(cli, "-c")
    (comment,) = data["comments"]
    assert comment["user"] == "ann" and comment["host"] == "box"
    assert comment["body"] == "first\nsecond line" and comment["time"][:2] == "20"
    text = cli("runs", "info", "--comments").output
    assert "comments:\n  -\n    body: |\n      first\n      second line\n    host: box\n" in text
    assert info_json(cli, "-c", "-Fc", "second")["id"] == run.id


def test_info_env(cli, run):
    env = info_json(cli, "-e")["environment"]
    assert env["RUN_ID"] == run.id and env["LEVEL"] == "20"
    text = cli("runs", "info", "--env").output.splitlines()
    # A string that reads as a number is quoted, as Guild AI shows it.
    assert "  LEVEL: '20'" in text and f"  RUN_ID: {run.id}" in text
    assert text.index("environment:") > text.index("scalars:")


def test_info_deps(cli, run):
    deps = info_json(cli, "-d")["dependencies"]
    assert deps["file:data.txt"] == {"file:data.txt": {"uri": "file:data.txt", "paths": ["data.txt"]}}
    text = cli("runs", "info", "--deps").output
    assert "dependencies:\n  file:cfg:\n    file:cfg:\n      paths:\n      - cfg\n      uri: file:cfg\n" in text


def test_info_deps_of_a_run_without_any(cli, guild_home, proj):
    proj.write("plain.py", "print('hi')\n")
    assert cli("run", "plain.py", "-y").exit_code == 0
    assert info_json(cli, "-d")["dependencies"] == {}
    assert cli("runs", "info", "-d").output.splitlines()[-1] == "dependencies:"


def test_info_manifest(cli, run):
    manifest = info_json(cli, "-m")["manifest"]
    assert manifest == {"dependencies": ["cfg", "data.txt"], "sourcecode": ["README.md", "guild.yml", "train.py"]}
    text = cli("runs", "info", "--manifest").output
    assert "manifest:\n  dependencies:\n    - cfg\n    - data.txt\n  sourcecode:\n    - README.md\n" in text


def test_info_plugins(cli, run):
    assert info_json(cli, "-p")["plugins"] == []
    run.write_attr("plugins", ["cpu", "memory"])
    assert info_json(cli, "--plugins")["plugins"] == ["cpu", "memory"]
    assert cli("runs", "info", "-p").output.endswith("plugins:\n  - cpu\n  - memory\n")


def test_info_all_scalars(cli, run):
    scalars = info_json(cli, "-s")["scalars"]
    assert set(scalars) == {"loss", "sys/gpu"}
    assert scalars["loss"] == {
        "first": [1.0, 0],
        "last": [2.0, 2],
        "min": [0.5, 1],
        # max at its own step (Guild AI 0.9 gives it min's step).
        "max": [2.0, 2],
        "avg": [3.5 / 3, 3],
        "total": [3.5, 3],
    }
    text = cli("runs", "info", "--all-scalars").output
    assert "  loss:\n    avg: 1.166667 (count 3)\n    first: 1.000000 (step 0)\n" in text
    assert "    max: 2.000000 (step 2)\n    min: 0.500000 (step 1)\n    total: 3.500000 (count 3)\n" in text
    assert "  sys/gpu:\n" in text


def test_info_every_section_at_once(cli, run):
    data = info_json(cli, "-c", "-e", "-d", "-m", "-p", "-s")
    keys = list(data)
    assert keys[-6:] == ["scalars", "comments", "environment", "manifest", "dependencies", "plugins"]
    text = cli("runs", "info", "-cedmps").output.splitlines()
    order = [text.index(k + ":") for k in ("scalars", "comments", "environment", "manifest", "dependencies", "plugins")]
    assert order == sorted(order)


def test_info_deleted_is_a_long_option_only(cli, guild_home, proj):
    assert cli("run", "train", "x=2", "-y").exit_code == 0
    assert cli("run", "train", "x=4", "-y").exit_code == 0
    first, second = runs(guild_home)
    assert cli("runs", "delete", second.id, "-y").exit_code == 0
    assert info_json(cli, "--deleted")["id"] == second.id
    # -d is --deps: the latest run that is not deleted.
    data = info_json(cli, "-d")
    assert data["id"] == first.id and "dependencies" in data


def test_info_sections_escape_control_characters(cli, run):
    run.write_attr("comments", [{"body": "hi\x1b[2J", "user": "u\x1b]0;x\x07", "host": "h", "time": 0}])
    run.write_attr("plugins", ["p\x1b[31m"])
    text = cli("runs", "info", "-c", "-p").output
    assert "\x1b" not in text
    assert "    body: hi\\x1b[2J" in text and "    user: u\\x1b]0;x\\x07" in text and "  - p\\x1b[31m" in text
    # JSON keeps the values as stored.
    assert info_json(cli, "-c")["comments"][0]["body"] == "hi\x1b[2J"


def test_info_bad_input(cli, run):
    one_error(cli("runs", "info", "deadbeef"), "deadbeef")
    one_error(cli("runs", "info", "-r", "ec2"), "remote 'ec2' is not defined")
    out = cli("runs", "info", "--no-such-option")
    assert out.exit_code == 2 and "No such option" in out.stderr


def test_info_help_covers_every_option(cli):
    text = cli("runs", "info", "--help").output
    for opt in ("--comments", "--env", "--deps", "--manifest", "--plugins", "--all-scalars", "--json",
                "--deleted", "--archive", "--remote", "--filter", "--operation", "--started", "--running"):
        assert opt in text, opt


# -- ls ------------------------------------------------------------------------


def listing(cli, *args) -> list[str]:
    out = cli("ls", *args)
    assert out.exit_code == 0, out.stderr
    return out.output.splitlines()


def test_ls_default_hides_hidden_and_guild_files(cli, run):
    lines = listing(cli)
    assert lines[0] == f"{run.path}:"
    assert lines[1:] == [
        "  README.md", "  cfg/", "  cfg/a.yml", "  data.txt", "  guild.yml",
        "  out/", "  out/model.txt", "  out/sub/", "  out/sub/deep.bin", "  train.py",
    ]


def test_ls_all(cli, run):
    lines = listing(cli, "-a")
    assert "  .hidden" in lines and "  .guild/" in lines and "  .guild/attrs/flags" in lines
    assert "  out/model.txt" in listing(cli, "--all")


def test_ls_kinds(cli, run):
    assert listing(cli, "-s")[1:] == ["  README.md", "  guild.yml", "  train.py"]
    assert listing(cli, "--dependencies")[1:] == ["  cfg/", "  cfg/a.yml", "  data.txt"]
    # Generated files include hidden ones (as in Guild AI), never .guild.
    assert listing(cli, "-g")[1:] == ["  .hidden", "  out/model.txt", "  out/sub/deep.bin"]
    assert listing(cli, "-s", "-d")[1:] == ["  README.md", "  cfg/", "  cfg/a.yml", "  data.txt", "  guild.yml", "  train.py"]
    assert listing(cli, "-sdg", "-a") == listing(cli, "-sdg")


def test_ls_path(cli, run):
    assert listing(cli, "-p", "out")[1:] == ["  out/", "  out/model.txt", "  out/sub/", "  out/sub/deep.bin"]
    assert listing(cli, "--path", "out/sub/")[1:] == ["  out/sub/", "  out/sub/deep.bin"]
    assert listing(cli, "-p", ".hidden")[1:] == ["  .hidden"]
    assert "  .guild/attrs/flags" in listing(cli, "-p", ".guild")
    assert listing(cli, "-g", "-p", "out")[1:] == ["  out/model.txt", "  out/sub/deep.bin"]


def test_ls_path_patterns(cli, run):
    assert listing(cli, "-p", "*.py")[1:] == ["  train.py"]
    assert listing(cli, "-p", "out/*")[1:] == ["  out/model.txt", "  out/sub/", "  out/sub/deep.bin"]
    assert listing(cli, "-p", "?ut/s*")[1:] == ["  out/sub/", "  out/sub/deep.bin"]
    # A hidden name matches only a pattern part that starts with a dot.
    assert listing(cli, "-p", "*")[1:] == listing(cli)[1:]
    assert listing(cli, "-p", ".h*")[1:] == ["  .hidden"]
    assert listing(cli, "-p", "*.nothing")[1:] == []


def test_ls_natural_order(cli, run):
    for name in ("f10.txt", "f2.txt", "f1.txt"):
        (run.path / name).write_text("x")
    names = [line.strip() for line in listing(cli, "-p", "f*")[1:]]
    assert names == ["f1.txt", "f2.txt", "f10.txt"]


def test_ls_full_path_and_no_format(cli, run):
    assert listing(cli, "-f", "-p", "out/sub") == [f"{run.path}/out/sub/", f"{run.path}/out/sub/deep.bin"]
    assert listing(cli, "-n", "-p", "out/sub") == ["out/sub/", "out/sub/deep.bin"]
    assert listing(cli, "--no-format") == [line.strip() for line in listing(cli)[1:]]


def test_ls_extended_sizes(cli, run):
    assert listing(cli, "-x", "-p", "out") == [
        f"{run.path}:", "     -  out/", "     8  out/model.txt", "     -  out/sub/", "  2048  out/sub/deep.bin",
    ]
    assert listing(cli, "-x", "-h", "-n", "-p", "out/sub") == ["   -  out/sub/", "2.0K  out/sub/deep.bin"]
    # -h alone changes nothing (it is for -x).
    assert listing(cli, "-h") == listing(cli)


def test_ls_follow_links(cli, run, guild_home, proj):
    assert cli("run", "train.py", "x=[1,2]", "-y").exit_code == 0
    batch = next(r for r in runs(guild_home) if r.guild_path("proto").is_dir())
    trials = sorted(p.name for p in batch.path.iterdir() if p.is_symlink())
    assert sorted(listing(cli, batch.id)[1:]) == sorted(f"  {t}/" for t in trials)
    followed = listing(cli, batch.id, "-L")
    for trial in trials:
        assert f"  {trial}/out/model.txt" in followed
        assert f"  {trial}/.guild/attrs/flags" not in followed
    # Kind listings never list Guild's files, a trial's either.
    assert not any(".guild" in line for line in listing(cli, batch.id, "-g", "-L", "-a"))


def test_ls_bad_input(cli, run):
    one_error(cli("ls", "-p", "nope"), "does not exist")
    one_error(cli("ls", "-p", "../*"), "outside the run directory")
    one_error(cli("ls", "-p", "/etc"), "outside the run directory")
    one_error(cli("ls", "-r", "ec2"), "remote 'ec2' is not defined")
    one_error(cli("ls", "deadbeef"), "deadbeef")


def test_ls_help_covers_every_option(cli):
    text = cli("ls", "--help").output
    for opt in ("--path", "--sourcecode", "--dependencies", "--generated", "--all", "--full-path",
                "--follow-links", "--no-format", "--extended", "--human-readable", "--remote", "--filter"):
        assert opt in text, opt


# -- cat -----------------------------------------------------------------------


def test_cat_path_sourcecode_output_page(cli, run):
    assert cli("cat", "-p", "out/model.txt").output == "model 1\n"
    assert cli("cat", "-s", "-p", "train.py").output == (run.path / "train.py").read_text()
    assert cli("cat", "-O").output == "loss: 1.0\nloss: 0.5\nloss: 2.0\nsys/gpu: 3\n"
    assert cli("cat", "-p", "data.txt", "-pa").output.rstrip("\n") == "data"
    assert cli("cat", "--output", "--page").output.startswith("loss: 1.0\n")


def test_cat_sourcecode_dest(cli, guild_home, proj):
    proj.write("guild.yml", "train:\n  main: train\n  flags: {x: 1}\n  sourcecode:\n    dest: src\n")
    assert cli("run", "train", "-y").exit_code == 0
    assert cli("cat", "-s", "-p", "guild.yml").output.startswith("train:")
    assert listing(cli, "-s")[1:] == ["  src/README.md", "  src/cfg/a.yml", "  src/data.txt", "  src/guild.yml", "  src/train.py"]
    assert listing(cli, "-s", "-p", "train.py")[1:] == ["  src/train.py"]
    one_error(cli("cat", "-p", "guild.yml"), "does not exist")


def test_cat_bad_input(cli, run):
    one_error(cli("cat"), "--path is required unless --output")
    one_error(cli("cat", "-O", "-p", "train.py"), "--output cannot be used with --path")
    one_error(cli("cat", "-O", "-s"), "--output cannot be used")
    one_error(cli("cat", "-p", "out"), "is a directory")
    one_error(cli("cat", "-s", "-p", "../x"), "outside the run directory")
    one_error(cli("cat", "-r", "ec2", "-O"), "remote 'ec2' is not defined")


def test_cat_help_covers_every_option(cli):
    text = cli("cat", "--help").output
    for opt in ("--path", "--sourcecode", "--output", "-pa, --page", "--remote", "--filter"):
        assert opt in text, opt


# -- open ----------------------------------------------------------------------

RECORD = """
import json, os, sys
with open(os.environ["RECORD_TO"], "a") as f:
    f.write(json.dumps({"args": sys.argv[1:], "cwd": os.getcwd()}) + "\\n")
sys.exit(int(os.environ.get("RECORD_EXIT", "0")))
"""


@pytest.fixture
def recorder(tmp_path):
    """A --cmd that records what it is given, never a desktop opener."""
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    log = tmp_path / "opened.jsonl"

    class Recorder:
        cmd = f"{shlex.quote(__import__('sys').executable)} {shlex.quote(str(script))}"
        env = {"RECORD_TO": str(log)}

        def calls(self):
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return Recorder()


def test_open_with_cmd(sh, run, recorder):
    assert sh("open", "--cmd", recorder.cmd, env=recorder.env).exit_code == 0
    assert sh("open", "-p", "out/model.txt", "-c", recorder.cmd, env=recorder.env).exit_code == 0
    assert sh("open", "-O", "-c", recorder.cmd, env=recorder.env).exit_code == 0
    assert sh("open", "-s", "-c", recorder.cmd, env=recorder.env).exit_code == 0
    opened = [c["args"][-1] for c in recorder.calls()]
    assert opened == [str(run.path), str(run.path / "out/model.txt"), str(run.guild_path("output")), str(run.path)]


def test_open_without_an_opener_prints_the_path(sh, run, tmp_path):
    empty = tmp_path / "no-bin"
    empty.mkdir()
    out = sh("open", "-p", "out", env={"PATH": str(empty)})
    assert out.exit_code == 0, out.stderr
    assert out.output == f"{run.path / 'out'}\n"


def test_open_shell_cmd_runs_in_the_directory(sh, run, recorder):
    out = sh("open", "--shell-cmd", recorder.cmd, "-p", "out/model.txt", env=recorder.env)
    assert out.exit_code == 0, out.stderr
    assert "Running a new shell in" in out.stderr
    (call,) = recorder.calls()
    assert call["cwd"] == str((run.path / "out").resolve()) and call["args"] == []
    out = sh("open", "--shell", env={**recorder.env, "SHELL": recorder.cmd.split()[0]}, input="")
    assert out.exit_code == 0, out.stderr


def test_open_bad_input(cli, sh, run, recorder):
    one_error(cli("open", "-p", "nope", "--cmd", "true"), "does not exist")
    one_error(cli("open", "-p", "../..", "--cmd", "true"), "outside the run directory")
    one_error(cli("open", "--cmd", "x", "--shell"), "--cmd and --shell cannot both be used")
    one_error(cli("open", "--shell", "--shell-cmd", "x"), "cannot both be used")
    one_error(cli("open", "-O", "-p", "x"), "--output cannot be used")
    one_error(cli("open", "--cmd", "no-such-opener-here"), "cannot run no-such-opener-here")
    one_error(sh("open", "--cmd", recorder.cmd, env={**recorder.env, "RECORD_EXIT": "3"}), "exited with status 3")
    one_error(cli("open", "deadbeef", "--cmd", "true"), "deadbeef")


def test_open_help_covers_every_option(cli):
    text = cli("open", "--help").output
    for opt in ("--path", "--sourcecode", "--output", "--cmd", "--shell", "--shell-cmd", "--filter"):
        assert opt in text, opt
    assert "Open a run path or output." in cli("--help").output


# -- merge ---------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (not .git) and its bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath, name)
            out[str(path.relative_to(root))] = path.read_bytes() if not path.is_symlink() else b"->" + os.readlink(path).encode()
    return out


def merged(cli, *args, input=None):
    return cli("merge", *args, input=input)


def test_merge_copies_changed_source_back_only_with_replace(cli, run, proj):
    proj.write("train.py", "print('edited since')\n")
    before = snapshot(proj.path)
    out = merged(cli, "-y")
    one_error(out, "files in the current directory would be replaced: train.py")
    assert "--replace" in out.stderr
    assert snapshot(proj.path) == before
    out = merged(cli, "-y", "--replace")
    assert out.exit_code == 0, out.stderr
    assert out.stderr.splitlines() == ["Copying train.py"]
    assert (proj.path / "train.py").read_text() == (run.path / "train.py").read_text()


def test_merge_all_copies_generated_files_after_asking(cli, run, proj):
    before = snapshot(proj.path)
    out = merged(cli, "-a", input="n\n")
    assert out.exit_code == 4
    assert "You are about to copy files from the following run to the current directory:" in out.stderr
    assert f"  [{run.short_id}]  train" in out.stderr
    assert "Files:\n  .hidden\n  out/model.txt\n  out/sub/deep.bin\n" in out.stderr
    assert "will not be copied (use --preview to show the full list)" in out.stderr
    assert snapshot(proj.path) == before
    out = merged(cli, "--all", input="y\n")
    assert out.exit_code == 0, out.stderr
    assert (proj.path / "out/sub/deep.bin").read_bytes() == b"\0" * 2048
    assert (proj.path / ".hidden").read_text() == "h\n"
    # Again: all unchanged.
    out = merged(cli, "-a", "-y")
    assert out.exit_code == 0 and out.stderr.startswith("Nothing to copy for the following run:")


def test_merge_nothing_to_copy(cli, run, proj):
    out = merged(cli, "-y")
    assert out.exit_code == 0
    assert out.stderr.splitlines()[0] == "Nothing to copy for the following run:"
    assert "guild merge --preview" in out.stderr


def test_merge_preview_shows_reasons_and_copies_nothing(cli, run, proj):
    proj.write("README.md", "new readme\n")
    before = snapshot(proj.path)
    out = merged(cli, "-p", "--replace", "-x", "guild.*")
    assert out.exit_code == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == "Merge will copy files from the following run to the current directory:"
    files = lines[lines.index("Files:") + 1 : lines.index("Skipped:")]
    assert files == ["  README.md"]
    skipped = {line.split()[0]: " ".join(line.split()[1:]) for line in lines[lines.index("Skipped:") + 1 :]}
    assert skipped == {
        ".hidden": "non-project file", "cfg/a.yml": "unchanged", "data.txt": "unchanged",
        "guild.yml": "excluded", "out/model.txt": "non-project file", "out/sub/deep.bin": "non-project file",
        "train.py": "unchanged",
    }
    assert snapshot(proj.path) == before


def test_merge_target_dir(cli, run, proj, tmp_path):
    dest = tmp_path / "elsewhere" / "new"
    out = merged(cli, "-t", str(dest), "-y")
    assert out.exit_code == 0, out.stderr
    # Source code and the dependencies from the project, at their project paths.
    assert sorted(snapshot(dest)) == ["README.md", "cfg/a.yml", "data.txt", "guild.yml", "train.py"]
    other = tmp_path / "only-source"
    assert merged(cli, "--target-dir", str(other), "-s", "-y").exit_code == 0
    assert sorted(snapshot(other)) == ["README.md", "guild.yml", "train.py"]
    nosrc = tmp_path / "no-source"
    assert merged(cli, "-t", str(nosrc), "-S", "-a", "-y").exit_code == 0
    assert sorted(snapshot(nosrc)) == [".hidden", "cfg/a.yml", "data.txt", "out/model.txt", "out/sub/deep.bin"]
    nodeps = tmp_path / "no-deps"
    assert merged(cli, "-t", str(nodeps), "-D", "-a", "-x", "out", "-y").exit_code == 0
    assert sorted(snapshot(nodeps)) == [".hidden", "README.md", "guild.yml", "train.py"]


def test_merge_dependency_changed_by_the_run_goes_back(cli, guild_home, proj):
    assert cli("run", "train", "x=9", "-y").exit_code == 0
    out = merged(cli, "-y")
    one_error(out, "would be replaced: data.txt")
    assert merged(cli, "-y", "--replace").exit_code == 0
    assert (proj.path / "data.txt").read_text() == "data\nchanged by the run\n"


def test_merge_refuses_another_project_or_no_project(cli, run, proj, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    out = merged(cli, "-y")
    one_error(out, f"run {run.id} comes from a different project")
    assert "--target-dir ." in out.stderr
    assert list(other.iterdir()) == []
    assert merged(cli, "-y", "-t", ".").exit_code == 0
    assert (other / "train.py").exists()
    monkeypatch.chdir(proj.path)
    assert cli("run", "train.py", "x=[1,2]", "-y").exit_code == 0
    out = merged(cli, "-y", "-Fo", "train.py+")
    one_error(out, "does not come from a project")


def test_merge_in_a_git_work_tree(cli, run, proj):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=proj.path, check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", "train.py", "guild.yml")
    git("commit", "-q", "-m", "start")
    proj.write("train.py", "print('committed edit')\n")
    git("commit", "-q", "-am", "edit")
    # Tracked and clean: git can give it back, so merge replaces it.
    out = merged(cli, "-y")
    assert out.exit_code == 0, out.stderr
    assert (proj.path / "train.py").read_text() == (run.path / "train.py").read_text()
    git("checkout", "-q", "train.py")
    one_error(merged(cli, "-y", "--no-replace"), "would be replaced: train.py")
    proj.write("train.py", "print('not staged')\n")
    out = merged(cli, "-y")
    one_error(out, "have unstaged changes: train.py")
    assert (proj.path / "train.py").read_text() == "print('not staged')\n"
    # Untracked and changed: refused.
    git("checkout", "-q", "train.py")
    proj.write("README.md", "untracked edit\n")
    one_error(merged(cli, "-y"), "would be replaced: README.md")


def test_merge_summary(cli, run, proj):
    out = merged(cli, "-y", "--summary-name", "runs/guild-${run_id}.json")
    assert out.exit_code == 0, out.stderr
    data = json.loads((proj.path / "runs" / f"guild-{run.id}.json").read_text())
    assert data["run"] == run.id and data["operation"] == "train" and data["flags"] == {"x": 1}
    assert data["scalars"] == {"loss": 2.0, "sys/gpu": 3.0} and data["files"] == []
    assert not (proj.path / "guild-run-summary.json").exists()
    one_error(merged(cli, "-y", "--summary-name", "../x.json"), "inside the target directory")
    one_error(merged(cli, "-y", "--no-summary", "--summary-name", "x"), "cannot both be used")
    assert merged(cli, "-y", "--no-summary").exit_code == 0


def test_merge_never_copies_through_links_out_of_the_run_or_the_project(cli, run, proj, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    os.symlink(secret, run.path / "leak.txt")
    out = merged(cli, "-a", "-p")
    assert ["leak.txt", "link", "outside", "the", "run"] in [line.split() for line in out.stderr.splitlines()]
    assert merged(cli, "-a", "-y").exit_code == 0
    assert not (proj.path / "leak.txt").exists()
    # A link in the project does not lead a copy out of it.
    (run.path / "out" / "model.txt").write_text("new model\n")
    import shutil

    shutil.rmtree(proj.path / "out")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, proj.path / "out")
    before = snapshot(proj.path)
    one_error(merged(cli, "-a", "-y", "--replace"), "out in the current directory is a link")
    assert snapshot(proj.path) == before and list(elsewhere.iterdir()) == []


def test_merge_status_filters_and_bare_S(cli, guild_home, run, proj):
    proj.write("fail.py", "import sys\nsys.exit(3)\n")
    assert cli("run", "fail.py", "-y").exit_code == 3
    # -Sc is the completed filter; -S alone is --skip-sourcecode.
    out = merged(cli, "-Sc", "-p")
    assert f"[{run.short_id}]  train" in out.stderr
    out = merged(cli, "-Sc", "-S", "-p")
    assert ["train.py", "skipped", "source", "code"] in [line.split() for line in out.stderr.splitlines()]


def test_merge_bad_input(cli, run, proj):
    before = snapshot(proj.path)
    one_error(merged(cli, "deadbeef", "-y"), "deadbeef")
    one_error(merged(cli, "--replace", "--no-replace"), "cannot both be used")
    one_error(merged(cli, "-s", "-S"), "cannot both be used")
    proj.write("afile", "x")
    one_error(merged(cli, "-t", "afile", "-y"), "is not a directory")
    assert snapshot(proj.path) == {**before, "afile": b"x"}


def test_merge_help_covers_every_option(cli):
    text = cli("merge", "--help").output
    for opt in ("--target-dir", "--sourcecode", "--all", "--skip-sourcecode", "--skip-deps", "--exclude",
                "--no-summary", "--summary-name", "--preview", "--yes", "--replace", "--no-replace", "--filter",
                "--operation", "--completed"):
        assert opt in text, opt
    assert "Copy run files to a project directory." in cli("--help").output
