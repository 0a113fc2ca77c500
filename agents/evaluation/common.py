"""What every part of the evaluator shares: the input error, the episode row's columns and the metrics
that the summaries compare."""

from __future__ import annotations

from lastmile_env.config import ConfigError
from lastmile_env.sim.types import MODES

CONFIDENCE = 0.95

# Outcomes of a day beyond cost and on-time rate (the realism options add most), in rows and summaries.
_OUTCOME_METRICS = (
    "eta_abs_error_min",
    "eta_live_abs_error_min",
    "on_time_rate_same_day",
    "on_time_rate_window",
    "on_time_rate_express",
    "revenue",
    "profit",
    "failed_attempts",
    "delivered_pickup_point",
    "failed",
    "on_time_rate_return",
    *(f"{what}_{mode}" for what in ("delivered", "km") for mode in MODES),
)
EPISODE_COLUMNS = (
    "scenario",
    "policy",
    "episode",
    "seed",
    "on_time_rate",
    "cost",
    "cost_per_delivered",
    "distance_km",
    "late_minutes",
    "rejected",
    "delivered",
    "orders",
    *_OUTCOME_METRICS,
    "hindsight_cost",
    "hindsight_gap",
    "wall_s",
)
# Metrics summarized per policy (mean and CI), and those also compared pairwise against the reference.
SUMMARY_METRICS = (
    "on_time_rate",
    "cost",
    "cost_per_delivered",
    "distance_km",
    "rejected",
    "late_minutes",
    *_OUTCOME_METRICS,
    "hindsight_gap",
    "wall_s",
)
PAIRED_METRICS = ("cost", "cost_per_delivered", "on_time_rate")


class EvaluationError(ConfigError):
    """Bad evaluation input (unknown policy or suite, bad episode count...); raised before any work."""
