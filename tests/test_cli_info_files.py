"""What a run records of its files, through the real CLI over real run
directories."""

from __future__ import annotations

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
