"""`guild run` options Guild AI 0.9 has (help/run.txt), through the real
CLI, with their bad-input cases."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from guild_core.run import Run

TRAIN = """
import os, time
lr = 0.1
epochs = 2
sleep = 0
time.sleep(sleep)
print("loss: %s" % lr)
print("gpus: %s" % os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
"""

HELP_DIR = Path(__file__).parent / "fixtures" / "guildai-help"


@pytest.fixture
def proj(project):
    project.write("train.py", TRAIN)
    return project


def runs(cli, *args) -> list[dict]:
    return json.loads(cli("runs", "--json", *args).output)


def latest(cli) -> Run:
    return Run.for_dir(runs(cli)[0]["run_dir"])


def editor(tmp_path, name: str, body: str) -> str:
    """A fake $EDITOR: a script that rewrites the file it is given."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport sys\np = sys.argv[1]\ntext = open(p).read()\n{body}\nopen(p, 'w').write(text)\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_tag_comment_and_edited_comment(cli, proj, tmp_path, monkeypatch):
    result = cli("run", "train.py", "-t", "red", "--tag", "blue", "-c", "first try", "-y")
    assert result.exit_code == 0, result.stderr
    run = latest(cli)
    assert run.get("tags") == ["red", "blue"]
    [entry] = run.get("comments")
    assert entry["body"] == "first try" and entry["user"] and isinstance(entry["time"], int)
    monkeypatch.setenv("EDITOR", editor(tmp_path, "ed.py", "text = 'typed in an editor\\n'"))
    monkeypatch.delenv("VISUAL", raising=False)
    assert cli("run", "train.py", "-ec", "-y").exit_code == 0
    assert latest(cli).get("comments")[0]["body"] == "typed in an editor"


def test_edit_flags_through_the_editor(cli, proj, tmp_path, monkeypatch):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", editor(tmp_path, "ed.py", "text = text.replace('lr: 0.1', 'lr: 0.7')"))
    result = cli("run", "train.py", "-e", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output.startswith("loss: 0.7")
    assert latest(cli).get("flags") == {"epochs": 2, "lr": 0.7, "sleep": 0}
    monkeypatch.setenv("EDITOR", editor(tmp_path, "bad.py", "text = 'lr: [unclosed'"))
    before = len(runs(cli))
    result = cli("run", "train.py", "-e", "-y")
    assert result.exit_code == 1 and result.stderr.startswith("guild: edited flags are not valid YAML")
    assert len(runs(cli)) == before


def test_unknown_editor_is_one_line_and_no_run(cli, proj, guild_home, monkeypatch):
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "no-such-editor-here")
    result = cli("run", "train.py", "-e", "-y")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: cannot start the editor") and len(result.stderr.strip().splitlines()) == 1
    assert not (guild_home / "runs").exists() or not any((guild_home / "runs").iterdir())


def test_run_dir_and_stage_dir_are_outside_the_run_store(cli, proj, tmp_path):
    target = tmp_path / "elsewhere"
    result = cli("run", "train.py", "--run-dir", str(target), "-y")
    assert result.exit_code == 0, result.stderr
    assert "results will not be visible to Guild" in result.stderr
    assert (target / "train.py").exists() and Run.for_dir(target).status == "completed"
    assert runs(cli) == []
    result = cli("run", "train.py", "-d", str(target), "-y")
    assert result.exit_code == 1 and "exists and is not empty" in result.stderr
    staged = tmp_path / "staged"
    assert cli("run", "train.py", "--stage-dir", str(staged), "-y").exit_code == 0
    assert Run.for_dir(staged).status == "staged"
    assert cli("run", "train.py", "-d", "a", "--stage-dir", "b", "-y").exit_code == 1


def test_proto_runs_a_copy_with_its_source_code(cli, proj):
    assert cli("run", "train.py", "lr=0.3", "-y").exit_code == 0
    proto = runs(cli)[0]
    proj.write("train.py", TRAIN.replace("loss: %s", "LOSS %s"))
    result = cli("run", "--proto", proto["id"][:8], "epochs=5", "-y")
    assert result.exit_code == 0, result.stderr
    # The prototype's source code, not the edited project's.
    assert result.output.startswith("loss: 0.3")
    listed = runs(cli)
    assert len(listed) == 2 and listed[0]["id"] != proto["id"]
    new = Run.for_dir(listed[0]["run_dir"])
    assert new.get("flags") == {"epochs": 5, "lr": 0.3, "sleep": 0}
    assert Run.for_dir(proto["run_dir"]).get("flags")["epochs"] == 2
    result = cli("run", "--proto", proto["id"], "--force-sourcecode", "-y")
    assert result.output.startswith("LOSS 0.3")
    result = cli("run", "--proto", "ffffffff", "-y")
    assert result.exit_code == 1 and result.stderr.startswith("guild: ")
    assert len(runs(cli)) == 3


def test_gpus_and_no_gpus(cli, proj):
    assert cli("run", "train.py", "--gpus", "0,2", "-y").output.splitlines()[1] == "gpus: 0,2"
    assert latest(cli).get("env")["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert cli("run", "train.py", "--no-gpus", "-y").output.splitlines()[1] == "gpus: "
    for bad in ("junk", "0,,1", "-1"):
        result = cli("run", "train.py", "--gpus", bad, "-y")
        assert result.exit_code == 1 and result.stderr.startswith("guild: invalid --gpus"), bad
    result = cli("run", "train.py", "--gpus", "0", "--no-gpus", "-y")
    assert result.exit_code == 1 and "cannot both be used" in result.stderr
    assert len(runs(cli)) == 2


def test_batch_label_tag_comment_and_short_options(cli, proj):
    result = cli(
        "run", "train.py", "lr=[0.1,0.2]", "-bl", "sweep", "-bt", "grid", "-bc", "two lrs",
        "-t", "trial", "--trials", "1", "--random-seed", "1", "-y",
    )
    assert result.exit_code == 0, result.stderr
    listed = runs(cli)
    batch = Run.for_dir(next(r["run_dir"] for r in listed if r["operation"] == "train.py+"))
    assert batch.get("label") == "sweep" and batch.get("tags") == ["grid"]
    assert batch.get("comments")[0]["body"] == "two lrs"
    trial = Run.for_dir(next(r["run_dir"] for r in listed if r["operation"] == "train.py"))
    assert trial.get("tags") == [] or trial.get("tags") is None or "trial" not in (batch.get("tags") or [])
    result = cli("run", "train.py", "lr=uniform[0:1]", "-o", "random", "-X", "acc", "-m", "1", "-y")
    assert result.exit_code == 0, result.stderr
    assert Run.for_dir(runs(cli)[1]["run_dir"]).get("objective") == "-acc"
    result = cli("run", "train.py", "lr=uniform[0:1]", "-o", "random", "-N", "loss", "-m", "1", "-y")
    assert Run.for_dir(runs(cli)[1]["run_dir"]).get("objective") == "loss"
    assert cli("run", "train.py", "nosuch=1", "-f", "-y").exit_code == 0


def test_force_deps_and_extra_dep(cli, proj, tmp_path):
    proj.write("guild.yml", "train:\n  main: train\n  requires:\n    - file: missing.csv\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 1 and "missing.csv" in result.stderr
    assert runs(cli) == []
    result = cli("run", "train", "--force-deps", "-y")
    assert result.exit_code == 0, result.stderr
    assert "WARNING" in result.stderr and "missing.csv" in result.stderr and "--force-deps" in result.stderr
    data = tmp_path / "data.txt"
    data.write_text("rows\n")
    result = cli("run", "train.py", "-D", str(data), "-y")
    assert result.exit_code == 0, result.stderr
    assert (latest(cli).path / "data.txt").read_text() == "rows\n"
    result = cli("run", "train.py", "-D", str(tmp_path / "nope.txt"), "-y")
    assert result.exit_code == 1 and "nope.txt" in result.stderr


def test_stop_after_ends_the_run_terminated(cli, proj):
    result = cli("run", "train.py", "sleep=30", "--stop-after", "0.01", "-y")
    assert result.exit_code != 0
    run = latest(cli)
    assert run.status == "terminated" and run.get("exit_status") < 0
    assert run.get("run_params")["stop_after"] == 0.01
    for bad in ("0", "-1"):
        result = cli("run", "train.py", "--stop-after", bad, "-y")
        assert result.exit_code == 1 and result.stderr.startswith("guild: invalid --stop-after")
    result = cli("run", "train.py", "--stop-after", "soon", "-y")
    assert result.exit_code == 2
    assert len(runs(cli)) == 1


def test_needed_skips_a_plain_run_that_exists(cli, proj):
    assert cli("run", "train.py", "lr=0.4", "--needed", "-y").exit_code == 0
    result = cli("run", "train.py", "lr=0.4", "--needed", "-y")
    assert result.exit_code == 0
    assert result.output.startswith("Skipping run because the following runs match this operation (--needed specified):")
    assert len(runs(cli)) == 1
    assert cli("run", "train.py", "lr=0.5", "--needed", "-y").exit_code == 0
    assert len(runs(cli)) == 2


def test_keep_run_and_keep_batch(cli, proj, guild_home):
    proj.write("guild.yml", "train:\n  main: train\n  delete-on-success: yes\n")
    assert cli("run", "train", "-y").exit_code == 0
    assert runs(cli) == []
    assert cli("run", "train", "--keep-run", "-y").exit_code == 0
    assert len(runs(cli)) == 1
    assert cli("run", "train.py", "lr=[1,2]", "--keep-batch", "-y").exit_code == 0
    assert any(r["operation"] == "train.py+" for r in runs(cli))


def test_remote_options_refused_in_one_line(cli, proj, guild_home, tmp_path):
    (guild_home / "config.yml").write_text(f"remotes:\n  drive:\n    type: filesystem\n    root: {tmp_path}\n")
    for args, text in (
        (("-r", "cloud"), "remote 'cloud' is not defined"),
        (("--remote", "cloud"), "remote 'cloud' is not defined"),
        (("-n",), "--no-wait needs --remote"),
        (("-r", "drive"), "remote 'drive' cannot start runs"),
    ):
        result = cli("run", "train.py", *args, "-y")
        assert result.exit_code == 1 and text in result.stderr, (args, result.stderr)
    assert runs(cli) == []


def test_declining_exits_zero_and_leaves_no_run(cli, proj):
    result = cli("run", "train.py", input="n\n")
    assert result.exit_code == 0 and runs(cli) == []


def test_print_env_help_model_help_op_and_tests(cli, proj, tmp_path):
    out = cli("run", "train.py", "lr=0.5", "--print-env", "--gpus", "1").output.splitlines()
    assert "FLAG_LR=0.5" in out and "CUDA_VISIBLE_DEVICES=1" in out
    assert any(line.startswith("PROJECT_DIR=") for line in out)
    assert runs(cli) == []
    assert cli("run", "train.py", "-h").output == cli("run", "train.py", "--help-op").output
    assert re.search(r"^  lr +\(default is 0.1\)$", cli("run", "train.py", "-h").output, re.M)
    proj.write("guild.yml", """
- model: m
  operations:
    train:
      description: Train it
      main: train
      flags-import: all
      output-scalars:
        loss: 'loss: (\\value)'
    test:
      main: train
""")
    help_model = cli("run", "m:train", "--help-model").output
    assert help_model.startswith("Usage: guild run [OPTIONS] m:OPERATION [FLAG]...")
    assert re.search(r"^  train\s+Train it$", help_model, re.M) and re.search(r"^  test$", help_model, re.M)
    flags = cli("run", "m:train", "--test-flags").output
    assert "flags-dest: globals" in flags and "  lr:\n    default: 0.1\n    type: number" in flags
    out = cli("run", "m:train", "--test-output-scalars", "-", input="loss: 1.5\nother\n").output.splitlines()
    assert out[0] == "loss: 1.5" and out[1].endswith("(loss=1.5)") and out[3].endswith("<no matches>")
    (tmp_path / "out.txt").write_text("loss: 2\n")
    assert cli("run", "m:train", "--test-output-scalars", str(tmp_path / "out.txt")).output.splitlines()[1].endswith("(loss=2)")
    result = cli("run", "m:train", "--test-output-scalars", str(tmp_path / "nope.txt"))
    assert result.exit_code == 1 and result.stderr.startswith("guild: cannot read")
    assert runs(cli) == []


def test_break_on_error_runs_the_script_under_pdb(sh, proj):
    proj.write("fail.py", "x = 1\ny = x + 1\nraise ValueError('broken')\n")
    # pdb reads its commands from stdin: 'q' quits the post-mortem.
    result = sh("run", "fail.py", "--break-on-error", "-y", input="q\n")
    assert "(Pdb)" in result.output
    assert "ValueError" in result.output + result.stderr
    result = sh("run", "fail.py", "--break", "3", "-y", input="p x\nq\n")
    assert "Breakpoint 1 at" in result.output and "(Pdb) 1" in result.output


def test_every_guild_ai_run_option_is_here(cli):
    """Each option of Guild AI 0.9's `guild run --help` (help/run.txt,
    kept under tests/fixtures) is an option of ours."""
    theirs = options_of((HELP_DIR / "run.txt").read_text())
    ours = options_of(cli("run", "--help").output)
    assert theirs, "no options read from help/run.txt"
    assert sorted(theirs - ours) == []


def options_of(help_text: str) -> set[str]:
    """The option names in a click help text's Options section."""
    section = help_text.split("Options:", 1)[-1]
    names = set()
    for line in section.splitlines():
        m = re.match(r"^  (-[^ ].*?)(?:  |$)", line)
        if not m:
            continue
        for part in m.group(1).split(","):
            name = part.strip().split(" ")[0]
            if name.startswith("-"):
                names.add(name)
    return names


def test_a_run_staged_on_another_machine_starts_with_this_python(cli, proj):
    """`guild run -r` stages a run here and the host's guild starts it:
    the Python the run names is this machine's, absent there."""
    assert cli("run", "train.py", "--stage", "-y").exit_code == 0
    run = latest(cli)
    cmd = run.get("cmd")
    assert cmd[0] == sys.executable
    run.write_attr("cmd", ["/nonexistent/bin/python3.11", *cmd[1:]])
    assert cli("run", "--start", run.id, "-y").exit_code == 0
    assert runs(cli)[0]["status"] == "completed"
