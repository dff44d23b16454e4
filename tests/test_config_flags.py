"""Flags in a config file (``flags-dest: config:FILE``, plugin
``config``): YAML, JSON and INI, nested keys as dotted names, the run's
copy rewritten with the run's values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCRIPTS = {
    "params.yml": "import yaml\nprint('got', yaml.safe_load(open('params.yml')))\n",
    "params.json": "import json\nprint('got', json.load(open('params.json')))\n",
    "params.ini": (
        "import configparser\nc = configparser.ConfigParser()\nc.optionxform = str\n"
        "c.read('params.ini')\nprint('got', {s: dict(c[s]) for s in c.sections()})\n"
    ),
}
CONFIGS = {
    "params.yml": "lr: 0.1\nmodel:\n  layers: 3\n  act: relu\ndebug: false\n",
    "params.json": '{"lr": 0.1, "model": {"layers": 3, "act": "relu"}, "debug": false}\n',
    "params.ini": "[train]\nlr = 0.1\n[model]\nlayers = 3\nact = relu\n",
}


def guild_yml(name: str) -> str:
    return (
        "train:\n  main: train\n"
        f"  flags-dest: config:{name}\n  flags-import: all\n"
        "  flags:\n    model.layers:\n      max: 10\n"
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_file_flags(cli, project, guild_home, name):
    project.write("guild.yml", guild_yml(name))
    project.write(name, CONFIGS[name])
    project.write("train.py", SCRIPTS[name])
    help_op = cli("run", "train", "--help-op").output
    assert "model.layers" in help_op and "model.act" in help_op
    result = cli("run", "train", "model.layers=4", "model.act=tanh", "-y")
    assert result.exit_code == 0, result.stderr
    out = result.output
    assert "'layers': 4" in out or "'layers': '4'" in out
    assert "'act': 'tanh'" in out
    # The project's file is as it was; the run's copy has the values.
    assert Path(name).read_text() == CONFIGS[name]
    info = json.loads(cli("runs", "info", "--json").output)
    assert info["flags"]["model.layers"] == 4 and info["flags"]["model.act"] == "tanh"
    run_copy = Path(info["run_dir"]) / name
    assert "tanh" in run_copy.read_text()


def test_out_of_range_config_flag_makes_no_run(cli, project, guild_home):
    project.write("guild.yml", guild_yml("params.yml"))
    project.write("params.yml", CONFIGS["params.yml"])
    project.write("train.py", SCRIPTS["params.yml"])
    result = cli("run", "train", "model.layers=11", "-y")
    assert result.exit_code == 1
    assert "guild: invalid value 11 for model.layers: out of range (greater than max 10)" in result.stderr
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


@pytest.mark.parametrize("name, text", [("params.yml", "lr: [1\n"), ("params.json", "{not json")])
def test_bad_config_file_is_one_line(cli, project, guild_home, name, text):
    project.write("guild.yml", guild_yml(name))
    project.write(name, text)
    project.write("train.py", SCRIPTS.get(name, "print(1)\n"))
    result = cli("run", "train", "-y")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guild: ") and "cannot read config file" in lines[0]
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


def test_missing_config_file(cli, project, guild_home):
    project.write("guild.yml", guild_yml("nope.yml"))
    project.write("train.py", "print(1)\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 1
    assert "cannot find config file 'nope.yml' for flags-dest" in result.stderr


# -- flags-dest: global:NAME (a module dict) --------------------------------

DICT_TRAIN = """
params = {"lr": 0.1, "model": {"layers": 3, "act": "relu"}, "debug": False}
print("got", params)
print("loss: %s" % (params["lr"] * params["model"]["layers"]))
"""


def test_module_dict_flags(cli, project, guild_home):
    project.write("guild.yml", "train:\n  main: train\n  flags-dest: global:params\n  flags-import: all\n")
    project.write("train.py", DICT_TRAIN)
    help_op = cli("run", "train", "--help-op").output
    assert all(name in help_op for name in ("lr", "model.layers", "model.act", "debug"))
    result = cli("run", "train", "lr=0.5", "model.layers=4", "debug=yes", "-y")
    assert result.exit_code == 0, result.stderr
    assert "got {'lr': 0.5, 'model': {'layers': 4, 'act': 'relu'}, 'debug': True}" in result.output
    info = json.loads(cli("runs", "info", "--json").output)
    assert info["flags"] == {"debug": True, "lr": 0.5, "model.act": "relu", "model.layers": 4}
    assert info["scalars"]["loss"][0] == 2.0


def test_module_dict_missing_is_a_warning_as_in_guild_ai(cli, project, guild_home):
    project.write("guild.yml", "train:\n  main: train\n  flags-dest: global:nope\n  flags-import: all\n")
    project.write("train.py", DICT_TRAIN)
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    assert "guild.yml:3: cannot import flags: train.py defines no module-level dict 'nope' for flags-dest global:nope" in result.stderr
    assert "got {'lr': 0.1," in result.output


NS_TRAIN = """
from types import SimpleNamespace
import types

params = SimpleNamespace(lr=0.1, model=types.SimpleNamespace(layers=3, act="relu"), opts={"x": 1}, debug=False)
print("got", params.lr, params.model.layers, params.model.act, params.opts, params.debug)
"""


def test_namespace_dest_sets_simple_namespace_attributes(cli, project, guild_home):
    """Guild AI's `flags-dest: namespace:NAME`: the flags are a module
    SimpleNamespace's attributes, nested ones dotted."""
    project.write("guild.yml", "train:\n  main: train\n  flags-dest: namespace:params\n  flags-import: all\n")
    project.write("train.py", NS_TRAIN)
    help_op = cli("run", "train", "--help-op").output
    assert all(name in help_op for name in ("lr", "model.layers", "model.act", "opts.x", "debug"))
    result = cli("run", "train", "lr=0.5", "model.layers=4", "opts.x=2", "debug=yes", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "got 0.5 4 relu {'x': 2} True\n"
    info = json.loads(cli("runs", "info", "--json").output)
    assert info["flags"] == {"debug": True, "lr": 0.5, "model.act": "relu", "model.layers": 4, "opts.x": 2}


def test_namespace_dest_without_a_literal_namespace(cli, project, guild_home):
    project.write("guild.yml", "train:\n  main: train\n  flags-dest: namespace:params\n  flags:\n    a.b: 1\n")
    project.write("train.py", "print(params.a.b + 1, type(params).__name__)\n")
    result = cli("run", "train", "a.b=5", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "6 SimpleNamespace\n"
    project.write("guild.yml", "train:\n  main: train\n  flags-dest: namespace:params\n  flags-import: all\n  flags:\n    a.b: 2\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "3 SimpleNamespace\n"
    assert "cannot import flags: train.py defines no module-level SimpleNamespace 'params' for flags-dest namespace:params" in result.stderr


def test_dict_dest_is_global_dest(cli, project, guild_home):
    """Guild AI's `dict:NAME` spelling of `global:NAME`."""
    project.write("guild.yml", "train:\n  main: train\n  flags-dest: dict:params\n  flags-import: all\n")
    project.write("train.py", DICT_TRAIN)
    result = cli("run", "train", "model.act=tanh", "-y")
    assert result.exit_code == 0, result.stderr
    assert "'act': 'tanh'" in result.output
