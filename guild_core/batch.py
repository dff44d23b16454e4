"""Batches: the context optimizers receive, and the batch driver.

Search-space values (`BatchContext.space`) are one of:

- a fixed value: ``0.1``, ``"adam"``;
- a list of choices: ``[1, 2, 3]``;
- a search function as ``(name, args)``: ``("uniform", (0.0, 1.0))``,
  ``("loguniform", (1e-5, 1e-1))``. Bounds are numbers, ``low < high``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .flagdefs import FlagDef


@dataclass
class BatchContext:
    """What an optimizer is told about the batch it serves (see
    `guild_core.hookspecs.BatchContext` for the documented protocol)."""

    space: dict[str, Any]
    flagdefs: dict[str, FlagDef] = field(default_factory=dict)
    opt_flags: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    objective: str = "loss"
    minimize: bool = True
    max_trials: int = 20
