"""`guild run` end to end: run directories, flags, output, scalars, errors."""

from __future__ import annotations

import json
import os
import struct

import pytest

from guild_core.run import Run

TRAIN_YML = """
train:
  description: Train a model
  main: train
  flags:
    lr: 0.1
    epochs: 2
    opt:
      default: adam
      choices: [adam, sgd]
    name:
      type: string
      description: A name
"""

TRAIN_PY = """
import argparse, os, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--epochs", type=int)
p.add_argument("--opt")
p.add_argument("--name")
a = p.parse_args()
print("args:", sys.argv[1:])
print("env lr:", os.environ["FLAG_LR"], "run:", os.environ["RUN_ID"], os.getcwd() == os.environ["RUN_DIR"])
for e in range(a.epochs):
    print("loss: %f" % (a.lr / (e + 1)))
print("acc: 0.9")
print("oops", file=sys.stderr)
"""


@pytest.fixture
def train_project(project):
    project.write("guild.yml", TRAIN_YML)
    project.write("train.py", TRAIN_PY)
    project.write("data.bin", "\x00binary")
    return project


def only_run(home) -> Run:
    runs = [p for p in (home / "runs").iterdir()]
    assert len(runs) == 1, runs
    return Run.for_dir(runs[0])


def test_run_guildfile_op(cli, guild_home, train_project):
    result = cli("run", "train", "lr=0.5", "-y")
    assert result.exit_code == 0, result.stderr
    assert "loss: 0.500000" in result.output
    run = only_run(guild_home)
    assert run.status == "completed"
    assert run.get("flags") == {"lr": 0.5, "epochs": 2, "opt": "adam", "name": None}
    assert run.get("user_flags") == {"lr": 0.5}
    assert run.get("exit_status") == 0
    assert run.get("started") <= run.get("stopped")
    assert run.get("label") == "epochs=2 lr=0.5 opt=adam"
    assert run.opref.type == "guildfile" and run.opref.op == "train"
    # Flags reach the script as arguments and env; cwd is the run dir.
    out = (run.guild_path("output")).read_text()
    assert "args: ['--epochs', '2', '--lr', '0.5', '--opt', 'adam']" in out
    assert f"env lr: 0.5 run: {run.id} True" in out
    # Source snapshot: text files copied and listed; binaries left out.
    assert (run.path / "train.py").exists() and (run.path / "guild.yml").exists()
    assert not (run.path / "data.bin").exists()
    manifest = run.guild_path("manifest").read_text().splitlines()
    assert [line.split()[1] for line in manifest] == ["guild.yml", "train.py"]
    assert len(run.get("sourcecode_digest")) == 32


def test_output_index_and_scalars(cli, guild_home, train_project):
    cli("run", "train", "-y", "epochs=3")
    run = only_run(guild_home)
    lines = run.guild_path("output").read_bytes().splitlines()
    index = run.guild_path("output.index").read_bytes()
    assert len(index) == 9 * len(lines)
    streams = [index[i * 9 + 8] for i in range(len(lines))]
    # Two pipes carry no order between them, so check each line's stream
    # by its content, not by its position.
    for line, stream in zip(lines, streams):
        assert stream == (1 if line == b"oops" else 0), (line, stream)
    times = [struct.unpack(">Q", index[i * 9 : i * 9 + 8])[0] for i in range(len(lines))]
    assert all(t > 1_600_000_000_000 for t in times)
    scalars = run.last_scalars()
    assert scalars["loss"][1] == 2  # implied steps: 0, 1, 2
    assert scalars["loss"][0] == pytest.approx(0.033333, rel=1e-5)
    info = json.loads(cli("runs", "info", "--json").output)
    assert info["scalars"]["acc"][0] == pytest.approx(0.9)


def test_output_scalars_config(cli, guild_home, project):
    project.write(
        "guild.yml",
        """
        op:
          main: show
          output-scalars:
            - accuracy: 'acc=(\\value)'
            - 'step=(?P<step>\\step)'
        """,
    )
    project.write("show.py", "print('acc=0.75 step=3')\nprint('loss: 2')\n")
    result = cli("run", "op", "-y")
    assert result.exit_code == 0, result.stderr
    scalars = only_run(guild_home).last_scalars()
    assert scalars == {"accuracy": (0.75, 3)}


def test_unknown_flag(cli, guild_home, train_project):
    result = cli("run", "train", "nope=1", "-y")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "guild: unsupported flag 'nope'",
        "Try 'guild run train --help-op' for a list of flags or use --force-flags to skip this check.",
    ]
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["epochs=abc"], "guild: invalid value abc for epochs: expected an integer"),
        (["lr=x"], "guild: invalid value x for lr: expected a number"),
        (["opt=rmsprop"], "guild: invalid value rmsprop for opt: supported values are adam, sgd"),
        (["badarg"], "guild: invalid argument(s): badarg (expected NAME=VALUE)"),
    ],
)
def test_bad_flag_values(cli, guild_home, train_project, args, message):
    result = cli("run", "train", *args, "-y")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == message
    assert "Traceback" not in result.stderr
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


def test_required_flag(cli, guild_home, project):
    project.write("guild.yml", "op:\n  exec: 'true'\n  flags:\n    data:\n      required: yes\n")
    result = cli("run", "op", "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: missing required flag(s): data")
    assert cli("run", "op", "data=x", "-y").exit_code == 0


def test_force_flags(cli, guild_home, project):
    project.write("guild.yml", "op:\n  exec: echo ${flag_args}\n  flags:\n    x: 1\n")
    result = cli("run", "op", "extra=3", "--force-flags", "-y")
    assert result.exit_code == 0, result.stderr
    assert only_run(guild_home).get("flags") == {"x": 1, "extra": 3}
    assert result.output == "--extra 3 --x 1\n"


def test_unknown_operation(cli, guild_home, project):
    result = cli("run", "nosuch", "-y")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "guild: cannot find operation nosuch",
        "Try 'guild operations' for a list of available operations.",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  main: train\n  flags: [1\n", "guild.yml:4: "),
        ("train:\n  main: train\n  flags:\n    x:\n      type: floot\n", "guild.yml:5: invalid type 'floot' for flag 'x'"),
        ("train:\n  flags: 3\n", "guild.yml:2: flags must be a mapping"),
    ],
)
def test_malformed_guildfile(cli, guild_home, project, text, message):
    project.write("guild.yml", text)
    project.write("train.py", "print(1)\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


def test_unknown_keys_warn_and_the_rest_works(cli, guild_home, project):
    project.write(
        "guild.yml",
        "train:\n  main: train\n  flgs: {}\n  flags:\n    x:\n      default: 1\n      colour: red\n"
        "  sourcecode:\n    select: ['*.py']\n    bogus: 1\n",
    )
    project.write("train.py", "x = 1\nprint('x=%s' % x)\n")
    result = cli("run", "train", "x=2", "-y")
    assert result.exit_code == 0, result.stderr
    assert "x=2" in result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [
        "WARNING: guild.yml:3: unknown attribute 'flgs' in operation 'train' (ignored)",
        "WARNING: guild.yml:7: unknown attribute 'colour' in flag 'x' (ignored)",
        "WARNING: guild.yml:10: unknown attribute 'bogus' in sourcecode (ignored)",
    ]
    assert cli("operations").output.startswith("train")


def test_preview_and_decline(cli, guild_home, train_project):
    result = cli("run", "train", "lr=0.2", input="n\n")
    assert result.output.startswith(
        "You are about to run train\n"
        "  epochs: 2\n  lr: 0.2\n  name: null\n  opt: adam\n"
        "Continue? (Y/n) "
    )
    assert result.exit_code == 0  # declining is not an error, as in Guild AI
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())
    result = cli("run", "train", input="\n")
    assert result.exit_code == 0
    assert only_run(guild_home).status == "completed"


def test_label_and_tags(cli, guild_home, train_project):
    cli("run", "train", "-l", "best lr=${lr}", "--tag", "a", "--tag", "b", "-y")
    run = only_run(guild_home)
    assert run.get("tags") == ["a", "b"]
    assert run.get("label") == "best lr=0.1"  # -l is a template, as in Guild AI


def test_label_template_in_guildfile(cli, guild_home, project):
    project.write("guild.yml", "op:\n  exec: 'true'\n  label: lr=${lr}\n  flags:\n    lr: 0.1\n")
    cli("run", "op", "lr=0.3", "-y")
    assert only_run(guild_home).get("label") == "lr=0.3"


def test_error_exit(cli, guild_home, project):
    project.write("fail.py", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    result = cli("run", "fail.py", "-y")
    assert result.exit_code == 3
    run = only_run(guild_home)
    assert run.status == "error"
    assert run.get("exit_status") == 3
    assert not run.guild_path("LOCK").exists()


def test_print_cmd(cli, guild_home, train_project):
    result = cli("run", "train", "lr=2", "--print-cmd")
    assert result.exit_code == 0
    assert result.output.strip().endswith("-um train --epochs 2 --lr 2.0 --opt adam")
    assert not (guild_home / "runs").exists()


def test_help_op(cli, guild_home, train_project):
    result = cli("run", "train", "--help-op")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "Usage: guild run [OPTIONS] train [FLAG]...",
        "",
        "Train a model",
        "",
        "Use 'guild run --help' for a list of options.",
        "",
        "Flags:",
        "  epochs  (default is 2)",
        "  lr      (default is 0.1)",
        "  name    A name",
        "  opt     (default is adam)",
        "          Choices: adam, sgd",
    ]


def test_stage_then_start(cli, guild_home, train_project):
    result = cli("run", "train", "--stage", "-y", "epochs=1")
    run = only_run(guild_home)
    assert result.output.splitlines() == [
        f"train staged as {run.id}",
        f"To start the operation, use 'guild run --start {run.id}'",
    ]
    assert run.status == "staged"
    assert "export FLAG_EPOCHS=1" in run.guild_path("ENV").read_text()
    result = cli("run", "--start", run.id[:8], "-y")
    assert result.exit_code == 0, result.stderr
    run = Run.for_dir(run.path)
    assert run.status == "completed"
    assert not run.guild_path("STAGED").exists()


def test_restart_in_place_with_new_flags(cli, guild_home, train_project):
    cli("run", "train", "-y")
    run = only_run(guild_home)
    result = cli("run", "--restart", "1", "lr=0.7", "-y")
    assert result.exit_code == 0, result.stderr
    run = only_run(guild_home)
    assert run.get("flags")["lr"] == 0.7
    assert run.get("user_flags") == {"lr": 0.7}
    assert run.get("cmd")[-6:] == ["--epochs", "2", "--lr", "0.7", "--opt", "adam"]
    assert "loss: 0.700000" in run.guild_path("output").read_text()


def test_operations(cli, guild_home, train_project):
    result = cli("operations")
    assert result.output.splitlines() == ["train  Train a model"]


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.output.startswith("guild ")


def test_run_without_guildfile(cli, guild_home, project):
    project.write("hello.py", "print('hello')\nprint('loss: 1.5')\n")
    result = cli("run", "hello.py", "-y")
    assert result.exit_code == 0
    assert result.output == "hello\nloss: 1.5\n"
    run = only_run(guild_home)
    assert str(run.opref) == f"script:{project.path} '' '' hello.py"
    assert run.op_name == "hello.py"
    assert run.last_scalars() == {"loss": (1.5, 0)}


def test_ls_and_cat(cli, guild_home, train_project):
    cli("run", "train", "-y")
    ls = cli("ls").output.splitlines()
    assert ls[1:] == ["  guild.yml", "  train.py"]
    ls_all = cli("ls", "-a").output
    assert "  .guild/attrs/flags" in ls_all
    assert cli("cat", "-p", "train.py").output.startswith("import argparse")
    assert "loss: 0.100000" in cli("cat", "--output").output
    missing = cli("cat", "-p", "nope.txt")
    assert missing.exit_code == 1 and missing.stderr.startswith("guild: ")


def test_unknown_run(cli, guild_home):
    result = cli("runs", "info", "deadbeef")
    assert result.exit_code == 1
    assert result.stderr == (
        "guild: could not find a run matching 'deadbeef'\nTry 'guild runs list' for a list.\n"
    )


def test_runs_list_limit_hint(cli, guild_home, project):
    project.write("guild.yml", "op:\n  exec: 'true'\n  sourcecode: no\n")
    for _ in range(22):
        cli("run", "op", "-y")
    result = cli("runs")
    assert len(result.output.splitlines()) == 20
    assert "Showing the first 20 runs (22 total)" in result.stderr
    assert len(cli("runs", "-a").output.splitlines()) == 22
    assert len(cli("runs", "-m").output.splitlines()) == 22


def test_check_shows_home_and_plugins(cli, guild_home):
    out = cli("check").output
    assert f"guild_home:                {guild_home}\n" in out
    assert "argparse" in out and "globals" in out


def test_globals_flags_reach_module(cli, guild_home, project):
    project.write("g.py", "lr = 0.1\nname = 'a'\nlayers = [1, 2]\nprint(repr(lr), repr(name), repr(layers))\n")
    result = cli("run", "g.py", "lr=0.5", "name=1", "layers=[3, 4]", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "0.5 '1' [3, 4]\n"
    run = only_run(guild_home)
    assert run.get("env")["FLAGS_DEST"] == "globals"
    assert run.get("flags") == {"lr": 0.5, "name": "1", "layers": [3, 4]}


def test_argparse_flags_detected(cli, guild_home, project):
    project.write(
        "a.py",
        """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--lr", type=float, default=0.1, help="Learning rate")
        p.add_argument("--debug", action="store_true")
        a = p.parse_args()
        print(a.lr, a.debug)
        """,
    )
    assert "  lr     Learning rate (default is 0.1)" in cli("run", "a.py", "--help-op").output
    result = cli("run", "a.py", "lr=1", "debug=yes", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "1.0 True\n"


def test_script_without_flags_runs_without_launcher(cli, guild_home, project):
    project.write("plain.py", "import sys\nprint(sys.argv)\n")
    result = cli("run", "plain.py", "-y")
    assert result.output == "['plain.py']\n"
    assert only_run(guild_home).get("cmd")[1:] == ["-u", "plain.py"]
