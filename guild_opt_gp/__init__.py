"""Bayesian optimizers backed by scikit-optimize: ``gp``, ``forest``, ``gbrt``.

Each optimizer is sequential: `propose` returns one trial at a time,
chosen from the results reported with `observe`. With parallel trials,
`propose_concurrent` chooses several at once by constant liar. Results of earlier runs
(warm start, see the ``prev-trials`` flag) may be observed before the
first proposal.

This module must stay cheap to import: numpy and scikit-optimize are
imported only when an optimizer is created.
"""

from __future__ import annotations

import math
from typing import Any

from guild_core.errors import GuildError
from guild_core.flagdefs import FlagDef
from guild_core.hookspecs import hookimpl

ACQ_FUNCS = ["gp_hedge", "EI", "PI", "LCB"]
PREV_TRIALS = ["batch", "sourcecode", "operation"]
FOREST_ESTIMATORS = ["ET", "RF"]

# Flag types that cannot be searched over a numeric range.
_NON_NUMERIC = ("string", "boolean", "path", "existing-path")


def _common_flags() -> dict[str, FlagDef]:
    flags = [
        FlagDef(
            "random-starts", "int", 3,
            description="Number of random trials before the model chooses trials",
        ),
        FlagDef(
            "acq-func", "string", "gp_hedge", choices=list(ACQ_FUNCS),
            description=(
                "Function to minimize over the surrogate model: gp_hedge "
                "(probabilistically choose EI, PI or LCB), EI (expected "
                "improvement), PI (probability of improvement), LCB (lower "
                "confidence bound)"
            ),
        ),
        FlagDef(
            "kappa", "float", 1.96,
            description=(
                "Variance weight for LCB: higher values explore more, lower "
                "values exploit more"
            ),
        ),
        FlagDef(
            "xi", "float", 0.05,
            description=(
                "Improvement to seek over the best result so far, for EI and "
                "PI: higher values explore more"
            ),
        ),
        FlagDef(
            "prev-trials", "string", "batch", choices=list(PREV_TRIALS),
            description=(
                "Earlier runs used as observations: batch (this batch's "
                "trials), sourcecode (runs of the operation with the same "
                "source code), operation (all runs of the operation)"
            ),
        ),
    ]
    return {f.name: f for f in flags}


def _gp_flags() -> dict[str, FlagDef]:
    flags = _common_flags()
    noise = FlagDef(
        "noise", None, "gaussian",
        description=(
            "Noise of the objective: 'gaussian' to estimate it, or the "
            "variance of the noise as a number"
        ),
    )
    # Keep the documented order: noise before prev-trials.
    prev = flags.pop("prev-trials")
    flags["noise"] = noise
    flags["prev-trials"] = prev
    return flags


def _forest_flags() -> dict[str, FlagDef]:
    flags = _common_flags()
    prev = flags.pop("prev-trials")
    flags["base-estimator"] = FlagDef(
        "base-estimator", "string", "ET", choices=list(FOREST_ESTIMATORS),
        description="Surrogate model: ET (extra trees) or RF (random forest)",
    )
    flags["prev-trials"] = prev
    return flags


@hookimpl(trylast=True)
def guild_register_optimizers(register):
    register(
        "gp", _factory("gp"), aliases=["bayesian", "gaussian"],
        flags=_gp_flags(), default_max_trials=20,
        description="Bayesian optimizer using Gaussian processes",
    )
    register(
        "forest", _factory("forest"), flags=_forest_flags(), default_max_trials=20,
        description="Sequential optimization using decision trees",
    )
    register(
        "gbrt", _factory("gbrt"), flags=_common_flags(), default_max_trials=20,
        description="Sequential optimization using gradient boosted regression trees",
    )


def _factory(name: str):
    def factory(ctx):
        return SkoptOptimizer(name, ctx)

    factory.__name__ = f"{name}_optimizer"
    return factory


# ---------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------


class _Dim:
    """One search dimension: its flag name and how to build it."""

    def __init__(self, name: str, kind: str, args: Any, prior: str | None = None):
        self.name = name
        self.kind = kind  # "int", "real" or "categorical"
        self.args = args  # (low, high) or a list of categories
        self.prior = prior

    def make(self):
        from skopt.space import Categorical, Integer, Real

        if self.kind == "categorical":
            return Categorical(list(self.args), name=self.name)
        low, high = self.args
        cls = Integer if self.kind == "int" else Real
        if self.prior:
            return cls(low, high, prior=self.prior, name=self.name)
        return cls(low, high, name=self.name)

    def to_py(self, val: Any) -> Any:
        """`val` from skopt as a plain Python value of this dimension."""
        if self.kind == "int":
            return int(val)
        if self.kind == "real":
            return float(val)
        plain = _plain(val)
        for choice in self.args:
            if choice == plain and type(choice) is type(plain):
                return choice
        for choice in self.args:
            if choice == plain:
                return choice
        return plain

    def from_py(self, val: Any) -> Any:
        """A flag value as a point coordinate, or raise ValueError when it
        is outside the dimension."""
        if self.kind == "categorical":
            for choice in self.args:
                if choice == val:
                    return choice
            raise ValueError(val)
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ValueError(val)
        low, high = self.args
        if not low <= val <= high:
            raise ValueError(val)
        if self.kind == "int":
            if float(val) != int(val):
                raise ValueError(val)
            return int(val)
        return float(val)


def _plain(val: Any) -> Any:
    """numpy scalars as Python scalars."""
    item = getattr(val, "item", None)
    if item is not None and not isinstance(val, (list, dict, str)):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return val


def _is_number(val: Any) -> bool:
    return isinstance(val, (int, float)) and not isinstance(val, bool)


def build_dims(opt_name: str, space: dict[str, Any], flagdefs: dict[str, FlagDef]) -> tuple[list[_Dim], dict[str, Any]]:
    """Search dimensions and fixed values from a batch's search space."""
    dims: list[_Dim] = []
    fixed: dict[str, Any] = {}
    for name, val in space.items():
        fd = flagdefs.get(name)
        ftype = fd.type if fd else None
        if isinstance(val, tuple):
            dims.append(_range_dim(opt_name, name, val, fd, ftype))
        elif isinstance(val, list):
            choices = _unique(val)
            if not choices:
                raise GuildError(f"flag '{name}' has an empty list of values")
            if len(choices) == 1:
                fixed[name] = choices[0]
            else:
                dims.append(_Dim(name, "categorical", choices))
        else:
            fixed[name] = val
    if not dims:
        raise GuildError(
            f"{opt_name} needs at least one flag with a search range, "
            "e.g. x=uniform[0:1]"
        )
    return dims, fixed


def _unique(vals: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in vals:
        if not any(v == o and type(v) is type(o) for o in out):
            out.append(v)
    return out


def _range_dim(opt_name, name, val, fd, ftype) -> _Dim:
    if len(val) != 2 or not isinstance(val[0], str):
        raise GuildError(f"invalid search value for flag '{name}': {val!r}")
    func, args = val
    if func not in ("uniform", "loguniform"):
        raise GuildError(
            f"{opt_name} does not support the search function '{func}' "
            f"(flag '{name}'): use uniform or loguniform"
        )
    args = tuple(args) if isinstance(args, (list, tuple)) else (args,)
    if len(args) != 2:
        raise GuildError(
            f"invalid {func} range for flag '{name}': expected a low and a "
            f"high bound, e.g. {func}[1:10]"
        )
    low, high = args
    if ftype in _NON_NUMERIC:
        raise GuildError(
            f"flag '{name}' is a {ftype} flag and cannot be searched over "
            f"a {func} range"
        )
    if not (_is_number(low) and _is_number(high)):
        raise GuildError(
            f"invalid {func} range for flag '{name}': bounds must be numbers"
        )
    if not all(math.isfinite(b) for b in (low, high)):
        raise GuildError(f"invalid {func} range for flag '{name}': bounds must be finite")
    if not low < high:
        raise GuildError(
            f"invalid {func} range for flag '{name}': the low bound "
            f"({low}) must be less than the high bound ({high})"
        )
    if func == "loguniform" and low <= 0:
        raise GuildError(
            f"invalid loguniform range for flag '{name}': bounds must be "
            f"greater than 0 (got {low})"
        )
    if ftype == "int":
        kind = "int"
        if float(low) != int(low) or float(high) != int(high):
            raise GuildError(
                f"invalid {func} range for int flag '{name}': bounds must "
                f"be whole numbers"
            )
        low, high = int(low), int(high)
    elif ftype == "float":
        kind = "real"
    elif isinstance(low, int) and isinstance(high, int) and not (
        fd is not None and isinstance(fd.default, float)
    ):
        # Auto-typed (or "number"): whole-number bounds search integers,
        # unless the flag's default says it is a float.
        kind = "int"
    else:
        kind = "real"
    if kind == "real":
        low, high = float(low), float(high)
    prior = "log-uniform" if func == "loguniform" else None
    return _Dim(name, kind, (low, high), prior)


# ---------------------------------------------------------------------
# Optimizer flags
# ---------------------------------------------------------------------


def _opt_flag(ctx, flags: dict[str, FlagDef], name: str) -> Any:
    opt_flags = getattr(ctx, "opt_flags", None) or {}
    val = opt_flags.get(name)
    return flags[name].default if val is None else val


def _int_flag(opt_name, val, name, minimum=0) -> int:
    if isinstance(val, str):
        try:
            val = int(val)
        except ValueError:
            pass
    if isinstance(val, float) and val.is_integer():
        val = int(val)
    if not isinstance(val, int) or isinstance(val, bool) or val < minimum:
        raise GuildError(f"invalid value {val} for {opt_name} flag '{name}': expected a whole number >= {minimum}")
    return val


def _float_flag(opt_name, val, name) -> float:
    if isinstance(val, str):
        try:
            val = float(val)
        except ValueError:
            pass
    if not _is_number(val) or not math.isfinite(val):
        raise GuildError(f"invalid value {val} for {opt_name} flag '{name}': expected a number")
    return float(val)


def _choice_flag(opt_name, val, name, choices) -> str:
    if val not in choices:
        raise GuildError(
            f"invalid value {val} for {opt_name} flag '{name}': supported "
            f"values are {', '.join(choices)}"
        )
    return val


def _noise_flag(opt_name, val) -> str | float:
    if isinstance(val, str):
        if val.strip().lower() == "gaussian":
            return "gaussian"
        try:
            val = float(val)
        except ValueError:
            pass
    if _is_number(val) and math.isfinite(val) and val >= 0:
        return float(val)
    raise GuildError(
        f"invalid value {val} for {opt_name} flag 'noise': expected "
        "'gaussian' or a number >= 0"
    )


# ---------------------------------------------------------------------
# The optimizer
# ---------------------------------------------------------------------


class SkoptOptimizer:
    """A sequential optimizer wrapping `skopt.Optimizer`."""

    def __init__(self, opt_name: str, ctx):
        self.name = opt_name
        self.max_trials = int(ctx.max_trials)
        self.minimize = bool(ctx.minimize)
        flags = {"gp": _gp_flags, "forest": _forest_flags}.get(opt_name, _common_flags)()
        random_starts = _int_flag(opt_name, _opt_flag(ctx, flags, "random-starts"), "random-starts")
        acq_func = _choice_flag(opt_name, _opt_flag(ctx, flags, "acq-func"), "acq-func", ACQ_FUNCS)
        kappa = _float_flag(opt_name, _opt_flag(ctx, flags, "kappa"), "kappa")
        xi = _float_flag(opt_name, _opt_flag(ctx, flags, "xi"), "xi")
        _choice_flag(opt_name, _opt_flag(ctx, flags, "prev-trials"), "prev-trials", PREV_TRIALS)
        noise = _noise_flag(opt_name, _opt_flag(ctx, flags, "noise")) if "noise" in flags else None
        estimator = (
            _choice_flag(opt_name, _opt_flag(ctx, flags, "base-estimator"), "base-estimator", FOREST_ESTIMATORS)
            if "base-estimator" in flags else None
        )
        self.dims, self.fixed = build_dims(opt_name, dict(ctx.space), dict(ctx.flagdefs or {}))
        self.names = [d.name for d in self.dims]
        self.proposed = 0
        self._pending_x: list[list[Any]] = []
        self._pending_y: list[float] = []
        # Proposed points not yet observed, and points of failed trials:
        # skopt, never told about them, may propose them again.
        self._unanswered: list[list[Any]] = []
        self._failed: list[list[Any]] = []
        self._opt = self._make(ctx.seed, random_starts, acq_func, kappa, xi, noise, estimator)

    def _make(self, seed, random_starts, acq_func, kappa, xi, noise, estimator):
        import numpy as np
        from skopt import Optimizer
        from sklearn.utils import check_random_state
        from skopt.utils import cook_estimator, normalize_dimensions

        rng = check_random_state(int(seed) % (2**32))
        space = [d.make() for d in self.dims]
        kwargs = dict(
            n_initial_points=random_starts,
            acq_func=acq_func,
            acq_func_kwargs={"kappa": kappa, "xi": xi},
            random_state=rng,
        )
        if self.name == "gp":
            # As skopt.gp_minimize: normalized dimensions, a GP with the
            # given noise, the acquisition function optimized by lbfgs.
            space = normalize_dimensions(space)
            base = cook_estimator(
                "GP", space=space,
                random_state=rng.randint(0, np.iinfo(np.int32).max),
                noise=noise,
            )
            return Optimizer(
                space, base, acq_optimizer="lbfgs",
                acq_optimizer_kwargs={"n_points": 10000, "n_restarts_optimizer": 5},
                **kwargs,
            )
        if estimator:
            base = estimator
        else:
            base = _gbrt_estimator(rng.randint(0, np.iinfo(np.int32).max))
        return Optimizer(space, base, acq_optimizer="sampling", **kwargs)

    # -- Optimizer protocol ---------------------------------------------

    def propose(self, n: int) -> list[dict[str, Any]]:
        if n <= 0 or self.proposed >= self.max_trials:
            return []
        self._flush()
        point = self._ask()
        self._unanswered.append(point)
        self.proposed += 1
        trial = dict(self.fixed)
        trial.update(zip(self.names, point))
        return [trial]

    def propose_concurrent(self, n: int, running: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Up to `n` points to run beside `running` (proposed, no result
        yet), chosen together by constant liar: a copy of the model is
        told each running point scored the best value so far, and `n`
        points are asked of it at once (skopt's ``cl_min``). Each real
        result is told as it arrives (`observe`), before the next ask."""
        n = min(n, self.max_trials - self.proposed)
        if n <= 0:
            return []
        if n == 1 and not running:
            return self.propose(1)
        self._flush()
        busy = [pt for pt in (self._point(f) for f in running) if pt is not None]
        points = self._ask_many(n, busy)
        trials = []
        for point in points:
            self._unanswered.append(point)
            self.proposed += 1
            trial = dict(self.fixed)
            trial.update(zip(self.names, point))
            trials.append(trial)
        return trials

    def observe(self, flags: dict[str, Any], objective: float | None) -> None:
        point = self._point(flags)
        if point is None:
            return
        self._unanswered = [p for p in self._unanswered if p != point]
        value = _finite(objective)
        if value is None:
            # A failed trial: skopt is not told, the search goes on.
            if point not in self._failed:
                self._failed.append(point)
            return
        self._pending_x.append(point)
        self._pending_y.append(value if self.minimize else -value)

    # -- internals ------------------------------------------------------

    def _point(self, flags: dict[str, Any]) -> list[Any] | None:
        try:
            return [d.from_py(flags[d.name]) for d in self.dims]
        except (KeyError, ValueError, TypeError):
            return None

    def _flush(self) -> None:
        """Tell skopt every observation since the last proposal, at once
        (one model fit, however many runs a warm start brings)."""
        if not self._pending_x:
            return
        import warnings

        xs, ys = self._pending_x, self._pending_y
        self._pending_x, self._pending_y = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._opt.tell(xs, ys)

    def _ask(self) -> list[Any]:
        """The next point, as plain Python values."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            point = self._py(self._opt.ask())
            # Not told about a failed or unanswered trial, skopt would
            # propose it again: try a random point instead.
            tries = 0
            while (point in self._failed or point in self._unanswered) and tries < 10:
                point = self._py(self._opt.space.rvs(random_state=self._opt.rng)[0])
                tries += 1
        return point

    def _ask_many(self, n: int, busy: list[list[Any]]) -> list[list[Any]]:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = self._opt
            lie = min(opt.yi) if opt.yi else 0.0
            if busy:
                # A copy that believes the running points scored `lie`:
                # skopt copies by telling the copy Xi and yi, so it is
                # fitted once with the lies among them.
                xi, yi = opt.Xi, opt.yi
                opt.Xi, opt.yi = xi + [list(p) for p in busy], yi + [lie] * len(busy)
                try:
                    opt = opt.copy(random_state=opt.rng)
                finally:
                    self._opt.Xi, self._opt.yi = xi, yi
            elif n > 1:
                opt = opt.copy(random_state=opt.rng)
            points: list[list[Any]] = []
            taken = self._failed + self._unanswered + busy
            for i in range(n):
                point = self._py(opt.ask())
                tries = 0
                # Never the same point twice at once, nor one that failed.
                while (point in taken or point in points) and tries < 10:
                    point = self._py(self._opt.space.rvs(random_state=self._opt.rng)[0])
                    tries += 1
                points.append(point)
                if i < n - 1:
                    opt.tell(list(point), lie)
        return points

    def _py(self, point) -> list[Any]:
        return [d.to_py(v) for d, v in zip(self.dims, point)]


_GBRT_CLASS = None


def _gbrt_estimator(random_state: int):
    """skopt's GBRT surrogate (as ``cook_estimator("GBRT")``), fixed for
    recent libraries: skopt's class lists `RegressorMixin` after
    `BaseEstimator`, so scikit-learn >= 1.6 does not see a regressor and
    `skopt.Optimizer` refuses it; and its ``predict(return_std=True)``
    calls ``numpy.in1d``, gone from numpy 2.4."""
    global _GBRT_CLASS
    from sklearn.ensemble import GradientBoostingRegressor
    from skopt.learning import GradientBoostingQuantileRegressor as Base

    if _GBRT_CLASS is None:

        def __sklearn_tags__(self):
            tags = Base.__sklearn_tags__(self)
            tags.estimator_type = "regressor"
            if tags.regressor_tags is None:
                from sklearn.utils import RegressorTags

                tags.regressor_tags = RegressorTags()
            return tags

        def predict(self, X, return_std=False, return_quantiles=False):
            if return_std and not return_quantiles:
                if not all(q in self.quantiles for q in (0.16, 0.5, 0.84)):
                    raise ValueError(
                        "return_std works only if the quantiles during "
                        "instantiation include 0.16, 0.5 and 0.84"
                    )
                low, mean, high = (
                    self.regressors_[self.quantiles.index(q)].predict(X)
                    for q in (0.16, 0.5, 0.84)
                )
                return mean, (high - low) / 2.0
            return Base.predict(self, X, return_std=return_std, return_quantiles=return_quantiles)

        attrs = {"__module__": __name__, "predict": predict}
        if hasattr(Base, "__sklearn_tags__"):
            attrs["__sklearn_tags__"] = __sklearn_tags__
        _GBRT_CLASS = type("GradientBoostingQuantileRegressor", (Base,), attrs)
    gbrt = GradientBoostingRegressor(n_estimators=30, loss="quantile")
    return _GBRT_CLASS(base_estimator=gbrt, random_state=random_state)


def _finite(objective: Any) -> float | None:
    if objective is None or isinstance(objective, bool):
        return None
    try:
        value = float(objective)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
