"""Operation keys of guild.yml as Guild AI 0.9 uses them: tags, default,
compare, optimizers (named, default, their flags), objective, min/max
and choices as search spaces, default-max-trials, delete-on-success,
python-path, pip-freeze."""

from __future__ import annotations

import json

TRAIN = """
import random
x = 0.5
opt = "a"
loss = (x - 0.3) ** 2 + (0.0 if opt == "b" else 0.1)
print("x=%s opt=%s" % (x, opt))
print("loss: %f" % loss)
print("acc: %f" % (1 - loss))
"""

GUILD_YML = """
train:
  main: train
  description: Train it
  tags: [baseline, fast]
  compare: [=x, loss, acc]
  objective: -acc
  default-max-trials: 3
  flags:
    x:
      default: 0.5
      min: 0
      max: 1
    opt:
      default: a
      choices: [a, b]
  optimizers:
    quick:
      algorithm: random
      default: yes
    careful:
      algorithm: gp
      random-starts: 2
other:
  main: train
  default: yes
  delete-on-success: yes
"""


def runs_json(cli):
    return json.loads(cli("runs", "-a", "--json").output)


def test_tags_applied_to_the_run(cli, project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    assert cli("run", "train", "--tag", "extra", "--tag", "fast", "-y").exit_code == 0
    assert runs_json(cli)[0]["tags"] == ["baseline", "fast", "extra"]


def test_compare_columns_of_the_operation(cli, project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    assert cli("run", "train", "x=0.2", "-y").exit_code == 0
    out = cli("compare", "--csv", "-")
    header = out.output.splitlines()[0].split(",")
    assert header[-3:] == ["x", "loss", "acc"] and "opt" not in header


def test_default_operation_and_delete_on_success(cli, project, guild_home):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    result = cli("run", "-y")
    assert result.exit_code == 0, result.stderr
    assert "is configured for deletion on success" in result.stderr
    assert runs_json(cli) == []
    deleted = json.loads(cli("runs", "-d", "--json").output)
    assert [r["operation"] for r in deleted] == ["other"] and deleted[0]["status"] == "completed"


def test_optimize_uses_the_default_named_optimizer(cli, project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    result = cli("run", "train", "-O", "-y")
    assert result.exit_code == 0, result.stderr
    runs = runs_json(cli)
    batch = [r for r in runs if r["operation"].endswith("+random")]
    assert len(batch) == 1
    trials = [r for r in runs if r["operation"] == "train"]
    # default-max-trials: 3, and x and opt searched over min..max and
    # the choices, since the user set neither.
    assert len(trials) == 3
    info = [json.loads(cli("runs", "info", r["id"], "--json").output)["flags"] for r in trials]
    assert len({f["x"] for f in info}) == 3 and all(0 <= f["x"] <= 1 for f in info)
    assert {f["opt"] for f in info} <= {"a", "b"}
    # The objective is acc, maximized.
    batch_info = json.loads(cli("runs", "info", batch[0]["id"], "--json").output)
    assert batch_info["operation"] == "train+random"


def test_named_optimizer_with_its_flags(cli, project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    result = cli("run", "train", "--optimizer", "careful", "-m", "3", "--print-trials")
    # gp chooses each trial from the ones before: it cannot print them.
    assert result.exit_code == 1 and "cannot print or save trials for gp" in result.stderr
    result = cli("run", "train", "--optimizer", "careful", "-m", "3", input="n\n")
    assert "with gp optimizer (3 trials, maximize acc)" in result.output
    assert "random-starts: 2" in result.output
    assert "x: uniform[0:1]" in result.output and "opt: [a, b]" in result.output


def test_given_flags_are_not_searched(cli, project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    result = cli("run", "train", "x=0.25", "--optimizer", "quick", "-m", "2", "--print-trials")
    assert result.exit_code == 0, result.stderr
    rows = result.output.strip().splitlines()[1:]
    assert len(rows) == 2 and all(" 0.25 " in f" {row} " for row in rows)


def test_objective_forms(cli, project):
    from guild_core.batch import objective_of

    assert objective_of(None) == ("loss", True)
    assert objective_of("val_loss") == ("val_loss", True)
    assert objective_of("-acc") == ("acc", False)
    assert objective_of({"maximize": "auc"}) == ("auc", False)
    assert objective_of({"minimize": "err"}) == ("err", True)


def test_python_path_and_pip_freeze(cli, project):
    project.write(
        "guild.yml",
        "train:\n  main: train\n  python-path: lib\n  pip-freeze: yes\n",
    )
    project.write("lib/helper.py", "VALUE = 42\n")
    project.write("train.py", "import helper\nprint('value: %d' % helper.VALUE)\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    assert "value: 42" in result.output
    run_dir = runs_json(cli)[0]["run_dir"]
    from guild_core.run import Run

    freeze = Run.for_dir(run_dir).get("pip_freeze")
    assert isinstance(freeze, list) and any(line.lower().startswith("click") for line in freeze)


def test_main_with_a_source_directory(cli, project):
    """Guild AI's `main: src/pkg.main`: module pkg.main from the run's src/."""
    project.write("guild.yml", "train:\n  main: src/pkg.main\n")
    project.write("src/pkg/__init__.py", "")
    project.write("src/pkg/main.py", "from pkg import helper\nprint('value: %d' % helper.VALUE)\n")
    project.write("src/pkg/helper.py", "VALUE = 7\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    assert "value: 7" in result.output


def test_default_main_and_sourcecode_dest(cli, project):
    """As Guild AI: an operation without main runs the module named for it
    ("-" as "_"), and modules copied under sourcecode dest import."""
    project.write("guild.yml", "json-decodable:\n  flags: {}\nin-src:\n  main: show\n  sourcecode:\n    dest: src\n")
    project.write("json_decodable.py", "print('decoded')\n")
    project.write("show.py", "import helper\nprint('helper: %s' % helper.X)\n")
    project.write("helper.py", "X = 3\n")
    result = cli("run", "json-decodable", "-y")
    assert result.exit_code == 0, result.stderr
    assert "decoded" in result.output
    result = cli("run", "in-src", "-y")
    assert result.exit_code == 0, result.stderr
    assert "helper: 3" in result.output
