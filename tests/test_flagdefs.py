"""guild.yml flag definitions as Guild AI 0.9 reads them: min/max,
choices with aliases and flags, allow-other, arg-split, alias, path
types, null-label, and Guild AI's label formatting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GUILD_YML = """
train:
  main: train
  flags:
    lr:
      default: 0.1
      min: 0.0001
      max: 1
    epochs:
      default: 10
      type: int
      min: 1
    opt:
      default: adam
      choices:
        - value: adam
          description: Adam
        - value: sgd
          alias: plain
          flags:
            momentum: 0.9
    momentum:
      default: 0.0
    act:
      default: relu
      choices: [relu, tanh]
      allow-other: yes
    layers:
      default: 64 32
      type: int
      arg-split: yes
    tags:
      default: a,b
      arg-split: ','
    learning-rate-decay:
      alias: decay
      default: 0.5
    data:
      type: existing-path
      default: data.csv
    out:
      type: path
      default: out
    note:
      null-label: (none)
"""

TRAIN = """
import argparse
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--epochs", type=int)
p.add_argument("--opt")
p.add_argument("--momentum", type=float)
p.add_argument("--act")
p.add_argument("--layers", type=int, nargs="+")
p.add_argument("--tags", nargs="+")
p.add_argument("--learning-rate-decay", type=float)
p.add_argument("--data")
p.add_argument("--out")
p.add_argument("--note")
args = p.parse_args()
print(vars(args))
"""


@pytest.fixture
def proj(project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    project.write("data.csv", "x\n1\n")
    return project


def flags_of(cli):
    return json.loads(cli("runs", "info", "--json").output)["flags"]


@pytest.mark.parametrize(
    "assign, message",
    [
        ("lr=2", "guild: invalid value 2.0 for lr: out of range (greater than max 1)"),
        ("lr=0.00001", "guild: invalid value 1e-05 for lr: out of range (less than min 0.0001)"),
        ("epochs=0", "guild: invalid value 0 for epochs: out of range (less than min 1)"),
        ("opt=rmsprop", "guild: invalid value rmsprop for opt: supported values are adam, sgd"),
        ("layers=64 x", "guild: invalid value x for layers: expected an integer"),
        ("data=missing.csv", "does not exist"),
    ],
)
def test_bad_values_make_no_run(cli, proj, guild_home, assign, message):
    result = cli("run", "train", assign, "-y")
    assert result.exit_code == 1
    assert message in result.stderr, result.stderr
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


def test_values_reach_the_script(cli, proj, guild_home):
    result = cli("run", "train", "opt=plain", "act=gelu", "layers=8 4 2", "tags=x,y,z", "decay=0.25", "-y")
    assert result.exit_code == 0, result.stderr
    out = result.output
    # A choice alias means its value; the choice's flags follow it.
    assert "'opt': 'sgd'" in out and "'momentum': 0.9" in out
    # allow-other takes a value outside the choices.
    assert "'act': 'gelu'" in out
    # arg-split: one value, several arguments.
    assert "'layers': [8, 4, 2]" in out and "'tags': ['x', 'y', 'z']" in out
    # A flag alias sets the flag it names.
    assert "'learning_rate_decay': 0.25" in out
    # Paths are absolute, from where guild ran.
    assert f"'data': '{proj.path / 'data.csv'}'" in out and f"'out': '{proj.path / 'out'}'" in out
    flags = flags_of(cli)
    assert flags["opt"] == "sgd" and flags["momentum"] == 0.9 and flags["layers"] == "8 4 2"
    assert flags["learning-rate-decay"] == 0.25 and "decay" not in flags


def test_choice_flags_yield_to_given_values(cli, proj):
    result = cli("run", "train", "opt=sgd", "momentum=0.5", "-y")
    assert result.exit_code == 0, result.stderr
    assert flags_of(cli)["momentum"] == 0.5


def test_alias_and_name_together(cli, proj):
    result = cli("run", "train", "decay=0.1", "learning-rate-decay=0.2", "-y")
    assert result.exit_code == 1
    assert "given twice" in result.stderr


def test_labels_format_values_as_guild_ai(cli, project):
    project.write(
        "guild.yml",
        "train:\n  main: train\n  flags:\n    lr: 0.123456789\n    small: 0.00001\n    msg: hello world\n"
        "    empty: ''\n    word: 'yes'\n",
    )
    project.write("train.py", "lr = 0\nprint(lr)\n")
    assert cli("run", "train", "-y").exit_code == 0
    label = json.loads(cli("runs", "info", "--json").output)["label"]
    assert label == "empty='' lr=0.12345 msg='hello world' small=1.0e-05 word='yes'"
    assert cli("run", "train", "-l", "lr=${lr} m=${msg}", "-y").exit_code == 0
    assert json.loads(cli("runs", "info", "--json").output)["label"] == "lr=0.12345 m='hello world'"


def test_arg_skip_keeps_a_flag_off_the_command_line(cli, project):
    project.write(
        "guild.yml",
        "train:\n  main: train\n  flags:\n    seed:\n      default: 7\n      arg-skip: yes\n    x: 1\n",
    )
    project.write(
        "train.py",
        "import argparse, os, sys\np = argparse.ArgumentParser()\np.add_argument('--x', type=int)\n"
        "p.add_argument('--seed', type=int)\np.parse_args()\n"
        "print('argv=%s' % sys.argv[1:])\nprint('env=%s' % os.environ['FLAG_SEED'])\n",
    )
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    assert "argv=['--x', '1']" in result.output and "env=7" in result.output


def test_null_label_in_help(cli, proj):
    out = cli("run", "train", "--help-op").output
    assert "note" in out and "(default is (none))" in out


def test_arg_split_into_module_globals(cli, project):
    """A split value reaches a globals script as a list (as Guild AI)."""
    project.write(
        "guild.yml",
        "split:\n  main: g\n  flags:\n    x:\n      arg-split: shlex\n    y:\n      arg-split: ':'\n",
    )
    project.write("g.py", "x = [1, 2, 3]\ny = []\nprint('x=%s y=%s' % (x, y))\n")
    result = cli("run", "split", "x=1 2", "y=3:4", "-y")
    assert result.exit_code == 0, result.stderr
    assert "x=[1, 2] y=[3, 4]" in result.output
