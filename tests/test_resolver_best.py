"""The ``best`` resolver plugin through the real CLI: the best N runs of a
base selection, best first, by an objective scalar; the command-line
value narrowing the candidates; runs that cannot be ranked; and the
errors, which leave no run behind."""

from __future__ import annotations

import json
import os

import pytest

from guild_core.cli import common
from guild_core.run import Run

GUILD_YML = r"""
train:
  main: train
  flags:
    x: 1.0
    acc: 0.5
    log_loss: yes
top3:
  main: summary
  requires:
    - operation: train
      best: 3
      objective: loss
      select: completed
top-acc:
  main: guild.pass
  requires:
    - operation: train
      best: 2
      objective: -acc
compact:
  main: guild.pass
  requires:
    - operation: train
      best: 2 by loss
compact-acc:
  main: guild.pass
  requires:
    - multi-run: "operation = train and x < 4"
      best: 5 by -acc
      name: pool
      target-path: pool
seed-run:
  main: guild.pass
  requires:
    - run: train
      best: 2
      name: trained
best-model:
  main: guild.pass
  requires:
    - operation: train
      best: 1
      multi-run: no
      select: model\.txt
bad-zero:
  main: guild.pass
  requires:
    - operation: train
      best: 0
bad-x:
  main: guild.pass
  requires:
    - operation: train
      best: x
bad-objective:
  main: guild.pass
  requires:
    - operation: train
      best: 2 by loss
      objective: acc
bad-single:
  main: guild.pass
  requires:
    - operation: train
      best: 2
      multi-run: no
"""

TRAIN = """
x = 1.0
acc = 0.5
log_loss = True
if log_loss:
    print("loss: %s" % x)
print("acc: %s" % acc)
open("model.txt", "w").write(str(x))
"""

SUMMARY = """
import json
for r in json.load(open("guild-runs.json")):
    print("ranked: %s %s" % (r["flags"]["x"], r["scalars"]["loss"]["last"]))
"""


@pytest.fixture
def proj(cli, guild_home, project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    project.write("summary.py", SUMMARY)
    return project


def train(cli, *flags):
    out = cli("run", "train", *flags, "-y")
    assert out.exit_code == 0, out.stderr
    return out


def all_runs(guild_home) -> list[Run]:
    root = guild_home / "runs"
    return [Run.for_dir(p) for p in root.iterdir()] if root.exists() else []


def newest(guild_home, op: str) -> Run:
    runs = [r for r in all_runs(guild_home) if r.op_name == op]
    return max(runs, key=lambda r: r.get("started") or 0)


def run_ids(guild_home) -> set[str]:
    return {r.id for r in all_runs(guild_home)}


def linked(run: Run, sub: str = "") -> set[str]:
    return {p.name for p in (run.path / sub).iterdir() if p.is_symlink()}


def manifest(run: Run, sub: str = "") -> list[str]:
    return [e["id"] for e in json.loads((run.path / sub / "guild-runs.json").read_text())]


@pytest.fixture
def four(cli, guild_home, proj):
    """Runs by x (the loss): 3 (acc .9), 1 (acc .5), 4 (acc .8), 2 (acc .6)."""
    for x, acc in ((3, 0.9), (1, 0.5), (4, 0.8), (2, 0.6)):
        train(cli, f"x={x}", f"acc={acc}")
    return {int(r.get("flags")["x"]): r for r in all_runs(guild_home)}


def test_best_three_by_loss_linked_and_listed_best_first(cli, guild_home, four):
    out = cli("run", "top3", "-y")
    assert out.exit_code == 0, out.stderr
    top3 = newest(guild_home, "top3")
    best = [four[1], four[2], four[3]]
    assert linked(top3) == {r.id for r in best}
    for run in best:
        assert (top3.path / run.id).resolve() == (guild_home / "runs" / run.id).resolve()
    assert manifest(top3) == [r.id for r in best]
    # The summary script sees them in that order too.
    assert "ranked: 1 1.0\nranked: 2 2.0\nranked: 3 3.0\n" in out.output
    deps = json.loads(cli("runs", "info", top3.id, "-d", "--json").output)["dependencies"]
    assert deps["train"]["best:3"]["config"] == [r.id for r in best]


def test_preview_shows_the_chosen_runs_and_no_declines(cli, guild_home, four):
    before = run_ids(guild_home)
    out = cli("run", "top3", input="n\n")
    assert out.exit_code == 0  # declining is not an error, as in Guild AI
    preview = out.output.split("Continue?")[0]
    assert "The following runs are selected:" in preview
    shown = [line.split("]")[0].strip(" [") for line in preview.splitlines() if line.strip().startswith("[")]
    assert shown == [four[x].short_id for x in (1, 2, 3)]
    assert four[4].short_id not in preview
    assert run_ids(guild_home) == before


def test_minus_objective_maximizes(cli, guild_home, four):
    out = cli("run", "top-acc", "-y")
    assert out.exit_code == 0, out.stderr
    assert manifest(newest(guild_home, "top-acc")) == [four[3].id, four[4].id]


def test_compact_spelling(cli, guild_home, four):
    assert cli("run", "compact", "-y").exit_code == 0
    assert manifest(newest(guild_home, "compact")) == [four[1].id, four[2].id]
    # `best: 5 by -acc` over a multi-run expression: fewer than 5 qualify.
    out = cli("run", "compact-acc", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "compact-acc")
    assert manifest(run, "pool") == [four[3].id, four[2].id, four[1].id]
    assert linked(run, "pool") == {four[x].id for x in (1, 2, 3)}


def test_run_spelling_ranks_every_matching_run(cli, guild_home, four):
    out = cli("run", "seed-run", "-y")
    assert out.exit_code == 0, out.stderr
    assert manifest(newest(guild_home, "seed-run")) == [four[1].id, four[2].id]


def test_where_on_command_line_narrows_candidates(cli, guild_home, four):
    out = cli("run", "top3", "train=where x > 1", "-y")
    assert out.exit_code == 0, out.stderr
    assert manifest(newest(guild_home, "top3")) == [four[x].id for x in (2, 3, 4)]
    out = cli("run", "compact-acc", "pool=where x > 1", "-y")
    assert out.exit_code == 0, out.stderr
    # Within the base expression (x < 4) too.
    assert manifest(newest(guild_home, "compact-acc"), "pool") == [four[3].id, four[2].id]


def test_ids_on_command_line_are_the_candidates(cli, guild_home, four):
    value = " ".join([four[4].id[:8], four[3].id, four[2].id[:8]])
    out = cli("run", "compact", f"train={value}", "-y")
    assert out.exit_code == 0, out.stderr
    assert manifest(newest(guild_home, "compact")) == [four[2].id, four[3].id]


def test_runs_without_the_objective_are_left_out(cli, guild_home, four):
    train(cli, "x=0", "log_loss=no")
    unranked = newest(guild_home, "train")
    assert "loss" not in unranked.last_scalars()
    cli("run", "top3", "-y")
    assert manifest(newest(guild_home, "top3")) == [four[x].id for x in (1, 2, 3)]
    # It is still a candidate for an objective it logged.
    train(cli, "x=0", "acc=0.95", "log_loss=no")
    cli("run", "top-acc", "-y")
    assert manifest(newest(guild_home, "top-acc")) == [newest(guild_home, "train").id, four[3].id]


def test_none_ranked_is_an_error_naming_the_objective(cli, guild_home, proj):
    train(cli, "x=1", "log_loss=no")
    before = run_ids(guild_home)
    out = cli("run", "top3", "-y")
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        "guild: run failed because a dependency was not met: could not resolve 'best:3': "
        "none of the 1 candidate run(s) logged the scalar 'loss', so none can be ranked"
    )
    assert run_ids(guild_home) == before


def test_fewer_candidates_than_best_selects_all(cli, guild_home, proj):
    train(cli, "x=5")
    train(cli, "x=2")
    out = cli("run", "top3", "-y")
    assert out.exit_code == 0, out.stderr
    xs = [Run.for_dir(guild_home / "runs" / i).get("flags")["x"] for i in manifest(newest(guild_home, "top3"))]
    assert xs == [2.0, 5.0]


def test_no_candidates_is_an_error_and_leaves_no_run(cli, guild_home, proj):
    out = cli("run", "top3", "-y")
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        "guild: run failed because a dependency was not met: could not resolve 'best:3': "
        "no runs selected (set 'min: 0' to allow none)"
    )
    assert run_ids(guild_home) == set()
    train(cli, "x=1")
    before = run_ids(guild_home)
    out = cli("run", "top3", "train=where x > 100", "-y")
    assert out.exit_code == 1 and "no runs selected" in out.stderr
    assert run_ids(guild_home) == before


def test_single_best_run_installs_its_files(cli, guild_home, four):
    out = cli("run", "best-model", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "best-model")
    model = run.path / "model.txt"
    assert model.is_symlink() and model.resolve() == (four[1].path / "model.txt").resolve()
    assert not (run.path / "guild-runs.json").exists()


@pytest.mark.parametrize(
    "op, message",
    [
        ("bad-zero", "could not resolve 'best:0': 'best' must be a positive number of runs, got 0"),
        (
            "bad-x",
            "could not resolve 'best:x': 'best' must be a number of runs, optionally followed by "
            "'by SCALAR' (for example 'best: 5 by loss'), got 'x'",
        ),
        (
            "bad-objective",
            "could not resolve 'best:2 by loss': the objective is given twice "
            "('best: 2 by loss' and 'objective: acc'): keep one",
        ),
        ("bad-single", "'multi-run: no' installs the files of one run: use 'best: 1', not 2"),
    ],
)
def test_bad_specs_are_errors(cli, guild_home, four, op, message):
    before = run_ids(guild_home)
    out = cli("run", op, "-y")
    assert out.exit_code == 1
    assert out.stderr.startswith("guild: run failed because a dependency was not met: ")
    assert message in out.stderr, out.stderr
    assert run_ids(guild_home) == before


@pytest.mark.parametrize("objective", ["''", "'-'", "--acc", "loss min", "3", "[loss]"])
def test_bad_objective(cli, guild_home, four, proj, objective):
    proj.write(
        "guild.yml",
        GUILD_YML + f"odd:\n  main: guild.pass\n  requires:\n    - operation: train\n      best: 1\n      objective: {objective}\n",
    )
    out = cli("run", "odd", "-y")
    assert out.exit_code == 1
    assert "'objective' must name a scalar to minimize, or '-SCALAR' to maximize" in out.stderr, out.stderr


def test_restart_ranks_again(cli, guild_home, four):
    cli("run", "compact", "-y")
    run = newest(guild_home, "compact")
    train(cli, "x=0.5")
    better = newest(guild_home, "train")
    out = cli("run", "--restart", run.id, "-y")
    assert out.exit_code == 0, out.stderr
    assert manifest(run) == [better.id, four[1].id]
    assert linked(run) == {better.id, four[1].id}


def test_disabled_plugin_is_an_error_not_a_plain_multi_run(cli, guild_home, four, monkeypatch):
    monkeypatch.setenv("GUILD_DISABLE_PLUGINS", "best")
    common.plugin_manager.cache_clear()
    before = run_ids(guild_home)
    out = cli("run", "top3", "-y")
    assert out.exit_code == 1
    assert "unsupported dependency attribute 'best'" in out.stderr
    assert run_ids(guild_home) == before
