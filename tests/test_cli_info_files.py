"""`guild runs info` sections, `guild ls`, `guild cat`, `guild open` and
`guild merge`, through the real CLI over real run directories."""

from __future__ import annotations

import json
import os
import shlex
import stat
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
    one_error(cli("runs", "info", "-r", "ec2"), "remote runs are not supported")
    out = cli("runs", "info", "--no-such-option")
    assert out.exit_code == 2 and "No such option" in out.stderr


def test_info_help_covers_every_option(cli):
    text = cli("runs", "info", "--help").output
    for opt in ("--comments", "--env", "--deps", "--manifest", "--plugins", "--all-scalars", "--json",
                "--deleted", "--archive", "--remote", "--filter", "--operation", "--started", "--running"):
        assert opt in text, opt
