"""`guild runs info` sections, `guild ls`, `guild cat`, `guild open` and
`guild merge`, through the real CLI over real run directories."""

from __future__ import annotations

import json
import os
import shlex

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
    one_error(cli("runs", "info", "-r", "ec2"), "remote runs are not supported")
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
    one_error(cli("ls", "-r", "ec2"), "remote runs are not supported")
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
    one_error(cli("cat", "-r", "ec2", "-O"), "remote runs are not supported")


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
