"""The scikit-optimize optimizers: gp (bayesian, gaussian), forest, gbrt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import guild_opt_gp
from guild_core.batch import BatchContext
from guild_core.errors import GuildError
from guild_core.flagdefs import FlagDef
from guild_core.plugins import get_plugin_manager
from guild_core.registry import Registry


@pytest.fixture(scope="module")
def reg():
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(guild_opt_gp, name="gp")
    return Registry(pm)


def ctx(space, flagdefs=None, **kw):
    kw.setdefault("seed", 1)
    return BatchContext(space=space, flagdefs=flagdefs or {}, **kw)


def make(reg, space, flagdefs=None, name="gp", **kw):
    return reg.optimizer(name).factory(ctx(space, flagdefs, **kw))


def fd(name, type=None, default=None):
    return FlagDef(name, type, default)


# ---------------------------------------------------------------------
# Registration and flags
# ---------------------------------------------------------------------


def test_registered_with_aliases(reg):
    assert reg.optimizer("gp").name == "gp"
    assert reg.optimizer("bayesian").name == "gp"
    assert reg.optimizer("gaussian").name == "gp"
    assert reg.optimizer("forest").name == "forest"
    assert reg.optimizer("gbrt").name == "gbrt"
    for name in ("gp", "forest", "gbrt"):
        assert reg.optimizer(name).default_max_trials == 20
        assert reg.optimizer(name).description


def test_entry_point_loads_plugin():
    pm = get_plugin_manager()
    assert pm.get_plugin("gp") is guild_opt_gp


def test_flags_and_defaults(reg):
    flags = reg.optimizer("gp").flags
    assert list(flags) == ["random-starts", "acq-func", "kappa", "xi", "noise", "prev-trials"]
    assert (flags["random-starts"].type, flags["random-starts"].default) == ("int", 3)
    assert (flags["acq-func"].type, flags["acq-func"].default) == ("string", "gp_hedge")
    assert flags["acq-func"].choices == ["gp_hedge", "EI", "PI", "LCB"]
    assert (flags["kappa"].type, flags["kappa"].default) == ("float", 1.96)
    assert (flags["xi"].type, flags["xi"].default) == ("float", 0.05)
    assert flags["noise"].default == "gaussian"
    assert (flags["prev-trials"].type, flags["prev-trials"].default) == ("string", "batch")
    assert flags["prev-trials"].choices == ["batch", "sourcecode", "operation"]
    assert all(f.description for f in flags.values())
    for name in ("forest", "gbrt"):
        other = reg.optimizer(name).flags
        assert {"random-starts", "acq-func", "kappa", "xi", "prev-trials"} <= set(other)
        assert "noise" not in other
    assert reg.optimizer("forest").flags["base-estimator"].choices == ["ET", "RF"]


# ---------------------------------------------------------------------
# Dimensions
# ---------------------------------------------------------------------


def dims(space, flagdefs=None):
    ds, fixed = guild_opt_gp.build_dims("gp", space, flagdefs or {})
    return {d.name: (d.kind, d.args, d.prior) for d in ds}, fixed


def test_dims_per_type():
    got, fixed = dims(
        {
            "i": ("uniform", (1, 10)),
            "f": ("uniform", (0, 1)),
            "auto_int": ("uniform", (1, 5)),
            "auto_real": ("uniform", (0.5, 2)),
            "auto_float_default": ("uniform", (0, 1)),
            "lr": ("loguniform", (1e-5, 1e-1)),
            "n": ("loguniform", (1, 1024)),
            "opt": ["adam", "sgd"],
            "one": [7],
            "fixed": "x",
        },
        {
            "i": fd("i", "int"), "f": fd("f", "float"),
            "auto_float_default": fd("auto_float_default", None, 0.5),
            "n": fd("n", "int"),
        },
    )
    assert got == {
        "i": ("int", (1, 10), None),
        "f": ("real", (0.0, 1.0), None),
        "auto_int": ("int", (1, 5), None),
        "auto_real": ("real", (0.5, 2.0), None),
        "auto_float_default": ("real", (0.0, 1.0), None),
        "lr": ("real", (1e-5, 1e-1), "log-uniform"),
        "n": ("int", (1, 1024), "log-uniform"),
        "opt": ("categorical", ["adam", "sgd"], None),
    }
    assert fixed == {"one": 7, "fixed": "x"}


def test_proposals_are_plain_python_and_in_space(reg):
    opt = make(
        reg,
        {
            "i": ("uniform", (1, 10)), "f": ("uniform", (0, 1)),
            "lr": ("loguniform", (1e-5, 1e-1)), "opt": ["adam", "sgd"],
            "b": [True, False], "fixed": "x",
        },
        {"i": fd("i", "int"), "f": fd("f", "float")},
        opt_flags={"random-starts": 5}, max_trials=5,
    )
    for _ in range(5):
        [trial] = opt.propose(5)
        assert type(trial["i"]) is int and 1 <= trial["i"] <= 10
        assert type(trial["f"]) is float and 0 <= trial["f"] <= 1
        assert type(trial["lr"]) is float and 1e-5 <= trial["lr"] <= 1e-1
        assert type(trial["opt"]) is str and trial["opt"] in ("adam", "sgd")
        assert type(trial["b"]) is bool
        assert trial["fixed"] == "x"
        json.dumps(trial)
        opt.observe(trial, trial["f"])
    assert opt.propose(5) == []


@pytest.mark.parametrize(
    "space, flagdefs, msg",
    [
        ({"x": 1, "y": "a"}, {}, r"gp needs at least one flag with a search range, e\.g\. x=uniform\[0:1\]"),
        ({}, {}, "gp needs at least one flag with a search range"),
        ({"x": ("uniform", (1, 1))}, {}, "flag 'x'.*low bound .*less than the high bound"),
        ({"x": ("uniform", (2, 1))}, {}, "flag 'x'.*less than"),
        ({"x": ("loguniform", (0, 1))}, {}, "loguniform range for flag 'x'.*greater than 0"),
        ({"x": ("loguniform", (-1, 1))}, {}, "greater than 0"),
        ({"s": ("uniform", (0, 1))}, {"s": FlagDef("s", "string")}, "flag 's' is a string flag"),
        ({"b": ("uniform", (0, 1))}, {"b": FlagDef("b", "boolean")}, "flag 'b' is a boolean flag"),
        ({"x": ("uniform", ("a", "b"))}, {}, "flag 'x'.*numbers"),
        ({"x": ("normal", (0, 1))}, {}, "search function 'normal'"),
        ({"n": ("uniform", (0.5, 2.5))}, {"n": FlagDef("n", "int")}, "int flag 'n'.*whole numbers"),
    ],
)
def test_space_errors(reg, space, flagdefs, msg):
    with pytest.raises(GuildError, match=msg):
        make(reg, space, flagdefs)


def test_error_names_the_optimizer(reg):
    with pytest.raises(GuildError, match="forest needs at least one flag"):
        make(reg, {"x": 1}, name="forest")


def test_bad_optimizer_flag(reg):
    with pytest.raises(GuildError, match="acq-func"):
        make(reg, {"x": ("uniform", (0, 1))}, opt_flags={"acq-func": "XX"})
    with pytest.raises(GuildError, match="noise"):
        make(reg, {"x": ("uniform", (0, 1))}, opt_flags={"noise": "loud"})


# ---------------------------------------------------------------------
# The sequential loop
# ---------------------------------------------------------------------


def run_loop(opt, f, maximize=False):
    values = []
    while True:
        trials = opt.propose(100)
        if not trials:
            return values
        assert len(trials) == 1
        val = f(trials[0])
        values.append(val)
        opt.observe(trials[0], val)


def test_gp_minimizes_quadratic(reg):
    opt = make(reg, {"x": ("uniform", (0, 1))}, {"x": fd("x", "float")}, max_trials=15)
    values = run_loop(opt, lambda t: (t["x"] - 0.3) ** 2)
    assert len(values) == 15
    assert min(values) < 0.01


@pytest.mark.parametrize("name", ["forest", "gbrt"])
def test_tree_optimizers_run(reg, name):
    opt = make(reg, {"x": ("uniform", (0, 1))}, {"x": fd("x", "float")}, name=name, max_trials=8)
    values = run_loop(opt, lambda t: (t["x"] - 0.3) ** 2)
    assert len(values) == 8
    assert min(values) < 0.05


def test_gp_maximize(reg):
    opt = make(
        reg, {"x": ("uniform", (0, 1))}, {"x": fd("x", "float")},
        minimize=False, objective="acc", max_trials=12,
    )
    values = run_loop(opt, lambda t: 1 - (t["x"] - 0.7) ** 2)
    assert max(values) > 0.99


def test_gp_noise_float(reg):
    opt = make(reg, {"x": ("uniform", (0.0, 1.0))}, opt_flags={"noise": 0.01}, max_trials=5)
    assert len(run_loop(opt, lambda t: t["x"])) == 5


def test_failed_trials_are_skipped(reg):
    opt = make(reg, {"x": ("uniform", (0.0, 1.0))}, max_trials=8, opt_flags={"random-starts": 2})
    seen = []
    for i in range(8):
        [trial] = opt.propose(1)
        seen.append(trial["x"])
        # Every other trial fails, including ones the model proposes.
        opt.observe(trial, None if i % 2 else (trial["x"] - 0.5) ** 2)
    assert opt.propose(1) == []
    assert len(set(seen)) == 8


def test_all_trials_failing(reg):
    opt = make(reg, {"x": ("uniform", (0.0, 1.0))}, max_trials=5)
    assert len(run_loop(opt, lambda t: None)) == 5


def test_same_seed_same_proposals(reg):
    space = {"x": ("uniform", (0.0, 1.0)), "n": ("uniform", (1, 100)), "o": ["a", "b", "c"]}

    def first(seed):
        opt = make(reg, space, seed=seed, max_trials=3)
        out = []
        for _ in range(3):
            [t] = opt.propose(1)
            out.append(t)
            opt.observe(t, t["x"])
        return out

    assert first(42) == first(42)
    assert first(42) != first(43)


def test_warm_start_observations_before_first_propose(reg):
    opt = make(
        reg, {"x": ("uniform", (0.0, 1.0)), "y": 3}, max_trials=2,
        opt_flags={"random-starts": 3},
    )
    # Earlier runs, one out of the space (ignored), one failed.
    for x in (0.1, 0.25, 0.5, 0.9):
        opt.observe({"x": x}, (x - 0.3) ** 2)
    opt.observe({"x": 5.0}, 1.0)
    opt.observe({"x": 0.6}, None)
    # With 4 observations >= random-starts, the first proposal is the model's.
    [trial] = opt.propose(1)
    assert trial["y"] == 3
    assert len(opt._opt.Xi) == 4
    assert abs(trial["x"] - 0.3) < 0.15
    opt.observe(trial, (trial["x"] - 0.3) ** 2)
    assert len(opt.propose(1)) == 1
    assert opt.propose(1) == []


def test_warm_start_int_and_categorical(reg):
    opt = make(
        reg, {"n": ("uniform", (1, 10)), "o": ["a", "b"]},
        {"n": fd("n", "int")}, max_trials=1, opt_flags={"random-starts": 1},
    )
    opt.observe({"n": 4.0, "o": "a"}, 1.0)
    opt.observe({"n": 4, "o": "c"}, 1.0)  # not a choice: ignored
    [trial] = opt.propose(1)
    assert opt._opt.Xi == [[4, "a"]]
    assert type(trial["n"]) is int


def test_import_is_cheap():
    code = (
        "import sys, guild_opt_gp; "
        "print('numpy' in sys.modules, 'skopt' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr
