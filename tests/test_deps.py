"""Run dependencies and summary operations through the real CLI: each
spelling, each command-line form, the preview, links and guild-runs.json,
errors that leave no run behind, restarts, and a third-party resolver."""

from __future__ import annotations

import json
import os

import pytest

from guild_core.run import Run

GUILD_YML = r"""
train:
  main: train
  flags:
    x: 1
summary:
  main: summary
  requires:
    - operation: train
      multi-run: yes
      select: completed
pick:
  main: guild.pass
  requires:
    - operation: train
      select: model\.txt
      target-path: up
      rename: model backup
seed-run:
  main: guild.pass
  requires:
    - run: train
seed-multi:
  main: guild.pass
  requires:
    - multi-run: train
seed-expr:
  main: guild.pass
  requires:
    - multi-run: "operation = train and loss < 0.5"
      name: good
      target-path: runs
maybe:
  main: guild.pass
  requires:
    - operation: train
      multi-run: yes
      select: label contains nothing-like-this
      min: 0
"""

TRAIN = """
import sys
x = 1
print("loss: %s" % (1.0 / x))
open("model.txt", "w").write(str(x))
if x == 9:
    sys.exit(1)
"""

SUMMARY = """
import csv, json
runs = json.load(open("guild-runs.json"))
with open("summary.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "x", "loss"])
    for r in runs:
        w.writerow([r["id"], r["flags"]["x"], r["scalars"]["loss"]["last"]])
print("best_loss: %s" % min(r["scalars"]["loss"]["last"] for r in runs))
"""


@pytest.fixture
def proj(cli, guild_home, project):
    project.write("guild.yml", GUILD_YML)
    project.write("train.py", TRAIN)
    project.write("summary.py", SUMMARY)
    return project


def train(cli, *flags):
    out = cli("run", "train", *flags, "-y")
    return out


def newest(guild_home, op: str) -> Run:
    runs = [Run.for_dir(p) for p in (guild_home / "runs").iterdir()]
    runs = [r for r in runs if r.op_name == op]
    return max(runs, key=lambda r: r.get("started") or 0)


def run_ids(guild_home) -> set[str]:
    return {p.name for p in (guild_home / "runs").iterdir()} if (guild_home / "runs").exists() else set()


def info_json_plain(cli, spec) -> dict:
    return json.loads(cli("runs", "info", spec, "--json").output)


def info(cli, spec) -> dict:
    return json.loads(cli("runs", "info", spec, "--deps", "--json").output)


# -- single-run dependencies ----------------------------------------------


def test_operation_dep_links_selected_files(cli, guild_home, proj):
    train(cli, "x=1")
    train(cli, "x=2")
    out = cli("run", "pick", "-y")
    assert out.exit_code == 0, out.stderr
    pick = newest(guild_home, "pick")
    upstream = newest(guild_home, "train")
    linked = pick.path / "up" / "backup.txt"
    assert linked.is_symlink() and linked.read_text() == "2"
    assert os.readlink(linked) == "../../" + upstream.id + "/model.txt"
    assert linked.resolve() == (upstream.path / "model.txt").resolve()
    assert not (pick.path / "up" / "train.py").exists()
    deps = info(cli, pick.id)["dependencies"]
    assert deps == {
        "train": {
            "operation:train": {"uri": "operation:train", "config": upstream.id, "paths": ["up/backup.txt"]}
        }
    }
    assert "dependencies" not in info_json_plain(cli, pick.id)
    text = cli("runs", "info", pick.id, "-d").output
    assert (
        f"dependencies:\n  train:\n    operation:train:\n      config: {upstream.id}\n"
        "      paths:\n      - up/backup.txt\n      uri: operation:train\n"
    ) in text


def test_marked_run_wins_and_flag_overrides(cli, guild_home, proj):
    train(cli, "x=1")
    first = newest(guild_home, "train")
    train(cli, "x=2")
    cli("runs", "mark", first.id, "-y")
    cli("run", "pick", "-y")
    assert (newest(guild_home, "pick").path / "up" / "backup.txt").read_text() == "1"
    latest = newest(guild_home, "train")
    out = cli("run", "pick", f"train={latest.id[:8]}", input="y\n")
    assert f"The following runs are selected:\n    [{latest.short_id}]  train" in out.output
    assert (newest(guild_home, "pick").path / "up" / "backup.txt").read_text() == "2"


def test_missing_upstream_leaves_no_run(cli, guild_home, proj):
    train(cli, "x=9")  # fails: not completed
    before = run_ids(guild_home)
    out = cli("run", "pick", "-y")
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        "guild: run failed because a dependency was not met: could not resolve "
        "'operation:train': no marked or completed run of train"
    )
    assert run_ids(guild_home) == before
    out = cli("run", "pick", "train=ffffffff", "-y")
    assert out.exit_code == 1 and "no run matches 'ffffffff'" in out.stderr
    assert run_ids(guild_home) == before


def test_operation_names_are_regular_expressions_as_in_guild_ai(cli, guild_home, proj):
    """Guild AI 0.9 matches `operation:` as a regular expression over the
    whole name, or a comma-separated list of them (its filter sample:
    `operation: '.*'`); MODEL:OP matches the model too."""
    proj.write("guild.yml", GUILD_YML + """
other:
  main: train
  flags:
    x: 1
any:
  main: guild.pass
  requires:
    - operation: '.*'
      name: upstream
      select: model\\.txt
either:
  main: guild.pass
  requires:
    - operation: nosuch, oth.r
      select: model\\.txt
partial:
  main: guild.pass
  requires:
    - operation: trai
""")
    train(cli, "x=1")
    assert cli("run", "other", "x=3", "-y").exit_code == 0
    out = cli("run", "any", "-y")
    assert out.exit_code == 0, out.stderr
    assert (newest(guild_home, "any").path / "model.txt").read_text() == "3"
    assert newest(guild_home, "any").get("label") == f"upstream={newest(guild_home, 'other').id}"
    out = cli("run", "either", "-y")
    assert out.exit_code == 0, out.stderr
    assert (newest(guild_home, "either").path / "model.txt").read_text() == "3"
    # The whole name must match: 'trai' is not 'train'.
    out = cli("run", "partial", "-y")
    assert out.exit_code == 1
    assert "no marked or completed run of trai" in out.stderr


def test_seed_run_spelling(cli, guild_home, proj):
    train(cli, "x=1")
    train(cli, "x=4")
    out = cli("run", "seed-run", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "seed-run")
    # Without select: what the run made, not its source snapshot.
    assert (run.path / "model.txt").is_symlink() and (run.path / "model.txt").read_text() == "4"
    assert not (run.path / "train.py").is_symlink()
    assert info(cli, run.id)["dependencies"]["train"]["run:train"]["config"] == newest(guild_home, "train").id


# -- multi-run dependencies -------------------------------------------------


@pytest.fixture
def four(cli, guild_home, proj):
    """x=1, 2, 4 completed (x=4 labelled red) and x=9 failed."""
    train(cli, "x=1")
    train(cli, "x=2")
    train(cli, "x=4", "-l", "red")
    train(cli, "x=9")
    return {Run.for_dir(p).get("flags")["x"]: Run.for_dir(p) for p in (guild_home / "runs").iterdir()}


def test_summary_links_runs_and_writes_guild_runs_json(cli, guild_home, four):
    out = cli("run", "summary", input="y\n")
    assert out.exit_code == 0, out.stderr
    completed = [four[4], four[2], four[1]]
    preview = out.output.split("Continue?")[0]
    assert preview.startswith("You are about to run summary\n  The following runs are selected:\n")
    for run in completed:
        assert f"    [{run.short_id}]  train  " in preview
    assert four[9].short_id not in preview
    summary = newest(guild_home, "summary")
    for run in completed:
        link = summary.path / run.id
        assert link.is_symlink() and os.readlink(link) == f"../{run.id}"
        assert link.resolve() == (guild_home / "runs" / run.id).resolve()
    entries = json.loads((summary.path / "guild-runs.json").read_text())
    assert [e["id"] for e in entries] == [r.id for r in completed]
    for entry in entries:
        data = info(cli, entry["id"])
        assert entry["dir"] == f"./{entry['id']}"
        assert entry["op"] == data["operation"] == "train"
        assert entry["status"] == data["status"]
        assert entry["started"] == data["started"]
        assert entry["label"] == data["label"]
        assert entry["tags"] == data["tags"]
        assert entry["flags"] == data["flags"]
        assert entry["scalars"]["loss"]["last"] == pytest.approx(data["scalars"]["loss"][0])
        assert entry["scalars"]["loss"]["step"] == data["scalars"]["loss"][1]
    assert "best_loss: 0.25" in out.output
    csv_text = (summary.path / "summary.csv").read_text().splitlines()
    assert csv_text[0] == "id,x,loss" and len(csv_text) == 4
    recorded = info(cli, summary.id)["dependencies"]["train"]["operation:train"]["config"]
    assert recorded == [r.id for r in completed]
    assert newest(guild_home, "summary").last_scalars()["best_loss"][0] == 0.25


@pytest.mark.parametrize(
    "value, xs",
    [
        ("where label contains red and completed", [4]),
        ("where x < 3", [2, 1]),
        ("where error", [9]),
    ],
)
def test_where_on_command_line(cli, guild_home, four, value, xs):
    out = cli("run", "seed-multi", f"train={value}", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "seed-multi")
    assert sorted(p.name for p in run.path.iterdir() if p.is_symlink()) == sorted(four[x].id for x in xs)


@pytest.mark.parametrize("sep", [" ", ",", ", "])
def test_id_list_on_command_line(cli, guild_home, four, sep):
    value = sep.join([four[1].id[:8], four[9].id])
    out = cli("run", "summary", f"train={value}", "-y")
    # Exactly those runs, even the failed one.
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "summary")
    assert sorted(p.name for p in run.path.iterdir() if p.is_symlink()) == sorted([four[1].id, four[9].id])


def test_bad_selections_are_errors_naming_them(cli, guild_home, four):
    before = run_ids(guild_home)
    cases = [
        (["train=deadbeef"], "no run matches 'deadbeef'"),
        (["train=where x <"], "syntax error in filter at position"),
        (["train=where x > 100"], "no runs selected (set 'min: 0' to allow none)"),
    ]
    # An ambiguous prefix: two copies of a run whose ids share one.
    import shutil

    for suffix in ("1", "2"):
        shutil.copytree(four[1].path, guild_home / "runs" / ("abcdef" + "0" * 25 + suffix))
    before = run_ids(guild_home)
    cases.append((["train=abcdef"], "'abcdef' matches 2 runs"))
    for args, message in cases:
        out = cli("run", "seed-multi", *args, "-y")
        assert out.exit_code == 1, args
        assert out.stderr.startswith("guild: run failed because a dependency was not met: ")
        assert message in out.stderr, (args, out.stderr)
    assert run_ids(guild_home) == before


def test_nothing_selected_unless_min_0(cli, guild_home, proj):
    out = cli("run", "seed-multi", "-y")
    assert out.exit_code == 1 and "no runs selected" in out.stderr
    out = cli("run", "maybe", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "maybe")
    assert json.loads((run.path / "guild-runs.json").read_text()) == []


def test_multi_run_expression_spelling(cli, guild_home, four):
    out = cli("run", "seed-expr", "-y")
    assert out.exit_code == 0, out.stderr
    run = newest(guild_home, "seed-expr")
    # loss < 0.5: x=4 (0.25) and x=9 (0.111, failed but matches).
    linked = sorted(p.name for p in (run.path / "runs").iterdir() if p.is_symlink())
    assert linked == sorted([four[4].id, four[9].id])
    assert (run.path / "runs" / "guild-runs.json").exists()
    assert "good" in info(cli, run.id)["dependencies"]


def test_seed_multi_run_bare_name_selects_completed(cli, guild_home, four):
    cli("run", "seed-multi", "-y")
    run = newest(guild_home, "seed-multi")
    assert sorted(p.name for p in run.path.iterdir() if p.is_symlink()) == sorted(four[x].id for x in (1, 2, 4))


def test_restart_resolves_again_unless_needed(cli, guild_home, four):
    cli("run", "summary", "-y")
    summary = newest(guild_home, "summary")
    train(cli, "x=8")
    out = cli("run", "--restart", summary.id, "--needed", "-y")
    assert out.exit_code == 0, out.stderr
    assert len([p for p in summary.path.iterdir() if p.is_symlink()]) == 3
    out = cli("run", "--restart", summary.id, "-y")
    assert out.exit_code == 0, out.stderr
    links = sorted(p.name for p in summary.path.iterdir() if p.is_symlink())
    assert len(links) == 4 and newest(guild_home, "train").id in links
    entries = json.loads((summary.path / "guild-runs.json").read_text())
    assert len(entries) == 4
    assert info(cli, summary.id)["scalars"]["best_loss"][0] == 0.125


def test_restart_keeps_a_pinned_list(cli, guild_home, four):
    cli("run", "seed-multi", f"train={four[1].id}", "-y")
    run = newest(guild_home, "seed-multi")
    train(cli, "x=8")
    cli("run", "--restart", run.id, "-y")
    assert [p.name for p in run.path.iterdir() if p.is_symlink()] == [four[1].id]


def test_delete_warns_about_dependents(cli, guild_home, four):
    cli("run", "summary", "-y")
    summary = newest(guild_home, "summary")
    out = cli("runs", "delete", four[1].id, input="n\n")
    assert f"WARNING: run {four[1].short_id} is a dependency of {summary.short_id} (summary)" in out.stderr
    assert out.exit_code == 1


def test_unclaimed_dependency_key_is_an_error(cli, guild_home, proj):
    proj.write("guild.yml", GUILD_YML + "\nodd:\n  main: guild.pass\n  requires:\n    - operation: train\n      besst: 3\n")
    out = cli("run", "odd", "-y")
    assert out.exit_code == 1
    assert "unsupported dependency attribute 'besst'" in out.stderr


def test_third_party_resolver(guild_home, project, tmp_path):
    from test_plugins import guild_sub, make_dist

    site = tmp_path / "site"
    make_dist(
        site,
        "guild_oldest",
        '''
        from guild_core.hookspecs import hookimpl

        @hookimpl
        def guild_register_resolvers(register):
            def oldest(dep, value, ctx):
                runs = [r for r in ctx.runs if r.op_name == dep["oldest"] and r.status == "completed"]
                return runs[-int(dep.get("count", 1)):]
            register("oldest", oldest)
        ''',
    )
    project.write("train.py", "x = 1\nprint(x)\n")
    project.write("guild.yml", "old:\n  main: guild.pass\n  requires:\n    - oldest: train.py\n      count: 2\n")
    for x in (1, 2, 3):
        assert guild_sub(["run", "train.py", f"x={x}", "-y"], site=site, cwd=project.path).returncode == 0
    result = guild_sub(["run", "old", "-y"], site=site, cwd=project.path)
    assert result.returncode == 0, result.stderr
    runs = [Run.for_dir(p) for p in (guild_home / "runs").iterdir()]
    old = next(r for r in runs if r.op_name == "old")
    linked = {p.name for p in old.path.iterdir() if p.is_symlink()}
    xs = sorted(Run.for_dir(guild_home / "runs" / i).get("flags")["x"] for i in linked)
    assert xs == [1, 2]


def test_dependency_names(guild_home):
    from guild_core.deps import dependencies

    kinds = {"operation", "run", "multi-run", "best"}
    specs = [
        {"operation": "train"},
        {"run": "prep"},
        {"multi-run": "eval", "best": 2},
        {"multi-run": "loss < 1 and operation = x"},
        {"operation": "m:fit", "multi-run": "true"},
        {"run": "train", "name": "model"},
    ]
    deps = dependencies(specs, kinds)
    assert [d.name for d in deps] == ["train", "prep", "eval", "multi-run", "fit", "model"]
    assert [d.kind for d in deps] == ["operation", "run", "best", "multi-run", "operation", "run"]
    assert [d.multi for d in deps] == [False, False, True, True, True, False]


def test_batch_trials_get_the_dependencies(cli, guild_home, four):
    proj_yml = GUILD_YML + "\nsweep:\n  main: guild.pass\n  flags:\n    k: 1\n  requires:\n    - multi-run: train\n"
    Path = __import__("pathlib").Path
    Path("guild.yml").write_text(proj_yml)
    out = cli("run", "sweep", "k=[1,2]", "-y")
    assert out.exit_code == 0, out.stderr
    trials = [Run.for_dir(p) for p in (guild_home / "runs").iterdir() if Run.for_dir(p).op_name == "sweep"]
    assert len(trials) == 2
    for trial in trials:
        assert sorted(p.name for p in trial.path.iterdir() if p.is_symlink()) == sorted(four[x].id for x in (1, 2, 4))


def test_summary_exports_and_imports_with_its_runs(cli, guild_home, four, tmp_path):
    cli("run", "summary", "-y")
    summary = newest(guild_home, "summary")
    zpath = tmp_path / "all.zip"
    assert cli("export", str(zpath), "-y").exit_code == 0
    cli("runs", "delete", "-p", "-y")
    out = cli("import", str(zpath), "-y")
    assert out.exit_code == 0, out.stderr
    for x in (1, 2, 4):
        link = summary.path / four[x].id
        assert link.is_symlink() and (link / "model.txt").read_text() == str(x)


def test_batch_preview_lists_the_selected_runs(cli, guild_home, four):
    from pathlib import Path

    Path("guild.yml").write_text(GUILD_YML + "\nsweep:\n  main: guild.pass\n  flags:\n    k: 1\n  requires:\n    - multi-run: train\n")
    out = cli("run", "sweep", "k=[1,2]", input="n\n")
    assert out.exit_code == 0  # declining is not an error, as in Guild AI
    assert "The following runs are selected (for every trial):" in out.output
    for x in (1, 2, 4):
        assert f"[{four[x].short_id}]  train" in out.output


def test_help_op_lists_dependencies(cli, proj):
    out = cli("run", "summary", "--help-op")
    assert out.exit_code == 0
    assert out.output.endswith(
        'Dependencies (choose runs with NAME=RUN, or NAME="where EXPR" for many):\n'
        "  train  operation:train (many runs)\n"
    )
    assert "  good  multi-run:operation = train and loss < 0.5 (many runs)" in cli("run", "seed-expr", "--help-op").output
