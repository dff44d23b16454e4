"""Early stopping: `guild run ... --pruner NAME` over real trials of a
script that prints `step` and `loss` each epoch, serially and with
`--workers 2`; the pruners' rules on histories; bad pruner flags; a
third-party pruner (and optimizer) installed as an entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_plugins import guild_sub, make_dist

from guild_core.pruning import History, PrunerContext, pessimistic_value

# Trials 1 and 2 are good; after them, every other trial is bad. A bad
# trial's loss is 3 higher at every step.
CURVE = """\
import os, time
trial = 1
epochs = 20
bad = trial > 2 and trial % 2 == 1
for step in range(epochs):
    loss = 1.0 / (step + 1) + (3.0 if bad else 0.0)
    print("step: %d" % step)
    print("loss: %f" % loss, flush=True)
    notice = os.environ.get("GUILD_PRUNE_FILE")
    if notice and os.path.exists(notice) and not os.path.exists("checkpoint.txt"):
        with open("checkpoint.txt", "w") as f:
            f.write("saved at %d\\n" % step)
    time.sleep(0.03)
"""

TRIALS = "trial=[1,2,3,4,5,6,7,8,9,10,11,12]"
BAD = {3, 5, 7, 9, 11}


@pytest.fixture
def curve(project):
    project.write("curve.py", CURVE)
    return project


def guild(home: Path, cwd: Path, *args: str, timeout: float = 180, env=None) -> subprocess.CompletedProcess:
    full = dict(os.environ, GUILD_HOME=str(home))
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "guild_core.cli.main", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def trials_of(home: Path) -> list[dict]:
    listed = json.loads(guild(home, home, "runs", "--json").stdout)
    trials = [r for r in listed if "+" not in r["operation"]]
    for r in trials:
        r["flags"] = attrs(home, r["id"])["flags"]
    return trials


def attrs(home: Path, run_id: str) -> dict:
    import yaml

    d = home / "runs" / run_id / ".guild" / "attrs"
    return {p.name: yaml.safe_load(p.read_text()) for p in d.iterdir()}


def last_step(home: Path, run_id: str) -> int:
    out = (home / "runs" / run_id / ".guild" / "output").read_text()
    return max(int(m) for m in re.findall(r"^step: (\d+)$", out, re.M))


def check_pruned_batch(home: Path, rule: str):
    trials = trials_of(home)
    assert len(trials) == 12
    by_trial = {r["flags"]["trial"]: r for r in trials}
    pruned = {n for n, r in by_trial.items() if attrs(home, r["id"]).get("pruned")}
    # Trial 1 is the rule's first completed trial; every bad one after
    # it is stopped, every good one completes.
    assert pruned == BAD
    for n, r in by_trial.items():
        a = attrs(home, r["id"])
        if n in BAD:
            assert r["status"] == "terminated"
            assert a["pruned_rule"] == rule and a["pruned_by"] == rule
            assert a["pruned_step"] >= 2 and a["pruned_value"] > 3
            assert isinstance(a["pruned_threshold"], float) and a["pruned_threshold"] < a["pruned_value"]
            assert last_step(home, r["id"]) < 10
            assert (home / "runs" / r["id"] / ".guild" / "PRUNED").exists()
        else:
            assert r["status"] == "completed", (n, r["status"])
            assert "pruned" not in a
            assert last_step(home, r["id"]) == 19
    return by_trial


def test_median_prunes_the_bad_half(guild_home, curve):
    out = guild(guild_home, curve.path, "run", "curve.py", TRIALS, "--pruner", "median",
                "-Fp", "startup-trials=1", "-Fp", "warmup-steps=2", "-y")
    # Pruned trials are no failure: the batch completes.
    assert out.returncode == 0, out.stderr
    by_trial = check_pruned_batch(guild_home, "median")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("Pruning trial")]
    assert len(lines) == 5
    assert re.match(r"Pruning trial [0-9a-f]{8} at step 2 \(median\): best 3.33333 is worse than the median 0.333333 "
                    r"of \d+ completed trials at step 2$", lines[0]), lines[0]
    # Shown and filtered by guild runs and compare.
    info = guild(guild_home, curve.path, "runs", "info", by_trial[3]["id"][:8]).stdout
    assert "\npruned: at step 2 by median, threshold 0.333333\n" in info
    assert "pruned:" not in guild(guild_home, curve.path, "runs", "info", by_trial[2]["id"][:8]).stdout
    listed = guild(guild_home, curve.path, "runs", "-F", "pruned = yes").stdout
    assert len(listed.splitlines()) == 5 and all("terminated" in ln for ln in listed.splitlines())
    assert len(guild(guild_home, curve.path, "runs", "-F", "not pruned").stdout.splitlines()) == 8
    table = guild(guild_home, curve.path, "compare", "-t", "-cc", "=trial,.pruned,.pruned_step").stdout
    row = next(ln for ln in table.splitlines() if re.match(r"\S+\s+3\s", ln))
    assert row.split()[1:3] == ["3", "yes"] or row.split()[1:3] == ["3", "True"] or "true" in row.lower()
    batch = next(r for r in json.loads(guild(guild_home, curve.path, "runs", "--json").stdout)
                 if "+" in r["operation"])
    assert attrs(guild_home, batch["id"])["pruner"] == {
        "name": "median", "flags": {"startup-trials": 1, "warmup-steps": 2, "interval-steps": 1, "min-trials": 1},
        "notice": 0.0, "grace": 5.0,
    }
    assert by_trial[1]["status"] == "completed"


def test_median_with_two_workers(guild_home, curve):
    out = guild(guild_home, curve.path, "run", "curve.py", TRIALS, "--pruner", "median",
                "-Fp", "startup-trials=1", "-Fp", "warmup-steps=2", "--workers", "2", "-y")
    assert out.returncode == 0, out.stderr
    check_pruned_batch(guild_home, "median")


def test_asha_prunes_the_bad_half_serially_and_in_parallel(guild_home, curve, tmp_path):
    # Rungs at steps 2 and 6 (reduction factor 3); trial 1 opens each.
    out = guild(guild_home, curve.path, "run", "curve.py", TRIALS, "--pruner", "asha",
                "-Fp", "min-resource=2", "-y")
    assert out.returncode == 0, out.stderr
    check_pruned_batch(guild_home, "asha")
    other = tmp_path / "home2"
    out = guild(other, curve.path, "run", "curve.py", TRIALS, "--pruner", "asha",
                "-Fp", "min-resource=2", "--workers", "2", "-y")
    assert out.returncode == 0, out.stderr
    check_pruned_batch(other, "asha")


def test_random_and_gp_with_a_pruner(guild_home, curve):
    out = guild(guild_home, curve.path, "run", "curve.py", "trial=[1,3,5,2]", "-o", "random", "-m", "4",
                "--pruner", "median", "-Fp", "startup-trials=1", "-Fp", "warmup-steps=2", "-y")
    assert out.returncode == 0, out.stderr
    assert len(trials_of(guild_home)) == 4
    out = guild(guild_home, curve.path, "run", "curve.py", "trial=[1:12]", "-o", "gp", "-m", "5",
                "-Fo", "random-starts=3", "--pruner", "median", "-Fp", "startup-trials=1", "-Fp",
                "warmup-steps=2", "-y", timeout=300)
    assert out.returncode == 0, out.stderr
    # A pruned trial never reads as a failure to the optimizer.
    assert "did not log" not in out.stdout


def test_a_batch_file_with_a_pruner(guild_home, curve):
    curve.write("trials.csv", "trial\n1\n3\n2\n5\n")
    out = guild(guild_home, curve.path, "run", "curve.py", "@trials.csv", "--pruner", "median",
                "-Fp", "startup-trials=1", "-Fp", "warmup-steps=2", "-y")
    assert out.returncode == 0, out.stderr
    pruned = sorted(r["flags"]["trial"] for r in trials_of(guild_home) if attrs(guild_home, r["id"]).get("pruned"))
    assert pruned == [3, 5]


def test_restart_with_needed_leaves_pruned_trials_unless_asked(guild_home, curve):
    out = guild(guild_home, curve.path, "run", "curve.py", "trial=[1,3,2]", "--pruner", "median",
                "-Fp", "startup-trials=1", "-Fp", "warmup-steps=2", "-y")
    assert out.returncode == 0, out.stderr
    runs = json.loads(guild(guild_home, curve.path, "runs", "--json").stdout)
    batch = next(r["id"] for r in runs if "+" in r["operation"])
    pruned = next(r for r in trials_of(guild_home) if r["flags"]["trial"] == 3)
    assert pruned["status"] == "terminated"
    out = guild(guild_home, curve.path, "run", "--restart", batch, "--needed", "-y")
    assert out.returncode == 0, out.stderr
    assert "Running trial" not in out.stdout
    again = next(r for r in trials_of(guild_home) if r["flags"]["trial"] == 3)
    assert again["started"] == pruned["started"]
    out = guild(guild_home, curve.path, "run", "--restart", batch, "--needed", "--rerun-pruned", "-y")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Running trial") == 1
    again = next(r for r in trials_of(guild_home) if r["flags"]["trial"] == 3)
    assert again["started"] != pruned["started"]
    # The restart kept the batch's pruner: pruned again.
    assert again["status"] == "terminated" and attrs(guild_home, again["id"])["pruned"] is True


def test_notice_file_and_sigkill_after_the_grace_period(guild_home, project):
    # The script saves a checkpoint when the notice appears, then
    # ignores SIGTERM: SIGKILL ends it after the grace period.
    project.write("stubborn.py", """\
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
trial = 1
for step in range(200):
    print("step: %d" % step)
    print("loss: %f" % (trial + 1.0 / (step + 1)), flush=True)
    notice = os.environ["GUILD_PRUNE_FILE"]
    if os.path.exists(notice) and not os.path.exists("checkpoint.txt"):
        with open("checkpoint.txt", "w") as f:
            f.write(open(notice).read())
    time.sleep(0.02 if trial == 1 else 0.05)
    if trial == 1 and step == 3:
        break
""")
    out = guild(guild_home, project.path, "run", "stubborn.py", "trial=[1,5]", "--pruner", "median",
                "-Fp", "startup-trials=1", "-Fp", "warmup-steps=1", "-Fp", "notice=0.5", "-Fp", "grace=0.5", "-y")
    assert out.returncode == 0, out.stderr
    bad = next(r for r in trials_of(guild_home) if r["flags"]["trial"] == 5)
    assert bad["status"] == "terminated"
    saved = json.loads((guild_home / "runs" / bad["id"] / "checkpoint.txt").read_text())
    assert saved["rule"] == "median" and saved["step"] == 1 and saved["value"] == 5.5
    exit_status = attrs(guild_home, bad["id"])["exit_status"]
    assert exit_status == -9


@pytest.mark.parametrize("args, message", [
    (["--pruner", "nope"], "guild: unknown pruner 'nope' (available: asha, median)"),
    (["--pruner", "median", "-Fp", "nope=1"], "guild: unsupported flag 'nope' for pruner median"),
    (["--pruner", "median", "-Fp", "startup-trials=abc"], "guild: invalid value 'abc' for pruner flag 'startup-trials'"),
    (["--pruner", "median", "-Fp", "grace=-1"], "guild: invalid value '-1' for pruner flag 'grace': it cannot be negative"),
    (["--pruner", "asha", "-Fp", "min-resource=4", "-Fp", "max-resource=2"],
     "guild: pruner asha: max-resource (2) must be above min-resource (4)"),
    (["--pruner", "asha", "-Fp", "reduction-factor=1"], "guild: invalid value '1' for pruner flag 'reduction-factor': out of range (less than min 2)"),
    (["-Fp", "startup-trials=1"], "guild: invalid pruner flag startup-trials=1: no pruner specified (--pruner NAME)"),
])
def test_bad_pruner_flags_are_one_line_and_start_nothing(guild_home, curve, args, message):
    out = guild(guild_home, curve.path, "run", "curve.py", "trial=[1,2]", *args, "-y")
    assert out.returncode != 0
    assert out.stderr.splitlines()[0].startswith(message), out.stderr
    assert "Traceback" not in out.stderr
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


def test_a_pruner_on_a_single_run_is_refused(guild_home, curve):
    out = guild(guild_home, curve.path, "run", "curve.py", "--pruner", "median", "-y")
    assert out.returncode != 0
    assert out.stderr.startswith("guild: --pruner stops a batch's trials early, and this is a single run")
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())


def test_guild_yml_pruner_on_the_operation_and_its_optimizer(guild_home, curve):
    curve.write("guild.yml", """\
train:
  main: curve
  flags:
    trial: 1
  pruner:
    name: median
    startup-trials: 1
    warmup-steps: 2
search:
  main: curve
  flags:
    trial: 1
  optimizers:
    rand:
      algorithm: random
      pruner: {name: asha, min-resource: 2}
""")
    out = guild(guild_home, curve.path, "run", "train", "trial=[1,3,2]", "-y")
    assert out.returncode == 0, out.stderr
    assert "WARNING" not in out.stderr
    assert "Pruning trial" in out.stdout and "(median)" in out.stdout
    out = guild(guild_home, curve.path, "run", "search", "trial=[1,3]", "-o", "rand", "-m", "2", "-y")
    assert out.returncode == 0, out.stderr
    batch = next(r for r in json.loads(guild(guild_home, curve.path, "runs", "--json").stdout)
                 if r["operation"] == "search+random")
    assert attrs(guild_home, batch["id"])["pruner"]["name"] == "asha"


def test_a_third_party_pruner_and_what_the_optimizer_is_told(guild_home, curve, tmp_path):
    site = tmp_path / "site"
    log = tmp_path / "observed.jsonl"
    make_dist(site, "guild_test_pruner", f"""
        import json
        from guild_core.hookspecs import hookimpl
        from guild_core.pruning import Prune

        class Above:
            # Stops a trial whose loss is above `limit` at step 2 or later.
            def __init__(self, ctx):
                self.limit = ctx.flags["limit"]

            def should_prune(self, trial, trials):
                if trial.steps[-1] >= 2 and trial.values[-1] > self.limit:
                    return Prune("above", self.limit, "loss above the limit")

            def pruned_value(self, trial, trials):
                return 1000.0

        class Listed:
            # An optimizer proposing `trial` values in order, logging
            # what it is told.
            def __init__(self, ctx):
                self.left = list(ctx.space["trial"])

            def propose(self, n):
                out, self.left = self.left[:n], self.left[n:]
                return [{{"trial": t}} for t in out]

            def observe(self, flags, objective):
                with open({str(log)!r}, "a") as f:
                    f.write(json.dumps([flags["trial"], objective]) + "\\n")

        @hookimpl
        def guild_register_pruners(register):
            from guild_core.flagdefs import FlagDef
            register("above", Above, flags={{"limit": FlagDef("limit", type="float", default=2.0)}})

        @hookimpl
        def guild_register_optimizers(register):
            register("listed", Listed)
        """)
    out = guild_sub(["run", "curve.py", "trial=[1,3,2]", "-o", "listed", "-m", "3", "--pruner", "above",
                     "-Fp", "limit=2.5", "-y"], site=site, cwd=curve.path, env={"GUILD_HOME": str(guild_home)})
    assert out.returncode == 0, out.stderr
    assert re.search(r"^Pruning trial [0-9a-f]{8} at step 2 \(above\): loss above the limit$", out.stdout, re.M)
    told = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert told[0] == [1, pytest.approx(0.05)] and told[1] == [3, 1000.0] and told[2] == [2, pytest.approx(0.05)]
    pruned = next(r for r in trials_of(guild_home) if r["flags"]["trial"] == 3)
    assert attrs(guild_home, pruned["id"])["pruned_threshold"] == 2.5


# -- the rules on histories ---------------------------------------------


def h(trial_id, values, status="running", start=0, pruned=False):
    return History(trial_id, status=status, steps=list(range(start, start + len(values))),
                   values=list(values), pruned=pruned)


def median(**flags):
    from guild_pruner_median import MedianPruner

    base = {"startup-trials": 1, "warmup-steps": 0, "interval-steps": 1, "min-trials": 1}
    return MedianPruner(PrunerContext({**base, **flags}, "loss", True, 1))


def asha(**flags):
    from guild_pruner_asha import AshaPruner

    base = {"min-resource": 1, "reduction-factor": 3, "max-resource": 0}
    return AshaPruner(PrunerContext({**base, **flags}, "loss", True, 1))


def test_median_rule():
    done = {f"c{i}": h(f"c{i}", [4 - i, 3 - i, 2 - i], status="completed") for i in range(3)}
    p = median(**{"startup-trials": 3})
    # At step 1 the completed values are 3, 2, 1: the median is 2.
    worse = h("t", [9, 2.5])
    assert p.should_prune(worse, {**done, "t": worse}).threshold == 2
    better = h("t", [9, 1.5])
    assert p.should_prune(better, {**done, "t": better}) is None
    # Its best so far counts, not its last value.
    recovered = h("t", [1.0, 2.5])
    assert p.should_prune(recovered, {**done, "t": recovered}) is None
    # Too few completed trials; warm-up; intervals.
    assert median(**{"startup-trials": 4}).should_prune(worse, {**done, "t": worse}) is None
    assert median(**{"warmup-steps": 2}).should_prune(worse, {**done, "t": worse}) is None
    assert median(**{"interval-steps": 2}).should_prune(worse, {**done, "t": worse}) is None
    at2 = h("t", [9, 9, 9])
    assert median(**{"interval-steps": 2}).should_prune(at2, {**done, "t": at2}) is not None
    # Pruned and running trials are not compared with.
    others = {"p": h("p", [0, 0, 0], status="terminated", pruned=True), "r": h("r", [0, 0, 0])}
    assert median().should_prune(worse, {**others, "t": worse}) is None


def test_median_for_a_maximized_objective():
    from guild_pruner_median import MedianPruner

    p = MedianPruner(PrunerContext({"startup-trials": 1, "warmup-steps": 0, "interval-steps": 1, "min-trials": 1},
                                   "acc", False, 1))
    done = {"c": h("c", [0.5, 0.8], status="completed")}
    assert p.should_prune(h("t", [0.1, 0.2]), {**done}) is not None
    assert p.should_prune(h("t", [0.6, 0.9]), {**done}) is None


def test_asha_rungs_keep_the_best_third():
    p = asha()
    trials = {}
    # Rung 0 at step 1: the first trial opens it, a better one goes on,
    # a worse one stops while the rung has fewer than 3 values.
    for tid, vals, expect in (("a", [5, 4], None), ("b", [5, 3], None), ("c", [5, 6], "prune")):
        t = h(tid, vals)
        trials[tid] = t
        got = p.should_prune(t, trials)
        assert (got is not None) == (expect == "prune"), tid
    # Six values at rung 0: the best 2 go on.
    for tid, val in (("d", 3.5), ("e", 1), ("f", 2)):
        t = h(tid, [5, val])
        trials[tid] = t
        p.should_prune(t, trials)
    late = h("g", [5, 3.2])
    trials["g"] = late
    decision = p.should_prune(late, trials)
    assert decision is not None and decision.threshold == 2
    # Only a rung's first step is judged; past max-resource, none.
    cont = h("e", [5, 1, 100])
    assert p.should_prune(cont, {**trials, "e": cont}) is None
    capped = asha(**{"max-resource": 3})
    assert [capped.rung_step(k) for k in range(3)] == [1, 3, 9]
    big = h("z", [5, 1] + [100] * 10)
    lone = {"z": big}
    assert capped.should_prune(big, lone) is None


def test_pessimistic_value_never_beats_the_worst_completed():
    done = {"a": h("a", [3, 1], status="completed"), "b": h("b", [3, 2], status="completed")}
    early = h("p", [1.5], status="terminated", pruned=True)
    assert pessimistic_value(early, {**done, "p": early}, minimize=True) == 2
    awful = h("p", [9], status="terminated", pruned=True)
    assert pessimistic_value(awful, {**done, "p": awful}, minimize=True) == 9
    assert pessimistic_value(early, {**done, "p": early}, minimize=False) == 1
    assert pessimistic_value(h("p", []), {}, minimize=True) is None


def test_guild_yml_pruner_flags_are_checked_as_command_line_ones(guild_home, curve):
    curve.write("guild.yml", "train:\n  main: curve\n  flags:\n    trial: 1\n  pruner: {name: asha, reduction-factor: 1}\n")
    out = guild(guild_home, curve.path, "run", "train", "trial=[1,2]", "-y")
    assert out.returncode != 0
    assert out.stderr.startswith("guild: invalid value 1 for pruner flag 'reduction-factor': out of range (less than min 2)")
    assert not (guild_home / "runs").exists() or not list((guild_home / "runs").iterdir())
