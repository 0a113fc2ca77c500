"""How long PyVRP searches: an iteration count by default, wall-clock seconds only when asked.

An iteration budget makes a solver's answer depend only on its input and seed, so ``reopt``,
``reopt_route`` and the hindsight bound give the same numbers on any machine, under any load and with
any number of evaluation workers. A wall-clock budget (``time_limit_s``) is faster to reason about in
seconds but makes the result depend on the machine's speed and on what else it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyvrp.stop import MaxIterations, MaxRuntime, StoppingCriterion


@dataclass(frozen=True)
class SolverBudget:
    """PyVRP's stopping rule: exactly one of ``max_iterations`` (reproducible) or ``time_limit_s``."""

    max_iterations: int | None = None
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        if (self.max_iterations is None) == (self.time_limit_s is None):
            raise ValueError("a solver budget is either a number of iterations or a time limit, not both")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError(f"the solver's iterations must be >= 1, got {self.max_iterations}")
        if self.time_limit_s is not None and not (self.time_limit_s > 0 and math.isfinite(self.time_limit_s)):
            raise ValueError(f"the solver's time limit must be > 0 s, got {self.time_limit_s}")

    @classmethod
    def of(
        cls, max_iterations: int | None, time_limit_s: float | None, default_iterations: int
    ) -> SolverBudget:
        """The budget a caller asked for: iterations, or seconds, or (neither) ``default_iterations``."""
        if max_iterations is None and time_limit_s is None:
            return cls(max_iterations=default_iterations)
        if max_iterations is not None and time_limit_s is not None:
            raise ValueError(
                f"give the solver either max_iterations ({max_iterations}) or a time limit "
                f"({time_limit_s} s), not both"
            )
        return cls(max_iterations, time_limit_s)

    @property
    def deterministic(self) -> bool:
        """Whether the solver's answer depends only on its input and seed (an iteration budget)."""
        return self.max_iterations is not None

    def criterion(self) -> StoppingCriterion:
        """A fresh PyVRP stopping criterion (they keep state: one per solve)."""
        if self.max_iterations is not None:
            return MaxIterations(self.max_iterations)
        assert self.time_limit_s is not None
        return MaxRuntime(self.time_limit_s)

    def describe(self) -> str:
        """E.g. ``500 iterations`` or ``2 s wall-clock (not reproducible across machines)``."""
        if self.max_iterations is not None:
            return f"{self.max_iterations} iterations"
        return f"{self.time_limit_s:g} s wall-clock (not reproducible across machines)"
