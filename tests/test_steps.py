"""Pipelines (``steps:`` operations) through the CLI, over guild.yml files
written as Guild AI's docs write them."""

from __future__ import annotations

import json
import os
import time

import pytest

from guild_core.run import Run

STEP = """
import argparse, sys
p = argparse.ArgumentParser()
p.add_argument("--msg", default="hello")
p.add_argument("--touch")
p.add_argument("--exit", type=int, default=0)
a = p.parse_args()
print(a.msg)
if a.touch:
    open(a.touch, "w").write(a.msg + "\\n")
sys.exit(a.exit)
"""

GUILD_YML = """
prepare:
  main: step --touch data --msg prepared
train:
  main: step --touch model
  flags:
    msg: hi
    lr:
      default: 0.1
      arg-skip: yes
fail:
  main: step --exit 2 --msg failing
end-to-end:
  flags:
    lr: 0.2
  steps:
    - prepare
    - train msg='lr ${lr}' lr=${lr}
    - run: train
      name: again
      flags:
        msg: again
        lr: 0.3
"""


@pytest.fixture
def steps_project(project):
    project.write("step.py", STEP)
    project.write("guild.yml", GUILD_YML)
    return project


def runs(cli) -> list[dict]:
    return json.loads(cli("runs", "--json").output)


def run_of(info: dict) -> Run:
    return Run.for_dir(info["run_dir"])


def no_runs(home) -> bool:
    return not (home / "runs").exists() or not list((home / "runs").iterdir())


def links(run: Run) -> dict[str, str]:
    return {
        p.name: os.readlink(p)
        for p in sorted(run.path.iterdir())
        if p.is_symlink()
    }


def add_ops(project, text: str) -> None:
    project.write("guild.yml", GUILD_YML + text)


def test_pipeline_runs_each_step_as_a_run_and_links_it(cli, guild_home, steps_project):
    result = cli("run", "end-to-end", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output.splitlines() == ["prepared", "lr 0.2", "again"]
    assert "Running prepare: prepare\n" in result.stderr
    assert "Running train: train lr=0.2 msg='lr 0.2'\n" in result.stderr
    assert "Running again: train lr=0.3 msg=again\n" in result.stderr
    listed = runs(cli)
    assert [(r["operation"], r["status"]) for r in listed] == [
        ("train", "completed"), ("train", "completed"), ("prepare", "completed"), ("end-to-end", "completed"),
    ]
    pipe = run_of(listed[3])
    # Linked by step name, relative, as Guild AI links them.
    assert links(pipe) == {
        "prepare": f"../{listed[2]['id']}",
        "train": f"../{listed[1]['id']}",
        "again": f"../{listed[0]['id']}",
    }
    assert run_of(listed[1]).get("flags") == {"lr": 0.2, "msg": "lr 0.2"}
    assert run_of(listed[0]).get("flags") == {"lr": 0.3, "msg": "again"}
    assert (run_of(listed[1]).path / "model").read_text() == "lr 0.2\n"
    # The pipeline run: its op, flags, label, raw steps and command.
    assert pipe.opref.op == "end-to-end" and pipe.opref.type == "guildfile"
    assert pipe.get("flags") == {"lr": 0.2}
    assert pipe.get("label") == "lr=0.2"
    assert pipe.get("steps")[0] == "prepare"
    assert pipe.get("steps")[2]["name"] == "again"
    assert pipe.get("cmd")[1:] == ["-um", "guild_core.steps"]
    assert pipe.get("exit_status") == 0
    assert not (pipe.path / "step.py").exists()  # no source code of its own
    output = pipe.guild_path("output").read_text()
    assert "Running train: train" in output and "lr 0.2" in output


def test_quiet_pipeline_shows_step_output_only(cli, guild_home, steps_project):
    result = cli("run", "end-to-end", "-q", "-y")
    assert result.exit_code == 0
    assert "Running" not in result.stderr
    assert result.output.splitlines() == ["prepared", "lr 0.2", "again"]


def test_guild_runs_lists_pipeline_and_steps_as_guild_ai(cli, guild_home, steps_project):
    cli("run", "end-to-end", "lr=0.5", "-y")
    rows = cli("runs").output.splitlines()
    assert [row.split()[1] for row in rows] == ["train", "train", "prepare", "end-to-end"]
    assert rows[3].split()[-1] == "lr=0.5"
    assert rows[1].rstrip().endswith("lr=0.5 msg='lr 0.5'")


def test_step_flag_forms_and_a_null_pipeline_flag(cli, guild_home, steps_project):
    add_ops(steps_project, """
forms:
  flags:
    m: null
    rate: 0.5
  steps:
    - train msg=${m}
    - run: train
      flags:
        - msg=listed
        - lr=${rate}
    - run: train msg=ignored
      flags:
        msg:
          default: mapped
""")
    result = cli("run", "forms", "-y")
    assert result.exit_code == 0, result.stderr
    flags = [run_of(r).get("flags") for r in runs(cli)[:3]]
    assert flags == [
        {"lr": 0.1, "msg": "mapped"}, {"lr": 0.5, "msg": "listed"}, {"lr": 0.1, "msg": "hi"},
    ]


def test_pidfile_starts_the_pipeline_in_the_background(sh, guild_home, steps_project, tmp_path):
    pidfile = tmp_path / "pid"
    result = sh("run", "end-to-end", "--pidfile", str(pidfile), "-y")
    assert result.exit_code == 0, result.stderr
    assert pidfile.read_text().strip().isdigit()
    deadline = time.time() + 30
    while time.time() < deadline:
        listed = json.loads(sh("runs", "--json").output)
        if len(listed) == 4 and all(r["status"] == "completed" for r in listed):
            break
        time.sleep(0.2)
    assert [r["operation"] for r in listed] == ["train", "train", "prepare", "end-to-end"]


def test_repeated_step_links_get_a_suffix(cli, guild_home, steps_project):
    add_ops(steps_project, """
repeat:
  steps:
    - prepare
    - prepare
    - prepare
""")
    assert cli("run", "repeat", "-y").exit_code == 0
    pipe = run_of(runs(cli)[-1])
    assert sorted(links(pipe)) == ["prepare", "prepare_2", "prepare_3"]


def test_a_failing_step_fails_and_stops_the_pipeline(cli, guild_home, steps_project):
    add_ops(steps_project, """
broken:
  steps:
    - prepare
    - fail
    - train
""")
    result = cli("run", "broken", "-y")
    assert result.exit_code == 2
    listed = runs(cli)
    assert [(r["operation"], r["status"]) for r in listed] == [
        ("fail", "error"), ("prepare", "completed"), ("broken", "error"),
    ]
    pipe = run_of(listed[2])
    assert pipe.get("exit_status") == 2
    assert sorted(links(pipe)) == ["fail", "prepare"]


def test_needed_skips_steps_with_a_matching_completed_run(cli, guild_home, steps_project):
    add_ops(steps_project, """
resume:
  steps:
    - prepare --needed
    - run: train
      needed: yes
    - fail
""")
    assert cli("run", "prepare", "-y").exit_code == 0
    prepared = runs(cli)[0]["id"]
    assert cli("run", "train", "msg=other", "-y").exit_code == 0  # other flags: no match
    result = cli("run", "resume", "-y")
    assert result.exit_code == 2
    assert "Skipping because the following runs match this operation (--needed specified):" in result.stderr
    listed = runs(cli)
    assert [r["operation"] for r in listed] == ["fail", "train", "resume", "train", "prepare"]
    pipe = run_of(listed[2])
    assert links(pipe)["prepare"] == f"../{prepared}"
    assert links(pipe)["train"] == f"../{listed[1]['id']}"
    # A failed run does not match: `fail` runs again under --needed.
    result = cli("run", "resume", "--needed", "-y")
    assert result.exit_code == 2
    assert [r["operation"] for r in runs(cli)][:2] == ["fail", "resume"]


def test_pipeline_needed_option_reaches_every_step(cli, guild_home, steps_project):
    assert cli("run", "end-to-end", "-y").exit_code == 0
    assert len(runs(cli)) == 4
    result = cli("run", "end-to-end", "--needed", "-y")
    assert result.exit_code == 0, result.stderr
    listed = runs(cli)
    assert [r["operation"] for r in listed] == ["end-to-end", "train", "train", "prepare", "end-to-end"]
    assert result.stderr.count("Skipping because") == 3
    first, second = run_of(listed[4]), run_of(listed[0])
    assert links(first) == links(second)


def test_restart_reruns_the_steps(cli, guild_home, steps_project):
    assert cli("run", "end-to-end", "-y").exit_code == 0
    pipe_id = runs(cli)[-1]["id"]
    result = cli("run", "--restart", pipe_id[:8], "lr=0.4", "-y")
    assert result.exit_code == 0, result.stderr
    listed = runs(cli)
    assert len(listed) == 7
    pipe = Run.for_dir(guild_home / "runs" / pipe_id)
    assert sorted(links(pipe)) == ["again", "again_2", "prepare", "prepare_2", "train", "train_2"]
    assert pipe.get("flags") == {"lr": 0.4}
    assert Run.for_dir(pipe.path / "train_2").get("flags")["msg"] == "lr 0.4"
    # --needed on restart resumes: every step has its completed run.
    result = cli("run", "--restart", pipe_id, "lr=0.4", "--needed", "-y")
    assert result.exit_code == 0
    assert len(runs(cli)) == 7
    assert sorted(links(pipe))[-1] == "train_3"


def test_restart_of_a_failed_pipeline_with_needed_resumes_at_the_failed_step(cli, guild_home, steps_project):
    add_ops(steps_project, """
flaky:
  steps:
    - prepare
    - fail
""")
    assert cli("run", "flaky", "-y").exit_code == 2
    pipe_id = runs(cli)[-1]["id"]
    assert cli("run", "--restart", pipe_id, "--needed", "-y").exit_code == 2
    # prepare was skipped; fail (an error, so no match) ran again.
    assert [r["operation"] for r in runs(cli)] == ["fail", "flaky", "fail", "prepare"]
    pipe = Run.for_dir(guild_home / "runs" / pipe_id)
    assert sorted(links(pipe)) == ["fail", "fail_2", "prepare", "prepare_2"]
    assert links(pipe)["prepare"] == links(pipe)["prepare_2"]


def test_stage_then_start(cli, guild_home, steps_project):
    result = cli("run", "end-to-end", "--stage", "-y")
    assert result.exit_code == 0
    assert result.output.startswith("end-to-end staged as ")
    listed = runs(cli)
    assert [(r["operation"], r["status"]) for r in listed] == [("end-to-end", "staged")]
    result = cli("run", "--start", listed[0]["id"], "-y")
    assert result.exit_code == 0, result.stderr
    assert [(r["operation"], r["status"]) for r in runs(cli)][-1] == ("end-to-end", "completed")
    assert len(runs(cli)) == 4


def test_label_and_tags_reach_the_steps(cli, guild_home, steps_project):
    add_ops(steps_project, """
pair:
  steps:
    - prepare
    - run: train
      label: own ${lr}
      tags: [mine]
  flags:
    lr: 0.7
""")
    assert cli("run", "pair", "-l", "a label", "--tag", "blue", "-y").exit_code == 0
    listed = runs(cli)
    assert [(r["operation"], r["label"]) for r in listed] == [
        ("train", "own 0.7"), ("prepare", "a label"), ("pair", "a label"),
    ]
    assert run_of(listed[1]).get("tags") == ["blue"]
    assert run_of(listed[0]).get("tags") == ["mine"]
    # A label template's other names are the step's own.
    assert cli("run", "pair", "-l", "${lr} ${default_label}", "-y").exit_code == 0
    assert [r["label"] for r in runs(cli)[:3]] == ["own 0.7", "0.7", "0.7 lr=0.7"]


def test_checks_pass_and_a_failed_check_stops_the_pipeline(cli, guild_home, steps_project):
    add_ops(steps_project, """
test-ok:
  steps:
    - run: train msg='hello car'
      expect:
        - output: hello
        - file: model
          contains: car
test-fail:
  steps:
    - run: train
      checks:
        - output: bye
    - prepare
test-no-file:
  steps:
    - run: prepare
      expect:
        - file: missing.txt
""")
    result = cli("run", "test-ok", "-y")
    assert result.exit_code == 0, result.stderr
    assert "2 of 2 checks passed" in result.stderr
    result = cli("run", "test-fail", "-y")
    assert result.exit_code == 3
    assert "check failed: could not find pattern 'bye' in run " in result.stderr
    assert result.stderr.rstrip().endswith("guild: stopping because a check failed")
    listed = runs(cli)
    assert [(r["operation"], r["status"]) for r in listed[:2]] == [("train", "completed"), ("test-fail", "error")]
    result = cli("run", "test-no-file", "-y")
    assert result.exit_code == 3
    assert "no files matching missing.txt in run " in result.stderr


def test_file_check_compare_to(cli, guild_home, steps_project):
    steps_project.write("expected.txt", "prepared\n")
    add_ops(steps_project, """
same:
  steps:
    - run: prepare
      expect:
        - file: data
          compare-to: expected.txt
differs:
  steps:
    - run: train msg=other
      expect:
        - file: model
          compare-to: expected.txt
""")
    assert cli("run", "same", "-y").exit_code == 0
    result = cli("run", "differs", "-y")
    assert result.exit_code == 3
    assert "unexpected file contents - see above for details" in result.stderr
    assert "+other" in result.stderr


@pytest.mark.parametrize(
    "steps, message",
    [
        ("- nosuch", "guild: step 1 of bad (nosuch): cannot find operation nosuch"),
        ("- train nosuch=1", "guild: step 1 of bad (train): unsupported flag 'nosuch'"),
        ("- run: train\n      flags:\n        lr: abc", "guild: step 1 of bad (train): "),
        ("- [1, 2]", "guild: invalid step 1 of bad: expected an operation or a mapping with 'run', got [1, 2]"),
        ("- {}", "guild: invalid step 1 of bad: 'run' must name an operation (got None)"),
        ("- '   '", "guild: invalid step 1 of bad: 'run' must name an operation"),
        ("- null", "guild: invalid step 1 of bad: expected an operation or a mapping"),
        ("- train lr=${nope}", "guild: invalid step 1 of bad: flag 'lr': '${nope}' names no flag of the pipeline"),
        ("- train --print-trials", "guild: invalid step 1 of bad: option --print-trials is not supported in a step"),
        ("- train -o nosuch lr=[1,2]", "guild: step 1 of bad (train): "),
        ("- run: train\n      max-trials: many", "guild: invalid step 1 of bad: max-trials must be an integer (got 'many')"),
        ("- train @nosuch.csv", "guild: step 1 of bad (train): "),
        ("- train x", "guild: invalid step 1 of bad: invalid argument 'x'"),
        ("- train msg='a", "guild: invalid step 1 of bad: no closing quotation"),
        ("- run: train\n      expect:\n        - output: '('", "guild: invalid step 1 of bad: invalid regular expression '('"),
        ("- run: train\n      expect: [size]", "guild: invalid step 1 of bad: a check must be a mapping with 'output' or 'file'"),
        ("- run: train\n      remote: cloud", "guild: invalid step 1 of bad: 'remote' is not supported in a step"),
        ("- prepare\n    - bad", "guild: step 2 of bad (bad): bad runs itself"),
    ],
)
def test_bad_steps_are_one_line_and_leave_no_run(cli, guild_home, steps_project, steps, message):
    add_ops(steps_project, f"""
bad:
  steps:
    {steps}
""")
    result = cli("run", "bad", "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith(message), result.stderr
    assert no_runs(guild_home)


def test_main_wins_over_steps_with_a_warning(cli, guild_home, steps_project):
    add_ops(steps_project, """
both:
  main: step --msg main
  steps:
    - prepare
""")
    result = cli("run", "both", "-y")
    assert result.exit_code == 0
    assert result.output == "main\n"
    assert "WARNING: operation 'both' has both main and steps: steps ignored" in result.stderr
    assert len(runs(cli)) == 1


def test_unknown_step_attribute_is_a_warning(cli, guild_home, steps_project):
    add_ops(steps_project, """
odd:
  steps:
    - run: prepare
      colour: red
""")
    result = cli("run", "odd", "-y")
    assert result.exit_code == 0
    assert "WARNING: step 1 of odd: unknown attribute 'colour' (ignored)" in result.stderr


def test_pipeline_flags_are_checked(cli, guild_home, steps_project):
    result = cli("run", "end-to-end", "nosuch=1", "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: unsupported flag 'nosuch'")
    result = cli("run", "end-to-end", "lr=[1,2]", "-y")
    assert result.exit_code == 1
    assert "cannot run pipeline end-to-end as a batch" in result.stderr
    assert no_runs(guild_home)


def test_force_flags_pass_step_flags_through(cli, guild_home, steps_project):
    add_ops(steps_project, """
one:
  steps:
    - train
""")
    result = cli("run", "one", "train:msg=through", "--force-flags", "-y")
    assert result.exit_code == 0, result.stderr
    assert runs(cli)[0]["operation"] == "train"
    assert run_of(runs(cli)[0]).get("flags")["msg"] == "through"


def test_help_op_print_cmd_and_preview(cli, guild_home, steps_project):
    result = cli("run", "end-to-end", "--help-op")
    assert result.exit_code == 0
    assert "Flags:\n  lr  (default is 0.2)" in result.output
    assert "Steps:\n  1. prepare\n  2. train msg='lr ${lr}' lr=${lr}\n  3. train (as again)" in result.output
    result = cli("run", "end-to-end", "--print-cmd")
    assert result.exit_code == 0
    assert result.output.split()[1:] == ["-um", "guild_core.steps"]
    result = cli("run", "end-to-end", "lr=0.9", input="n\n")
    assert result.exit_code == 0  # declining is not an error, as in Guild AI
    assert result.output.startswith(
        "You are about to run end-to-end\n  lr: 0.9\n  Steps:\n"
        "    prepare: prepare\n    train: train lr=0.9 msg='lr 0.9'\n    again: train lr=0.3 msg=again\n"
        "Continue? (Y/n) "
    )
    assert no_runs(guild_home)


def test_a_step_may_be_a_pipeline(cli, guild_home, steps_project):
    add_ops(steps_project, """
inner:
  flags:
    m: deep
  steps:
    - train msg=${m}
outer:
  steps:
    - prepare
    - inner m=nested
""")
    result = cli("run", "outer", "-y")
    assert result.exit_code == 0, result.stderr
    listed = runs(cli)
    assert [r["operation"] for r in listed] == ["train", "inner", "prepare", "outer"]
    assert run_of(listed[0]).get("flags")["msg"] == "nested"
    assert sorted(links(run_of(listed[1]))) == ["train"]
    assert sorted(links(run_of(listed[3]))) == ["inner", "prepare"]


def test_step_dependencies_resolve_among_the_pipelines_runs(cli, guild_home, steps_project):
    add_ops(steps_project, """
evaluate:
  main: step --msg evaluated
  requires:
    - operation: prepare
      select: data
flow:
  steps:
    - prepare
    - evaluate
only-eval:
  steps:
    - evaluate
shared-eval:
  steps:
    - run: evaluate
      isolate-runs: no
""")
    assert cli("run", "flow", "-y").exit_code == 0
    listed = runs(cli)
    evaluated = run_of(listed[0])
    assert os.path.realpath(evaluated.path / "data") == os.path.realpath(run_of(listed[1]).path / "data")
    # Isolated (the default): the older prepare run is not the pipeline's.
    result = cli("run", "only-eval", "-y")
    assert result.exit_code == 1
    assert "dependency was not met" in result.stderr
    assert runs(cli)[0]["operation"] == "only-eval" and runs(cli)[0]["status"] == "error"
    result = cli("run", "shared-eval", "-y")
    assert result.exit_code == 0, result.stderr


def test_stop_terminates_the_pipeline(sh, guild_home, steps_project):
    steps_project.write("sleepy.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(30)\n")
    add_ops(steps_project, """
sleepy:
  main: sleepy
slow:
  steps:
    - prepare
    - sleepy
    - train
""")
    assert sh("run", "slow", "-b", "-y").exit_code == 0
    deadline = time.time() + 20
    while time.time() < deadline:
        rows = sh("runs").output
        if "sleepy" in rows and "running" in rows.splitlines()[0]:
            break
        time.sleep(0.2)
    pipe_id = [r["id"] for r in json.loads(sh("runs", "--json").output) if r["operation"] == "slow"][0]
    assert sh("stop", pipe_id, "-y").exit_code == 0
    deadline = time.time() + 20
    while time.time() < deadline:
        listed = json.loads(sh("runs", "--json").output)
        if all(r["status"] != "running" for r in listed):
            break
        time.sleep(0.2)
    assert [(r["operation"], r["status"]) for r in listed] == [
        ("sleepy", "terminated"), ("prepare", "completed"), ("slow", "terminated"),
    ]


def test_ctrl_c_terminates_the_pipeline(guild_home, steps_project):
    import signal
    import subprocess
    import sys

    steps_project.write("sleepy.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(30)\n")
    add_ops(steps_project, """
sleepy:
  main: sleepy
slow:
  steps:
    - sleepy
    - train
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "guild_core.cli.main", "run", "slow", "-y"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    assert proc.stdout.readline() == b"sleeping\n"
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the group
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    listed = [Run.for_dir(p) for p in sorted((guild_home / "runs").iterdir())]
    assert sorted((r.op_name, r.status) for r in listed) == [("sleepy", "terminated"), ("slow", "terminated")]


def test_link_names_replace_spaces_colons_and_slashes(cli, guild_home, steps_project):
    add_ops(steps_project, """
named:
  steps:
    - run: prepare
      name: first step/a:b
""")
    assert cli("run", "named", "-y").exit_code == 0
    assert sorted(links(run_of(runs(cli)[-1]))) == ["first-step-a-b"]


def test_restart_checks_steps_against_guild_yml_first(cli, guild_home, steps_project):
    add_ops(steps_project, """
later:
  steps:
    - prepare
""")
    assert cli("run", "later", "-y").exit_code == 0
    pipe_id = runs(cli)[-1]["id"]
    steps_project.write("guild.yml", GUILD_YML.replace("prepare:\n  main: step --touch data --msg prepared\n", "") + """
later:
  steps:
    - prepare
""")
    result = cli("run", "--restart", pipe_id, "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: step 1 of later (prepare): cannot find operation prepare")
    assert len(runs(cli)) == 2
    assert Run.for_dir(guild_home / "runs" / pipe_id).status == "completed"


def test_other_run_options_in_a_step_are_ignored_with_a_warning(cli, guild_home, steps_project):
    """As Guild AI: `--stage`, `--run-dir DIR`... in a step's run string
    are ignored, with a warning, and the step runs."""
    steps_project.write(
        "guild.yml",
        "prep:\n  main: step\nignored:\n  steps:\n    - prep --run-dir /tmp/nowhere --stage\n",
    )
    result = cli("run", "ignored", "-y")
    assert result.exit_code == 0, result.stderr
    assert "option --run-dir is ignored in a step" in result.stderr
    assert "option --stage is ignored in a step" in result.stderr
    statuses = {r["operation"]: r["status"] for r in json.loads(cli("runs", "--json").output)}
    assert statuses == {"ignored": "completed", "prep": "completed"}


BATCH_STEPS = """
grid:
  steps:
    - run: train
      flags:
        msg: [a, b]
        lr: 0.5
search:
  flags:
    trials: 3
  steps:
    - run: train lr=[0.1:0.9] -O -m ${trials} --random-seed 7
      opt-flags:
        - random-starts=2
      batch-label: tuning
      batch-tags: [sweep]
from-file:
  steps:
    - train @trials.csv
random:
  steps:
    - run: train lr=uniform[0:1]
      max-trials: 2
      optimizer: random
failing:
  steps:
    - run: train msg=[a,b] --fail-on-trial-error
      flags:
        exit: [0]
    - prepare
"""


def test_a_step_with_flag_lists_runs_a_batch_the_pipeline_links(cli, guild_home, steps_project):
    add_ops(steps_project, BATCH_STEPS)
    result = cli("run", "grid", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output.splitlines() == ["a", "b"]
    assert "Running train: train lr=0.5 msg='[a, b]'" in result.stderr
    listed = runs(cli)
    assert [(r["operation"], r["status"]) for r in listed] == [
        ("train", "completed"), ("train", "completed"), ("train+", "completed"), ("grid", "completed"),
    ]
    pipe, batch = run_of(listed[3]), run_of(listed[2])
    assert links(pipe) == {"train": f"../{listed[2]['id']}"}
    assert set(links(batch)) == {listed[0]["id"], listed[1]["id"]}
    assert [run_of(r).get("flags") for r in listed[:2]] == [{"lr": 0.5, "msg": "b"}, {"lr": 0.5, "msg": "a"}]


def test_an_optimizing_step_with_options_in_its_run_string(cli, guild_home, steps_project):
    add_ops(steps_project, BATCH_STEPS)
    result = cli("run", "search", "trials=4", "-y")
    assert result.exit_code == 0, result.stderr
    assert "Running train: train --batch-label tuning --batch-tag sweep --max-trials 4 --random-seed 7 --opt-flag random-starts=2 --optimize lr='[0.1:0.9]'" in result.stderr
    listed = runs(cli)
    ops = [r["operation"] for r in listed]
    assert ops == ["train"] * 4 + ["train+gp", "search"]
    batch = run_of(listed[4])
    assert batch.get("label") == "tuning" and batch.get("tags") == ["sweep"]
    assert batch.get("flags")["random-starts"] == 2
    assert batch.get("random_seed") == 7 and batch.get("max_trials") == 4
    assert all(0.1 <= run_of(r).get("flags")["lr"] <= 0.9 for r in listed[:4])


def test_batch_file_and_named_optimizer_steps(cli, guild_home, steps_project):
    add_ops(steps_project, BATCH_STEPS)
    steps_project.write("trials.csv", "msg,lr\nx,0.1\ny,0.2\n")
    result = cli("run", "from-file", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output.splitlines() == ["x", "y"]
    result = cli("run", "random", "-y")
    assert result.exit_code == 0, result.stderr
    listed = runs(cli)
    assert [r["operation"] for r in listed[:4]] == ["train", "train", "train+random", "random"]


def test_a_failing_trial_fails_the_batch_step_and_stops_the_pipeline(cli, guild_home, steps_project):
    steps_project.write("guild.yml", GUILD_YML.replace("fail:\n  main: step --exit 2 --msg failing\n", "") + """
failing:
  steps:
    - run: train msg=[a,b] --fail-on-trial-error
      flags:
        lr: 0.1
    - prepare
""")
    steps_project.write("step.py", STEP.replace("sys.exit(a.exit)", "sys.exit(3 if a.msg == 'a' else 0)"))
    result = cli("run", "failing", "-y")
    assert result.exit_code != 0
    listed = runs(cli)
    # The first trial failed: the second never ran, nor did prepare.
    assert [(r["operation"], r["status"]) for r in listed] == [
        ("train", "error"), ("train+", "error"), ("failing", "error"),
    ]


def test_needed_skips_a_batch_step_that_ran_the_same_batch(cli, guild_home, steps_project):
    """As Guild AI: --needed matches a batch run of the same operation,
    flag values and optimizer, and the step is skipped."""
    add_ops(steps_project, BATCH_STEPS)
    assert cli("run", "grid", "-y").exit_code == 0
    pipe_id = runs(cli)[-1]["id"]
    batch_id = runs(cli)[-2]["id"]
    result = cli("run", "--restart", pipe_id, "--needed", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == ""
    assert "Skipping because the following runs match this operation (--needed specified):" in result.stderr
    assert sorted(r["operation"] for r in runs(cli)) == ["grid", "train", "train", "train+"]
    assert links(Run.for_dir(guild_home / "runs" / pipe_id)) == {"train": f"../{batch_id}", "train_2": f"../{batch_id}"}
    # Other flag values: a new batch runs.
    steps_project.write("guild.yml", (GUILD_YML + BATCH_STEPS).replace("msg: [a, b]", "msg: [a, c]"))
    result = cli("run", "grid", "--needed", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output.splitlines() == ["a", "c"]
