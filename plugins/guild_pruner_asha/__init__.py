"""Built-in plugin ``asha``: asynchronous successive halving.

Rungs are at steps ``min-resource * reduction-factor ** k`` (1, 3, 9,
27... by default), below ``max-resource`` when it is given. When a
running trial first reaches a rung, its value there is compared with
the values every trial of the batch had at that rung (running,
finished and pruned trials alike: a rung's record is kept): it goes on
only when it is among the best ``1 / reduction-factor`` of them. While
a rung has fewer than ``reduction-factor`` values, only a trial better
than all of them goes on (as Optuna's successive halving does: a trial
stopped cannot be resumed, so the first ones are not promoted blindly).

Asynchronous: no trial waits for a rung to fill, which is what makes it
right with trials in parallel; each decision uses the rung as it is.
A trial's value at a rung is its value at the first step at or past
the rung.
"""

from __future__ import annotations

from guild_core.flagdefs import FlagDef
from guild_core.hookspecs import hookimpl

NAME = "asha"


@hookimpl(trylast=True)
def guild_register_pruners(register):
    register(
        NAME, AshaPruner,
        aliases=("sha",),
        flags={
            "min-resource": FlagDef("min-resource", type="int", default=1, min=1,
                                    description="the step of the first rung"),
            "reduction-factor": FlagDef("reduction-factor", type="int", default=3, min=2,
                                        description="rung k is at min-resource * reduction-factor ** k; the best 1/reduction-factor go on"),
            "max-resource": FlagDef("max-resource", type="int", default=0, min=0,
                                    description="no rung at or past this step (0: none)"),
        },
        description="Asynchronous successive halving: at each rung, only the best 1/reduction-factor go on",
    )


class AshaPruner:
    def __init__(self, ctx):
        # Typed and within their bounds: the core checks a pruner's
        # flags against their FlagDefs.
        flags = ctx.flags
        self.min_resource = flags["min-resource"]
        self.factor = flags["reduction-factor"]
        self.max_resource = flags["max-resource"]
        if self.max_resource and self.max_resource <= self.min_resource:
            raise ValueError(f"max-resource ({self.max_resource}) must be above min-resource ({self.min_resource})")
        self.minimize = ctx.minimize
        # trial id -> (points read, {rung: value})
        self._rungs: dict[str, tuple[int, dict[int, float]]] = {}

    def rung_step(self, k: int) -> int:
        return self.min_resource * self.factor ** k

    def _rungs_of(self, trial) -> dict[int, float]:
        """The trial's value at each rung it reached, read on from the
        points seen last time."""
        seen, rungs = self._rungs.get(trial.id, (0, {}))
        if seen > len(trial.steps):
            seen, rungs = 0, {}
        for i in range(seen, len(trial.steps)):
            step = trial.steps[i]
            k = len(rungs)
            while True:
                at = self.rung_step(k)
                if self.max_resource and at >= self.max_resource:
                    break
                if step < at:
                    break
                rungs[k] = trial.values[i]
                k += 1
        self._rungs[trial.id] = (len(trial.steps), rungs)
        return rungs

    def should_prune(self, trial, trials):
        from guild_core.pruning import Prune

        before = len(self._rungs.get(trial.id, (0, {}))[1])
        mine = self._rungs_of(trial)
        # Only the rungs this step reached are judged, lowest first.
        for k in range(before, len(mine)):
            competing = []
            for t in trials.values():
                val = mine[k] if t.id == trial.id else self._rungs_of(t).get(k)
                if val is not None:
                    competing.append(val)
            competing.sort(reverse=not self.minimize)
            # The best 1/factor of the rung go on; with too few values
            # for that, only the best.
            keep = max(len(competing) // self.factor, 1)
            threshold = competing[keep - 1]
            value = mine[k]
            worse = value > threshold if self.minimize else value < threshold
            if worse:
                return Prune(
                    NAME, threshold,
                    f"{value:g} at rung {k} (step {self.rung_step(k)}) is not in the best {keep} of {len(competing)} (threshold {threshold:g})",
                )
        return None

    def pruned_value(self, trial, trials):
        from guild_core.pruning import pessimistic_value

        return pessimistic_value(trial, trials, self.minimize)

