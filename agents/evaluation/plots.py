"""Figures of an EvaluationResult: the metric bars with their confidence intervals, and the mid-shift route
map."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.evaluation.reports import EvaluationResult

_PLOTTED = (
    ("on_time_rate", "on-time rate (%)", 100.0),
    ("cost", "cost per day", 1.0),
    ("cost_per_delivered", "cost per delivered order", 1.0),
    ("distance_km", "distance (km)", 1.0),
    ("rejected", "rejected orders", 1.0),
    ("hindsight_gap", "gap to hindsight (%)", 100.0),
)


def _plot_metrics(result: EvaluationResult, path: Path) -> None:
    """One bar panel per metric: the mean of each policy with its 95% CI as an error bar."""
    from matplotlib.figure import Figure

    panels = [p for p in _PLOTTED if p[0] != "hindsight_gap" or result.hindsight_computed]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    n = len(result.policies)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.4), dpi=100, layout="constrained")
    fig.suptitle(f"{result.scenario}: {result.episodes} paired episodes, mean and 95% CI")
    colours = [f"C{i % 10}" for i in range(n)]
    for k, (metric, label, scale) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        stats = [result.summary[p]["metrics"][metric] for p in result.policies]
        means = [s["mean"] * scale for s in stats]
        errs = [s["half_width"] * scale if math.isfinite(s["half_width"]) else 0.0 for s in stats]
        ax.bar(range(n), means, yerr=errs, color=colours, capsize=4, edgecolor="black", linewidth=0.5)
        ax.set_xticks(range(n), result.policies, rotation=30, ha="right")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.savefig(path)


def _plot_route_map(result: EvaluationResult, path: Path) -> None:
    """The captured mid-shift frame with a caption naming the policy and the day."""
    from matplotlib.figure import Figure

    assert result.route_map is not None
    height, width = result.route_map.shape[:2]
    fig = Figure(figsize=(width / 100, height / 100 + 0.4), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + 40)))
    ax.imshow(result.route_map)
    ax.set_axis_off()
    fig.suptitle(
        f"{result.scenario}: policy {result.route_map_policy}, episode 0 (seed {result.seed}), mid-shift",
        y=0.995,
        va="top",
    )
    fig.savefig(path)
