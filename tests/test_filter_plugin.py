"""The built-in ``filters`` plugin through the real CLI: ``duration``,
``started``/``stopped``, ``scalar:TAG.min|max|avg|count|first|last``
and the ``~``/``!~`` operators of ``guild runs -F EXPR``."""

from __future__ import annotations

import datetime
import json
import re
import os
import subprocess
import sys
import time

import pytest

import guild_filters
from guild_filters.ext import When
from guild_core.cli import common
from guild_core.plugins import get_plugin_manager
from guild_core.registry import Registry
from guild_core.run import Run

SCRIPT = """
vals = "0.5"
for v in vals.split(","):
    print("loss:", v)
"""

PLAIN = """
print("acc: 1.0")
"""

ALPHA_START = datetime.datetime(2024, 11, 23, 14, 5, 30)
BETA_START = datetime.datetime(2024, 11, 22, 23, 59, 59)
GAMMA_START = datetime.datetime.combine(datetime.date.today(), datetime.time(9, 15))


def micros(dt: datetime.datetime) -> int:
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def epoch(dt: datetime.datetime) -> int:
    return int(dt.timestamp())


def run_labelled(label: str) -> Run:
    runs = [Run.for_dir(p) for p in (_home() / "runs").iterdir()]
    (run,) = [r for r in runs if r.get("label") == label]
    return run


def _home():
    from guild_core import home

    return home.runs_dir().parent


@pytest.fixture
def runs3(cli, guild_home, project):
    """alpha: loss 0.9, 0.5, 0.1, 90 s on 2024-11-23 14:05:30;
    beta: loss 2, 3, 3600.5 s from 2024-11-22 23:59:59;
    gamma: no loss, 5 s from today 09:15."""
    project.write("s.py", SCRIPT)
    project.write("plain.py", PLAIN)
    for args in (
        ("s.py", "vals=0.9,0.5,0.1", "-l", "alpha"),
        ("s.py", "vals=2,3", "-l", "beta"),
        ("plain.py", "-l", "gamma-x"),
    ):
        result = cli("run", *args, "-y")
        assert result.exit_code == 0, result.stderr
    for label, start, secs in (
        ("alpha", ALPHA_START, 90),
        ("beta", BETA_START, 3600.5),
        ("gamma-x", GAMMA_START, 5),
    ):
        run = run_labelled(label)
        run.write_attr("started", micros(start))
        run.write_attr("stopped", micros(start) + int(secs * 1_000_000))
    return cli


def listed(cli, expr: str) -> set[str]:
    result = cli("runs", "--json", "-F", expr)
    assert result.exit_code == 0, result.stderr
    return {run["label"] for run in json.loads(result.output)}


ALL = {"alpha", "beta", "gamma-x"}


# -- registration -----------------------------------------------------


def test_registers_duration_started_stopped_scalar_aggregates_and_tilde_ops():
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(guild_filters, name="filters")
    values, ops = Registry(pm).filter_extensions()
    assert set(values) == {
        "duration", "started", "stopped",
        "scalar:*.min", "scalar:*.max", "scalar:*.avg",
        "scalar:*.count", "scalar:*.first", "scalar:*.last",
    }
    assert set(ops) == {"~", "!~"}
    assert {e.plugin for e in values.values()} == {"filters"}


def test_filters_plugin_loads_through_entry_point(guild_home):
    names = {name for name, plugin in get_plugin_manager().list_name_plugin() if plugin}
    assert "filters" in names


# -- duration -----------------------------------------------------------


def test_duration_of_stopped_runs(runs3):
    assert listed(runs3, "duration = 90") == {"alpha"}
    assert listed(runs3, "duration > 3600") == {"beta"}
    assert listed(runs3, "duration = 3600.5") == {"beta"}
    assert listed(runs3, "duration < 10") == {"gamma-x"}
    assert listed(runs3, "duration >= 5 and duration <= 90") == {"alpha", "gamma-x"}


def test_duration_of_running_run_counts_to_now(runs3):
    run = run_labelled("gamma-x")
    # A process counts as the run's only if it provably is: here, as for
    # a Guild AI run, its environment names the run.
    env = {**os.environ, "RUN_ID": run.id}
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        run.del_attr("stopped")
        run.del_attr("exit_status")
        run.write_attr("started", (time.time_ns() // 1000) - 2_000_000)
        run.guild_path("LOCK").write_text(str(sleeper.pid))
        assert run.status == "running"
        assert listed(runs3, "duration > 1.5 and duration < 60") == {"gamma-x"}
        assert listed(runs3, "running and duration is not undefined") == {"gamma-x"}
    finally:
        sleeper.kill()
        sleeper.wait()
        run.guild_path("LOCK").unlink()


def test_duration_undefined_when_not_started(runs3, project):
    result = runs3("run", "plain.py", "-l", "staged-one", "--stage", "-y")
    assert result.exit_code == 0, result.stderr
    assert listed(runs3, "duration is undefined") == {"staged-one"}
    assert listed(runs3, "duration >= 0") == ALL
    # Not running and no stop time recorded (a crashed supervisor).
    run_labelled("beta").del_attr("stopped")
    assert "beta" in listed(runs3, "duration is undefined")


# -- started / stopped --------------------------------------------------


def test_started_date_compares_at_day_granularity(runs3):
    assert listed(runs3, "started = 2024-11-23") == {"alpha"}
    assert listed(runs3, "started != 2024-11-23") == {"beta", "gamma-x"}
    assert listed(runs3, "started < 2024-11-23") == {"beta"}
    assert listed(runs3, "started <= 2024-11-23") == {"alpha", "beta"}
    assert listed(runs3, "started > 2024-11-23") == {"gamma-x"}
    assert listed(runs3, "started >= 2024-11-23") == {"alpha", "gamma-x"}
    assert listed(runs3, "started > 2024-11-22") == {"alpha", "gamma-x"}
    assert listed(runs3, "started in [2024-11-22, 2024-11-23]") == {"alpha", "beta"}


def test_started_date_and_time_forms(runs3):
    assert listed(runs3, "started = '2024-11-23 14:05'") == {"alpha"}
    assert listed(runs3, "started < '2024-11-23 14:05'") == {"beta"}
    assert listed(runs3, "started > '2024-11-23 14:05'") == {"gamma-x"}
    assert listed(runs3, "started = 2024-11-23T14:05:30") == {"alpha"}
    assert listed(runs3, "started = '2024-11-23 14:05:30'") == {"alpha"}
    assert listed(runs3, "started = 2024-11-23T14:05:31") == set()
    assert listed(runs3, "started >= 2024-11-23T14:05:31") == {"gamma-x"}
    assert listed(runs3, "started = 24-11-23") == {"alpha"}
    assert listed(runs3, "started <= 24-11-22") == {"beta"}


def test_started_time_of_today_and_month_day_of_this_year(runs3):
    today = datetime.date.today()
    assert listed(runs3, "started = 09:15") == {"gamma-x"}
    assert listed(runs3, "started >= 09:15 and started < 09:16") == {"gamma-x"}
    assert listed(runs3, "started > 09:15") == set()
    assert listed(runs3, "started < 09:15") == {"alpha", "beta"}
    assert listed(runs3, f"started = {today.month}-{today.day}") == {"gamma-x"}
    assert listed(runs3, f"started = {today:%m-%d}") == {"gamma-x"}


def test_started_compares_with_epoch_seconds(runs3):
    t = epoch(ALPHA_START)
    assert listed(runs3, f"started = {t}") == {"alpha"}
    assert listed(runs3, f"started >= {t}") == {"alpha", "gamma-x"}
    assert listed(runs3, f"started < {t}") == {"beta"}
    assert listed(runs3, f"started < {t}.5") == {"alpha", "beta"}


def test_started_str_supports_contains_and_tilde(runs3):
    assert listed(runs3, "started contains '2024-11-23 14:05:30'") == {"alpha"}
    assert listed(runs3, "started contains 2024-11") == {"alpha", "beta"}
    assert listed(runs3, "started ~ '^2024-11-2[23] '") == {"alpha", "beta"}
    # attr:started is still the core's own text.
    assert listed(runs3, "attr:started = '2024-11-23 14:05:30'") == {"alpha"}


def test_started_unparseable_target_matches_nothing(runs3):
    assert listed(runs3, "started = yesterdayish") == set()
    assert listed(runs3, "started < nonsense") == set()
    assert listed(runs3, "started > 2024-13-01") == set()
    assert listed(runs3, "started >= '25:00'") == set()
    assert listed(runs3, "started < true") == set()
    assert listed(runs3, "started is not undefined") == ALL


def test_stopped_comparisons(runs3):
    # beta stopped at 2024-11-23 00:59:59.5, alpha at 14:07:00 that day.
    assert listed(runs3, "stopped = 2024-11-23") == {"alpha", "beta"}
    assert listed(runs3, "stopped = '2024-11-23 00:59'") == {"beta"}
    assert listed(runs3, "stopped > '2024-11-23 00:59'") == {"alpha", "gamma-x"}
    assert listed(runs3, "stopped = 2024-11-23T14:07:00") == {"alpha"}
    assert listed(runs3, "stopped > started") == set()  # a name is a word, not a When
    assert listed(runs3, "stopped < 2024-11-23") == set()
    run_labelled("gamma-x").del_attr("stopped")
    assert listed(runs3, "stopped is undefined") == {"gamma-x"}


def test_started_when_value_object():
    w = When(micros(ALPHA_START))
    assert str(w) == "2024-11-23 14:05:30"
    assert w.datetime == ALPHA_START
    assert w == When(micros(ALPHA_START))
    assert w < When(micros(ALPHA_START) + 1)
    assert w == ALPHA_START and w < ALPHA_START + datetime.timedelta(seconds=1)
    assert w == "2024-11-23" and w != "2024-11-24" and w < "11-24" and w > "24-11-22"
    assert w == "2024-11-23 14:05" and w <= "2024-11-23 14:05" and w < "14:05:30"
    assert w == epoch(ALPHA_START) and w < epoch(ALPHA_START) + 0.5
    assert not (w == "garbage") and w != "garbage"
    with pytest.raises(TypeError):
        w < "garbage"  # noqa: B015
    assert len({w, When(micros(ALPHA_START))}) == 1


# -- scalar:TAG.AGG -----------------------------------------------------


def test_scalar_min(runs3):
    assert listed(runs3, "scalar:loss.min < 0.2") == {"alpha"}
    assert listed(runs3, "scalar:loss.min = 2") == {"beta"}


def test_scalar_max(runs3):
    assert listed(runs3, "scalar:loss.max = 3") == {"beta"}
    assert listed(runs3, "scalar:loss.max < 1") == {"alpha"}


def test_scalar_avg(runs3):
    assert listed(runs3, "scalar:loss.avg = 2.5") == {"beta"}
    assert listed(runs3, "scalar:loss.avg > 0.49 and scalar:loss.avg < 0.51") == {"alpha"}


def test_scalar_count(runs3):
    assert listed(runs3, "scalar:loss.count = 3") == {"alpha"}
    assert listed(runs3, "scalar:loss.count = 2") == {"beta"}
    # An int: its text is "3", not "3.0".
    assert listed(runs3, "scalar:loss.count ~ '^3$'") == {"alpha"}


def test_scalar_first(runs3):
    assert listed(runs3, "scalar:loss.first = 2") == {"beta"}
    assert listed(runs3, "scalar:loss.first > 0.8 and scalar:loss.first < 1") == {"alpha"}


def test_scalar_last(runs3):
    assert listed(runs3, "scalar:loss.last = 3") == {"beta"}
    assert listed(runs3, "scalar:loss.last < 0.2") == {"alpha"}
    # The core's last value agrees.
    assert listed(runs3, "loss < 0.2") == {"alpha"}


def test_scalar_aggregates_undefined_without_tag(runs3):
    for agg in ("min", "max", "avg", "count", "first", "last"):
        assert listed(runs3, f"scalar:loss.{agg} is undefined") == {"gamma-x"}
    assert listed(runs3, "scalar:acc.count = 1") == {"gamma-x"}
    assert listed(runs3, "scalar:nope.max is undefined") == ALL
    # Only with the scalar: prefix: unprefixed names stay the run's own.
    assert listed(runs3, "loss.min is undefined") == ALL


def test_scalar_aggregates_follow_new_events(runs3):
    from guild_core import tfevents

    assert listed(runs3, "scalar:loss.count = 3") == {"alpha"}
    run = run_labelled("alpha")
    with tfevents.EventWriter(run.guild_path(), filename_suffix=".more") as w:
        w.add_scalar("loss", 0.01, 3)
    assert listed(runs3, "scalar:loss.count = 4") == {"alpha"}
    assert listed(runs3, "scalar:loss.min < 0.05 and scalar:loss.last < 0.05") == {"alpha"}


# -- ~ and !~ -----------------------------------------------------------


def test_op_tilde_matches_regex(runs3):
    assert listed(runs3, "label ~ ^al") == {"alpha"}
    assert listed(runs3, "label ~ a$") == {"alpha", "beta"}
    assert listed(runs3, "label ~ 'a-x$'") == {"gamma-x"}
    assert listed(runs3, "label~^b") == {"beta"}
    assert listed(runs3, "label ~ [^al, ^be]") == {"alpha", "beta"}
    # Single quotes keep backslashes, as in YAML: no doubling needed.
    assert listed(runs3, "scalar:loss.max ~ '^3\\.0$'") == {"beta"}
    assert listed(runs3, 'scalar:loss.max ~ "^3\\.0$"') == {"beta"}
    assert listed(runs3, "flag:nope ~ x") == set()
    assert listed(runs3, "label ~ AL") == set()
    assert listed(runs3, "label ~ '(?i)AL'") == {"alpha"}


def test_op_bang_tilde_does_not_match(runs3):
    assert listed(runs3, "label !~ a$") == {"gamma-x"}
    assert listed(runs3, "label!~^al") == {"beta", "gamma-x"}
    assert listed(runs3, "label !~ '^(al|be)'") == {"gamma-x"}
    # As with !=, an undefined value does not match the pattern.
    assert listed(runs3, "flag:nope !~ x") == ALL
    assert listed(runs3, "not label ~ a$ and label !~ zzz") == {"gamma-x"}


def test_op_tilde_invalid_regex_is_reported_before_any_run_is_read(cli, guild_home):
    # No runs at all, and a test no run reaches: still an error.
    result = cli("runs", "-F", "label ~ '('")
    assert result.exit_code == 1 and "invalid regular expression '('" in result.stderr
    result = cli("runs", "-F", "label = nobody and label ~ '[x'")
    assert result.exit_code == 1 and "invalid regular expression '[x'" in result.stderr


def test_op_tilde_invalid_regex_is_a_one_line_error(runs3):
    result = runs3("runs", "-F", "label ~ '('")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "guild: invalid regular expression '(' in filter: missing ), unterminated subpattern"
    )
    assert result.stderr.count("\n") == 1
    result = runs3("runs", "-F", "label !~ *x")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: invalid regular expression '*x' in filter: nothing to repeat")


def test_op_tilde_invalid_regex_from_shell(runs3, sh):
    result = sh("runs", "-F", "label ~ 'a[b'")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: invalid regular expression 'a[b' in filter: ")
    assert "Traceback" not in result.stderr


# -- disabling ----------------------------------------------------------


def test_disabled_filters_plugin_removes_tilde_started_duration_scalar_aggregates(runs3, monkeypatch):
    monkeypatch.setenv("GUILD_DISABLE_PLUGINS", "filters")
    common.plugin_manager.cache_clear()
    result = runs3("runs", "-F", "label ~ x")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: syntax error in filter at position 6: unexpected token '~'")
    assert listed(runs3, "loss < 1") == {"alpha"}
    # The core's own meanings come back.
    assert listed(runs3, "scalar:loss.min < 1") == set()
    assert listed(runs3, "started = 2024-11-23") == set()
    assert listed(runs3, "started = '2024-11-23 14:05:30'") == {"alpha"}
    assert listed(runs3, "duration is undefined") == ALL
    plugins = runs3("plugins").output
    assert not re.search(r"^filters ", plugins, re.M)
    assert "Disabled (GUILD_DISABLE_PLUGINS): filters" in plugins
