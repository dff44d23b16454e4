"""Built-in plugin ``median``: Optuna's median stopping rule.

A running trial stops at a step when its best value of the objective so
far is worse than the median of the values the completed trials had at
that same step (the last value each logged at or before it). Judged
only once `startup-trials` trials have completed, from step
`warmup-steps` on, and once per `interval-steps` steps; a step fewer
than `min-trials` completed trials reached is not judged.

Only completed trials are compared with, never running ones, so the
rule reads the same with trials in parallel: a trial is judged against
results that are final.
"""

from __future__ import annotations

from guild_core.flagdefs import FlagDef
from guild_core.hookspecs import hookimpl

NAME = "median"


@hookimpl(trylast=True)
def guild_register_pruners(register):
    register(
        NAME, MedianPruner,
        flags={
            "startup-trials": FlagDef("startup-trials", type="int", default=5, min=0,
                                      description="completed trials before any trial is pruned"),
            "warmup-steps": FlagDef("warmup-steps", type="int", default=0, min=0,
                                    description="steps a trial runs before it can be pruned"),
            "interval-steps": FlagDef("interval-steps", type="int", default=1, min=1,
                                      description="a trial is judged once per this many steps"),
            "min-trials": FlagDef("min-trials", type="int", default=1, min=1,
                                  description="completed trials that reached a step for it to be judged"),
        },
        description="Stop a trial whose best value so far is worse than the median of completed trials at the same step",
    )


class MedianPruner:
    def __init__(self, ctx):
        # Typed and within their bounds: the core checks a pruner's
        # flags against their FlagDefs.
        flags = ctx.flags
        self.startup = flags["startup-trials"]
        self.warmup = flags["warmup-steps"]
        self.interval = flags["interval-steps"]
        self.min_trials = flags["min-trials"]
        self.minimize = ctx.minimize

    def _judged_step(self, trial) -> bool:
        """Whether the trial's newest step is the first it logged in its
        interval (steps a script skips still count)."""
        step = trial.steps[-1]
        if step < self.warmup:
            return False
        if self.interval == 1:
            return True
        slot = (step - self.warmup) // self.interval
        earlier = [s for s in trial.steps[:-1] if s >= self.warmup]
        return not earlier or (earlier[-1] - self.warmup) // self.interval < slot

    def should_prune(self, trial, trials):
        from guild_core.pruning import Prune

        completed = [t for t in trials.values() if t.completed and t.id != trial.id]
        if len(completed) < max(self.startup, 1) or not self._judged_step(trial):
            return None
        step = trial.steps[-1]
        others = [v for v in (t.value_at(step) for t in completed) if v is not None]
        if len(others) < self.min_trials:
            return None
        median = _median(others)
        best = min(trial.values) if self.minimize else max(trial.values)
        worse = best > median if self.minimize else best < median
        if not worse:
            return None
        return Prune(NAME, median, f"best {best:g} is worse than the median {median:g} of {len(others)} completed trials at step {step}")

    def pruned_value(self, trial, trials):
        from guild_core.pruning import pessimistic_value

        return pessimistic_value(trial, trials, self.minimize)


def _median(vals):
    vals = sorted(vals)
    n = len(vals)
    mid = n // 2
    return vals[mid] if n % 2 else (vals[mid - 1] + vals[mid]) / 2

