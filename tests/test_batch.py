"""Batches through the CLI: grids, sequences, failures, staging, errors."""

from __future__ import annotations

import json

import pytest

from guild_core.run import Run

ECHO = """
import argparse, sys
p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=1.0)
p.add_argument("--y", type=int, default=2)
p.add_argument("--z", default="a")
a = p.parse_args()
print(a.x, a.y, repr(a.z))
print("loss: %f" % ((a.x - 0.3) ** 2))
if a.z == "fail":
    sys.exit(3)
"""


@pytest.fixture
def echo(project):
    project.write("echo.py", ECHO)
    return project


def all_runs(cli):
    return json.loads(cli("runs", "--json").output)


def no_runs(home) -> bool:
    return not (home / "runs").exists() or not [p for p in (home / "runs").iterdir()]


def test_grid_batch_is_a_run_with_linked_trials(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=range[0.1:0.3:0.1]", "-y")
    assert result.exit_code == 0, result.stderr
    runs = all_runs(cli)
    batch = Run.for_dir(runs[-1]["run_dir"])
    assert runs[-1]["operation"] == "echo.py+"
    assert batch.status == "completed"
    trials = [r for r in runs if r["operation"] == "echo.py"]
    assert sorted(Run.for_dir(r["run_dir"]).get("flags")["x"] for r in trials) == [0.1, 0.2, 0.3]
    for r in trials:
        link = batch.path / r["id"]
        assert link.is_symlink() and link.resolve() == Run.for_dir(r["run_dir"]).path.resolve()
    assert [t["x"] for t in batch.get("trials")] == [0.1, 0.2, 0.3]
    assert batch.get("random_seed") is not None
    assert batch.batch_proto.get("flags")["x"] == "range[0.1:0.3:0.1]"


def test_batch_preview(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=[1,2]", "y=linspace[0:10:3]", input="n\n")
    assert result.output.startswith(
        "You are about to run echo.py as a batch (6 trials)\n"
        "  x: [1.0, 2.0]\n  y: [0, 5, 10]\n  z: a\nContinue? (Y/n) "
    )
    assert result.exit_code == 0  # declining is not an error, as in Guild AI
    assert no_runs(guild_home)


def test_failed_trial_marks_batch_error_and_batch_goes_on(cli, guild_home, echo):
    result = cli("run", "echo.py", "z=[fail,ok]", "-y")
    assert result.exit_code == 1
    runs = all_runs(cli)
    assert [r["status"] for r in runs] == ["completed", "error", "error"]
    assert runs[-1]["operation"] == "echo.py+"


def test_fail_on_trial_error_stops(cli, guild_home, echo):
    result = cli("run", "echo.py", "z=[fail,ok]", "--fail-on-trial-error", "-y")
    assert result.exit_code == 1
    runs = all_runs(cli)
    assert len(runs) == 2


def test_stage_trials(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=[1,2]", "--stage-trials", "-y")
    assert result.exit_code == 0, result.stderr
    statuses = [r["status"] for r in all_runs(cli) if r["operation"] == "echo.py"]
    assert statuses == ["staged", "staged"]
    trial = [r for r in all_runs(cli) if r["operation"] == "echo.py"][0]
    assert cli("run", "--start", trial["id"], "-y").exit_code == 0
    assert Run.for_dir(trial["run_dir"]).status == "completed"


def test_stage_batch(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=[1,2]", "--stage", "-y")
    batch = all_runs(cli)[0]
    assert result.output.splitlines()[0] == f"echo.py+ staged as {batch['id']}"
    assert batch["status"] == "staged"
    started = cli("run", "--start", batch["id"], "-y")
    assert started.exit_code == 0, started.stderr
    assert [r["status"] for r in all_runs(cli)] == ["completed"] * 3


@pytest.mark.parametrize(
    "flag, message",
    [
        ("x=range[1:5:0]", "guild: invalid range[1:5:0]: the step never reaches STOP"),
        ("x=uniform[1:0]", "guild: invalid uniform[1:0]: low must be less than high"),
        ("x=loguniform[0:1]", "guild: invalid loguniform[0:1]: loguniform bounds must be greater than 0"),
        ("x=nosuch[1:2]", "guild: unknown flag function 'nosuch' in nosuch[1:2]"),
    ],
)
def test_bad_flag_functions(cli, guild_home, echo, flag, message):
    result = cli("run", "echo.py", flag, "-y")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == message
    assert no_runs(guild_home)


def test_unknown_optimizer(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=[1,2]", "--optimizer", "nope", "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: unknown optimizer 'nope'")
    assert no_runs(guild_home)


def test_opt_flag_without_optimizer(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=[1,2]", "-Fo", "a=1", "-y")
    assert result.exit_code == 1
    assert result.stderr == "guild: invalid optimizer flag a=1: no optimizer specified\n"


def test_third_party_optimizer_without_touching_core(guild_home, tmp_path, project):
    """An optimizer from an installed plugin runs a batch; --help-op shows it."""
    import subprocess
    import sys

    from test_plugins import guild_sub, make_dist

    site = tmp_path / "site"
    make_dist(
        site,
        "guild_test_opt",
        """
        from guild_core.hookspecs import hookimpl
        from guild_core.flagdefs import FlagDef

        class Ladder:
            def __init__(self, ctx):
                self.ctx = ctx
                self.seen = []
                self.step = ctx.opt_flags["step"]

            def propose(self, n):
                if len(self.seen) >= self.ctx.max_trials:
                    return []
                x = len(self.seen) * self.step
                return [{"x": x}]

            def observe(self, flags, objective):
                self.seen.append((flags["x"], objective))

        @hookimpl
        def guild_register_optimizers(register):
            register("ladder", Ladder, aliases=["steps"], default_max_trials=3,
                     flags={"step": FlagDef("step", type="float", default=0.5, description="Step size")},
                     description="Climb x in fixed steps")
        """,
    )
    project.write("echo.py", ECHO)
    help_op = guild_sub(["run", "ladder", "--help-op"], site=site, cwd=project.path)
    assert "  step  Step size (default is 0.5)" in help_op.stdout, help_op.stderr
    ran = guild_sub(["run", "echo.py", "--optimizer", "steps", "-Fo", "step=0.25", "-y"], site=site, cwd=project.path)
    assert ran.returncode == 0, ran.stderr
    assert [l for l in ran.stdout.splitlines() if l.startswith("Running trial")] == [
        "Running trial: echo.py (x=0.0, y=2, z=a)",
        "Running trial: echo.py (x=0.25, y=2, z=a)",
        "Running trial: echo.py (x=0.5, y=2, z=a)",
    ]
    listed = guild_sub(["runs", "--json"], site=site, cwd=project.path)
    ops = [r["operation"] for r in json.loads(listed.stdout)]
    assert ops[-1] == "echo.py+ladder"
    bad = guild_sub(["run", "echo.py", "--optimizer", "ladder", "-Fo", "stp=1", "-y"], site=site, cwd=project.path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("guild: unsupported flag 'stp' for optimizer ladder")
    ill = guild_sub(["run", "echo.py", "--optimizer", "ladder", "-Fo", "step=big", "-y"], site=site, cwd=project.path)
    assert ill.returncode == 1
    assert ill.stderr.startswith("guild: invalid value big for step: expected a number")
    assert len(json.loads(guild_sub(["runs", "--json"], site=site, cwd=project.path).stdout)) == 4


def trial_flags(cli):
    runs = [r for r in all_runs(cli) if r["operation"] == "echo.py"]
    return sorted(
        (Run.for_dir(r["run_dir"]).get("flags")["x"], Run.for_dir(r["run_dir"]).get("flags")["y"])
        for r in runs
    )


@pytest.mark.parametrize(
    "name, text",
    [
        ("trials.csv", "x,y\n0.1,3\n\n0.2,4\n"),
        ("trials.json", '[{"x": 0.1, "y": 3}, {"x": 0.2, "y": 4}]'),
        ("trials.yml", "- x: 0.1\n  y: 3\n- x: 0.2\n  y: 4\n"),
    ],
)
def test_batch_files(cli, guild_home, echo, name, text):
    echo.write(name, text)
    result = cli("run", "echo.py", f"@{name}", "z=b", "-y")
    assert result.exit_code == 0, result.stderr
    assert trial_flags(cli) == [(0.1, 3), (0.2, 4)]
    assert all(
        Run.for_dir(r["run_dir"]).get("flags")["z"] == "b"
        for r in all_runs(cli) if r["operation"] == "echo.py"
    )
    assert all_runs(cli)[-1]["operation"] == "echo.py+"


def test_several_batch_files(cli, guild_home, echo):
    echo.write("a.csv", "x\n0.5\n")
    echo.write("b.json", '[{"x": 0.7}]')
    assert cli("run", "echo.py", "@a.csv", "@b.json", "-y").exit_code == 0
    assert trial_flags(cli) == [(0.5, 2), (0.7, 2)]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.csv", "x,y\n0.1,3\n0.2,4,5\n", "guild: bad.csv, row 3: expected 2 values, got 3"),
        ("bad.csv", 'x,y\n"0.1,3\n', "guild: bad.csv, row 2: unterminated quote"),
        ("bad.csv", "x,nope\n0.1,3\n", "guild: bad.csv, row 2: unsupported flag 'nope'"),
        ("bad.csv", "x,y\n\n0.1,zz\n", "guild: bad.csv, row 3: invalid value zz for y: expected an integer"),
        ("bad.json", '{"x": 1}', "guild: bad.json: expected a list of objects, got dict"),
        ("bad.json", '[{"x": 1}, [2]]', "guild: bad.json, row 2: expected an object, got list"),
        ("bad.yml", "- x: abc\n", "guild: bad.yml, row 1: invalid value abc for x: expected a number"),
        ("bad.txt", "x\n1\n", "guild: bad.txt: unsupported batch file extension '.txt'"),
    ],
)
def test_bad_batch_files(cli, guild_home, echo, name, text, message):
    echo.write(name, text)
    result = cli("run", "echo.py", f"@{name}", "-y")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith(message), result.stderr
    assert no_runs(guild_home)


@pytest.mark.parametrize("name", ["saved.csv", "saved.json", "saved.yaml"])
def test_save_trials_round_trip(cli, guild_home, echo, name):
    result = cli("run", "echo.py", "x=[0.1,0.2]", "y=[3,4]", "--save-trials", name)
    assert result.exit_code == 0, result.stderr
    assert result.output == f"Saving trials to {name}\n"
    assert no_runs(guild_home)
    assert cli("run", "echo.py", f"@{name}", "-y").exit_code == 0
    assert trial_flags(cli) == [(0.1, 3), (0.1, 4), (0.2, 3), (0.2, 4)]


def test_blocking_gp_leaves_grid_and_random(guild_home, project):
    from test_plugins import guild_sub

    project.write("echo.py", ECHO)
    off = {"GUILD_DISABLE_PLUGINS": "gp"}
    gp = guild_sub(["run", "echo.py", "x=uniform[0:1]", "--optimizer", "gp", "-y"], env=off, cwd=project.path)
    assert gp.returncode == 1
    assert gp.stderr.startswith("guild: unknown optimizer 'gp'")
    grid = guild_sub(["run", "echo.py", "x=[0.1,0.2]", "-y"], env=off, cwd=project.path)
    assert grid.returncode == 0, grid.stderr
    rand = guild_sub(["run", "echo.py", "x=uniform[0:1]", "-m", "2", "-y"], env=off, cwd=project.path)
    assert rand.returncode == 0, rand.stderr
    assert rand.stdout.count("Running trial") == 2


def test_gp_search_uses_objective(cli, guild_home, echo):
    result = cli("run", "echo.py", "x=uniform[0.0:1.0]", "--optimizer", "bayesian", "-m", "6", "--random-seed", "3", "-y")
    assert result.exit_code == 0, result.stderr
    runs = all_runs(cli)
    assert runs[-1]["operation"] == "echo.py+gp"
    batch = Run.for_dir(runs[-1]["run_dir"])
    assert batch.get("objective") == "loss"
    assert batch.get("flags")["random-starts"] == 3
    xs = [Run.for_dir(r["run_dir"]).get("flags")["x"] for r in runs if r["operation"] == "echo.py"]
    assert len(xs) == 6 and all(isinstance(x, float) and 0 <= x <= 1 for x in xs)


def test_trial_without_objective_is_reported(cli, guild_home, project):
    project.write("quiet.py", "x = 0.5\nprint('no scalars here')\n")
    result = cli("run", "quiet.py", "x=uniform[0.0:1.0]", "--optimizer", "gp", "-m", "4", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output.count("did not log 'loss': the optimizer ignores it") == 4


def test_search_over_string_flag_is_an_error(cli, guild_home, echo):
    result = cli("run", "echo.py", "z=uniform[0:1]", "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: cannot use uniform[0:1] for flag 'z': flag type is string")
    assert no_runs(guild_home)


def test_random_batch_restart_regenerates_same_trials(cli, guild_home, echo):
    first = cli("run", "echo.py", "x=uniform[0.0:1.0]", "-m", "3", "-y")
    assert first.exit_code == 0, first.stderr
    runs = all_runs(cli)
    assert runs[-1]["operation"] == "echo.py+random"
    ids = sorted(r["id"] for r in runs)
    again = cli("run", "--restart", runs[-1]["id"], "-y")
    assert again.exit_code == 0, again.stderr
    assert sorted(r["id"] for r in all_runs(cli)) == ids
    assert again.output.count("Running trial") == 3


def test_random_print_trials_is_seeded(cli, guild_home, echo):
    a = cli("run", "echo.py", "x=[0.0:1.0]", "-m", "4", "--random-seed", "7", "--print-trials")
    b = cli("run", "echo.py", "x=[0.0:1.0]", "-m", "4", "--random-seed", "7", "--print-trials")
    assert a.output == b.output
    assert len(a.output.splitlines()) == 5
    assert no_runs(guild_home)


def test_optimize_uses_guildfile_default(cli, guild_home, echo):
    echo.write(
        "guild.yml",
        """
        op:
          main: echo
          flags-import: all
          optimizers:
            random: {}
        """,
    )
    result = cli("run", "op", "x=uniform[0.0:1.0]", "--optimize", "-m", "2", "-y")
    assert result.exit_code == 0, result.stderr
    assert all_runs(cli)[-1]["operation"] == "op+random"


def test_gp_help_op_documents_its_flags(cli, guild_home, project):
    out = cli("run", "gp", "--help-op").output
    assert out.startswith("Usage: guild run [OPTIONS] --optimizer gp -Fo FLAG=VALUE...")
    assert "Aliases: bayesian, gaussian" in out
    for flag, default in [("random-starts", "3"), ("acq-func", "gp_hedge"), ("kappa", "1.96"), ("xi", "0.05"), ("noise", "gaussian"), ("prev-trials", "batch")]:
        assert any(line.startswith(f"  {flag} ") and f"(default is {default})" in line for line in out.splitlines()), flag
