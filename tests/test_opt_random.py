"""The random optimizer: seeded sampling of a batch's flag space."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys

import pytest

import guild_opt_random
from guild_core.batch import BatchContext
from guild_core.errors import GuildError
from guild_core.flagdefs import FlagDef
from guild_core.plugins import get_plugin_manager
from guild_core.registry import Registry


@pytest.fixture(scope="module")
def reg():
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(guild_opt_random, name="random")
    return Registry(pm)


def make(reg, space, flagdefs=None, **kw):
    kw.setdefault("seed", 1)
    ctx = BatchContext(space=space, flagdefs=flagdefs or {}, **kw)
    return reg.optimizer("random").factory(ctx)


def trials(reg, space, flagdefs=None, n=None, **kw):
    opt = make(reg, space, flagdefs, **kw)
    return opt.propose(n if n is not None else kw.get("max_trials", 20))


def fds(**types):
    return {name: FlagDef(name, type) for name, type in types.items()}


# ---------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------


def test_registration(reg):
    entry = reg.optimizer("random")
    assert entry.name == "random"
    assert entry.aliases == ()
    assert entry.flags == {}
    assert entry.default_max_trials == 20
    assert entry.description == "Random search over the flag space"
    assert entry.plugin == "random"


def test_found_through_entry_points(guild_home):
    entry = Registry(get_plugin_manager()).optimizer("random")
    assert entry.factory is guild_opt_random.random_optimizer


def test_import_is_cheap():
    code = (
        "import sys, guild_opt_random; "
        "print([m for m in ('numpy', 'skopt') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------


def test_float_uniform_gives_reals_within_bounds(reg):
    ts = trials(reg, {"x": ("uniform", (0, 1))}, fds(x="float"), max_trials=200)
    xs = [t["x"] for t in ts]
    assert len(xs) == 200
    assert all(isinstance(x, float) for x in xs)
    assert all(0 < x < 1 for x in xs)
    assert len(set(xs)) == 200
    assert min(xs) < 0.1 and max(xs) > 0.9


@pytest.mark.parametrize("ftype", ["float", "number", None])
def test_real_uniform_for_float_types_and_float_bounds(reg, ftype):
    space = {"x": ("uniform", (0.0, 2.0))} if ftype is None else {"x": ("uniform", (0, 2))}
    xs = [t["x"] for t in trials(reg, space, fds(x=ftype), max_trials=50)]
    assert all(isinstance(x, float) and 0 <= x <= 2 for x in xs)
    assert any(x != round(x) for x in xs)


def test_int_uniform_hits_both_ends(reg):
    ts = trials(reg, {"n": ("uniform", (1, 5))}, fds(n="int"), max_trials=5)
    assert sorted(t["n"] for t in ts) == [1, 2, 3, 4, 5]
    assert all(type(t["n"]) is int for t in ts)


def test_int_uniform_large_range_within_bounds_inclusive(reg):
    # Over many samples of a range larger than max_trials: ints, in
    # bounds, and both ends reached.
    seen = set()
    for seed in range(40):
        for t in trials(reg, {"n": ("uniform", (0, 9))}, fds(n="int"), max_trials=8, seed=seed):
            assert type(t["n"]) is int and 0 <= t["n"] <= 9
            seen.add(t["n"])
    assert {0, 9} <= seen


def test_auto_type_int_bounds_gives_ints(reg):
    ts = trials(reg, {"n": ("uniform", (-3, 3))}, max_trials=7)
    assert sorted(t["n"] for t in ts) == [-3, -2, -1, 0, 1, 2, 3]


def test_auto_type_with_float_default_gives_reals(reg):
    flagdefs = {"lr": FlagDef("lr", None, 0.5)}
    xs = [t["lr"] for t in trials(reg, {"lr": ("uniform", (0, 1))}, flagdefs, max_trials=10)]
    assert all(isinstance(x, float) for x in xs)


def test_int_flag_with_float_whole_bounds(reg):
    ts = trials(reg, {"n": ("uniform", (1.0, 3.0))}, fds(n="int"), max_trials=3)
    assert sorted(t["n"] for t in ts) == [1, 2, 3]


def test_loguniform_within_bounds_and_log_distributed(reg):
    low, high = 1e-5, 1e-1
    xs = [t["lr"] for t in trials(reg, {"lr": ("loguniform", (low, high))}, fds(lr="float"), max_trials=2000)]
    assert all(isinstance(x, float) and low <= x <= high for x in xs)
    geo_mean = math.sqrt(low * high)  # 1e-3
    med = statistics.median(xs)
    assert geo_mean / 2 < med < geo_mean * 2
    # Each decade gets about a quarter of the samples.
    for k in range(4):
        share = sum(1 for x in xs if 10 ** (-5 + k) <= x < 10 ** (-4 + k)) / len(xs)
        assert 0.18 < share < 0.32


def test_loguniform_int_flag_rounds(reg):
    ts = trials(reg, {"bs": ("loguniform", (16, 512))}, fds(bs="int"), max_trials=100)
    vals = [t["bs"] for t in ts]
    assert all(type(v) is int and 16 <= v <= 512 for v in vals)
    assert len(set(vals)) == len(vals)
    assert statistics.median(vals) < 200  # arithmetic midpoint is 264


def test_choices_from_lists(reg):
    space = {"opt": ["adam", "sgd", "rmsprop"], "n": [1, 2]}
    ts = trials(reg, space, max_trials=6)
    assert len(ts) == 6
    assert {(t["opt"], t["n"]) for t in ts} == {(o, n) for o in space["opt"] for n in space["n"]}


def test_fixed_values_kept(reg):
    space = {"x": ("uniform", (0.0, 1.0)), "epochs": 3, "name": "run", "flag": True}
    ts = trials(reg, space, max_trials=10)
    assert all(t["epochs"] == 3 and t["name"] == "run" and t["flag"] is True for t in ts)
    assert all(set(t) == set(space) for t in ts)


# ---------------------------------------------------------------------
# Seeding, max trials, duplicates
# ---------------------------------------------------------------------


SPACE = {"x": ("uniform", (0.0, 1.0)), "n": ("uniform", (1, 100)), "c": ["a", "b", "c"]}


def test_same_seed_same_trials(reg):
    assert trials(reg, SPACE, seed=7) == trials(reg, SPACE, seed=7)


def test_same_seed_independent_of_dict_order(reg):
    reordered = dict(reversed(list(SPACE.items())))
    assert trials(reg, SPACE, seed=7) == trials(reg, reordered, seed=7)


def test_different_seed_different_trials(reg):
    assert trials(reg, SPACE, seed=7) != trials(reg, SPACE, seed=8)


def test_max_trials_respected_across_propose_calls(reg):
    opt = make(reg, SPACE, max_trials=5)
    first = opt.propose(3)
    second = opt.propose(3)
    assert len(first) == 3 and len(second) == 2
    assert opt.propose(3) == []
    assert first + second == trials(reg, SPACE, max_trials=5)


def test_first_propose_returns_all(reg):
    opt = make(reg, SPACE, max_trials=4)
    assert len(opt.propose(100)) == 4
    assert opt.propose(100) == []


def test_propose_zero(reg):
    opt = make(reg, SPACE, max_trials=4)
    assert opt.propose(0) == []
    assert len(opt.propose(4)) == 4


def test_observe_records_only(reg):
    opt = make(reg, SPACE, max_trials=3)
    ts = opt.propose(3)
    opt.observe(ts[0], 0.5)
    opt.observe(ts[1], None)
    assert opt.propose(3) == []


def test_small_discrete_space_gives_distinct_trials(reg):
    space = {"a": [1, 2, 3], "b": ["x", "y"]}
    ts = trials(reg, space, max_trials=6)
    assert len({(t["a"], t["b"]) for t in ts}) == 6


def test_discrete_space_smaller_than_max_trials(reg):
    space = {"a": [1, 2], "n": ("uniform", (0, 2))}
    ts = trials(reg, space, fds(n="int"), max_trials=20)
    assert len(ts) == 6
    assert len({(t["a"], t["n"]) for t in ts}) == 6


def test_duplicate_list_items_count_once(reg):
    ts = trials(reg, {"a": [1, 1, 2]}, max_trials=10)
    assert sorted(t["a"] for t in ts) == [1, 2]


def test_only_fixed_values(reg):
    assert trials(reg, {"x": 1}, max_trials=5) == [{"x": 1}]


def test_large_discrete_space_stays_distinct(reg):
    ts = trials(reg, {"n": ("uniform", (1, 1000))}, max_trials=1000)
    assert sorted(t["n"] for t in ts) == list(range(1, 1001))


# ---------------------------------------------------------------------
# Errors, raised by the factory
# ---------------------------------------------------------------------


def test_uniform_low_not_below_high(reg):
    with pytest.raises(GuildError, match=r"invalid uniform\[1:0\]: low must be below high"):
        make(reg, {"x": ("uniform", (1, 0))})
    with pytest.raises(GuildError, match=r"uniform\[1:1\]"):
        make(reg, {"x": ("uniform", (1, 1))})


def test_loguniform_bounds_must_be_positive(reg):
    with pytest.raises(GuildError, match=r"invalid loguniform\[0:1\]: loguniform bounds must be greater than 0"):
        make(reg, {"x": ("loguniform", (0, 1))})


@pytest.mark.parametrize("ftype", ["string", "boolean", "path", "existing-path"])
def test_search_function_on_non_numeric_flag(reg, ftype):
    msg = rf"cannot use uniform\[0:1\] for flag 'name': flag type is {ftype}"
    with pytest.raises(GuildError, match=msg):
        make(reg, {"name": ("uniform", (0, 1))}, fds(name=ftype))


def test_unknown_search_function(reg):
    with pytest.raises(GuildError, match=r"normal\[0:1\]"):
        make(reg, {"x": ("normal", (0, 1))})


def test_int_flag_needs_whole_bounds(reg):
    with pytest.raises(GuildError, match="whole numbers"):
        make(reg, {"n": ("uniform", (0.5, 3))}, fds(n="int"))


def test_non_number_bounds(reg):
    with pytest.raises(GuildError, match="bounds must be numbers"):
        make(reg, {"x": ("uniform", ("a", 1))})


def test_empty_list(reg):
    with pytest.raises(GuildError, match="empty list"):
        make(reg, {"x": []})
