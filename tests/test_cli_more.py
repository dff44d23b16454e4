"""Guild AI 0.9 options of run commands: tag --list-all, watch -p,
runs list -c/-n/-s/-v, compare --tool."""

from __future__ import annotations

import json
import time

from conftest import wait_for


def three(cli, project):
    project.write("train.py", "x = 1\nprint('loss: %s' % (1.0 / x))\n")
    for x in (1, 2, 3):
        assert cli("run", "train.py", f"x={x}", "-y").exit_code == 0


def test_tag_list_all(cli, guild_home, project):
    three(cli, project)
    cli("tag", "-a", "red", "-a", "blue", "1", "-y")
    cli("tag", "-a", "green", "3", "-y")
    assert cli("tag", "--list-all").output == "blue\ngreen\nred\n"
    assert cli("runs", "tag", "--list-all", "3").output == "green\n"
    assert cli("tag", "--list-all", "-Fl", "nothing-like-this").output == ""
    out = cli("tag", "--list-all", "-a", "x")
    assert out.exit_code == 2 and "--list-all cannot be used with" in out.stderr


def test_watch_by_pid_or_pidfile(sh, guild_home, project, tmp_path):
    project.write("slow.py", "import time\nprint('tick', flush=True)\ntime.sleep(4)\nprint('done')\n")
    pidfile = tmp_path / "run.pid"
    assert sh("run", "slow.py", "--pidfile", str(pidfile), "-y").exit_code == 0
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="pidfile")
    result = sh("watch", "-p", str(pidfile))
    assert result.exit_code == 0, result.stderr
    assert "done" in result.output
    result = sh("watch", "--pid", str(tmp_path / "nope.pid"))
    assert result.exit_code == 1 and result.stderr.startswith("guild: invalid --pid")
    result = sh("watch", "-p", "999999999")
    assert result.exit_code == 1 and "cannot find run for pid 999999999" in result.stderr


def test_runs_list_limit_comments_verbose_simplified(cli, guild_home, project):
    three(cli, project)
    cli("comment", "-m", "a note", "-u", "ann@lab", "-y")
    rows = cli("runs", "-n", "2").output.splitlines()
    assert len(rows) == 2 and rows[0].startswith("[1:")
    simple = cli("runs", "list", "-s").output.splitlines()
    assert [line.split() for line in simple] == [
        ["[1]", "train.py", "completed", "x=3"], ["[2]", "train.py", "completed", "x=2"], ["[3]", "train.py", "completed", "x=1"],
    ]
    commented = cli("runs", "-c", "-n", "1").output.splitlines()
    assert commented[0].startswith("[1:") and commented[1].startswith("  ann@lab ")
    assert commented[2:4] == ["", "    a note"]
    verbose = cli("runs", "-v", "-n", "1").output.splitlines()
    assert verbose[1].startswith("  id: ") and any(line.startswith("  status: completed") for line in verbose)
    assert not any(line.startswith("  flags:") for line in verbose)
    assert len(json.loads(cli("runs", "--json", "-n", "1").output)) == 1
    for args in (("-c", "-v"), ("-a", "-n", "1"), ("--json", "-v")):
        out = cli("runs", *args)
        assert out.exit_code == 2 and "cannot both be used" in out.stderr


def test_compare_tool_says_what_it_lacks(cli, guild_home, project):
    three(cli, project)
    out = cli("compare", "--tool", "hiplot")
    assert out.exit_code == 1 and out.stderr == "guild: compare tool 'hiplot' is not available yet: it comes with guild view\n"
    out = cli("compare", "--tool", "excel")
    assert out.exit_code == 1 and "unsupported compare tool 'excel'" in out.stderr


MODELS = """
- model: m
  description: A model
  operations:
    train:
      description: Train it
      main: train
      flags-import: all
    _hidden:
      main: train
- model: _private
  operations:
    x:
      main: train
"""


def test_operations_filters_verbose_and_models(cli, guild_home, project):
    project.write("train.py", "lr = 0.1\nepochs = 2\n")
    project.write("guild.yml", MODELS)
    assert cli("operations").output.splitlines() == ["m:train  Train it"]
    assert cli("operations", "-a").output.splitlines() == ["_private:x", "m:_hidden", "m:train     Train it"]
    assert cli("operations", "trai", "-i").output.splitlines() == ["m:train  Train it"]
    assert cli("operations", "nothing").output == ""
    assert cli("operations", "-v", "train").output.splitlines() == [
        "m:train  Train it", "  main: train", "  flags: [epochs: (default is 2), lr: (default is 0.1)]",
    ]
    assert cli("models").output.splitlines() == ["m  A model"]
    assert cli("models", "-a").output.splitlines() == ["m         A model", "_private"]
    assert cli("models", "priv", "-a").output.splitlines() == ["_private"]
    verbose = cli("models", "-v").output.splitlines()
    assert verbose[0] == "m  A model" and verbose[1].startswith("  source: ") and verbose[1].endswith("guild.yml")
    assert verbose[2] == "  operations: train, _hidden"
