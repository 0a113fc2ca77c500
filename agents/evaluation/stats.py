"""Statistics of paired episodes: means with Student-t confidence intervals, per policy and as paired
differences against a reference policy."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.evaluation.common import CONFIDENCE, PAIRED_METRICS, SUMMARY_METRICS


@dataclass(frozen=True)
class Interval:
    """A sample mean with its two-sided Student-t confidence interval (``half_width`` is nan for n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "ci_low": self.low,
            "ci_high": self.high,
            "half_width": self.half_width,
            "n": self.n,
        }


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of the finite values (nan entries, e.g. no delivery, are
    dropped and not counted in ``n``)."""
    from scipy import stats  # imported here: the pool's workers never need it

    x = np.asarray([float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, 1)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sem
    return Interval(mean, half, n)


def summarize(
    rows: Sequence[Mapping[str, Any]], policies: Sequence[str], reference: str | None
) -> dict[str, Any]:
    """Per policy: mean and CI of each summary metric, and the paired per-episode differences against the
    reference (``vs_reference``: absolute for ``PAIRED_METRICS``, plus ``cost_rel_pct`` in percent)."""
    by_policy = {
        p: sorted((r for r in rows if r["policy"] == p), key=lambda r: r["episode"]) for p in policies
    }
    out: dict[str, Any] = {}
    for policy in policies:
        mine = by_policy[policy]
        entry: dict[str, Any] = {
            "episodes": len(mine),
            "metrics": {m: mean_ci(r[m] for r in mine).to_dict() for m in SUMMARY_METRICS},
            "vs_reference": None,
        }
        if reference is not None and policy != reference:
            ref = by_policy[reference]
            diffs = {m: mean_ci(a[m] - b[m] for a, b in zip(mine, ref, strict=True)) for m in PAIRED_METRICS}
            rel = mean_ci(100.0 * (a["cost"] - b["cost"]) / b["cost"] for a, b in zip(mine, ref, strict=True))
            entry["vs_reference"] = {
                "reference": reference,
                **{m: ci.to_dict() for m, ci in diffs.items()},
                "cost_rel_pct": rel.to_dict(),
            }
        out[policy] = entry
    return out
