"""Learning curves of one training run (dispatch or routing), read from its TensorBoard events.

    python experiments/plot_training.py RUN_DIR OUT.png [--baseline insertion]

Left: cost per delivered order of every training episode (the stochastic policy) with a 10-episode rolling
mean, the greedy (argmax) policy on the fixed evaluation days, and the run's baseline on the same days
(``eval.baseline``: ``insertion`` for dispatch runs, ``planned`` for routing runs). Right: the on-time rate.

A run with randomized load (``load.enabled``; its episodes' costs differ by load, not by learning) gets one
panel instead: the greedy policy's cost per delivered relative to the baseline at each evaluation load,
and their mean (the number that chose ``best.zip``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

WINDOW = 10


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--baseline", default="insertion", help="the run's eval.baseline")
    args = parser.parse_args()
    events = EventAccumulator(str(args.run_dir))
    events.Reload()

    def series(tag: str) -> tuple[np.ndarray, np.ndarray]:
        points = events.Scalars(tag)
        return np.array([p.step for p in points]), np.array([p.value for p in points])

    load_tags = sorted(
        t
        for t in events.Tags()["scalars"]
        if t.count("/") == 2 and t.startswith("eval/") and t.endswith("/relative_cost_per_delivered")
    )
    if load_tags:
        plot_across_loads(args.run_dir, args.out, args.baseline, load_tags, series)
        return

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, scale, label in (
        (axes[0], "cost_per_delivered", 1.0, "cost per delivered order"),
        (axes[1], "on_time_rate", 100.0, "on-time rate (%)"),
    ):
        steps, values = series(f"charts/{metric}")
        ax.plot(steps, scale * values, color="0.75", lw=0.8, label="training episodes")
        if len(values) >= WINDOW:
            rolling = np.convolve(values, np.ones(WINDOW) / WINDOW, mode="valid")
            ax.plot(steps[WINDOW - 1 :], scale * rolling, color="C0", label=f"{WINDOW}-episode mean")
        eval_steps, learned = series(f"eval/learned_{metric}")
        ax.plot(eval_steps, scale * learned, "o-", color="C2", label="learned, eval days (argmax)")
        _, baseline = series(f"eval/{args.baseline}_{metric}")
        ax.axhline(scale * float(baseline[-1]), color="C3", ls="--", label=f"{args.baseline} (eval days)")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
        ax.set(xlabel="env steps (decisions)", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_ylim(0, 2 * float(series(f"eval/{args.baseline}_cost_per_delivered")[1][-1]))  # cut the spike
    fig.suptitle(args.run_dir.name, fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


def plot_across_loads(
    run_dir: Path,
    out: Path,
    baseline: str,
    tags: list[str],
    series: Callable[[str], tuple[np.ndarray, np.ndarray]],
) -> None:
    """A randomized-load run: relative cost per delivered vs the baseline at each evaluation load."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for tag in tags:
        steps, values = series(tag)
        load = tag.split("/")[1]  # e.g. 5v_x1: 5 vehicles, 1x the orders
        ax.plot(steps, 100 * values, "o-", lw=1, label=load.replace("v_x", " vans, x"))
    steps, mean = series("eval/relative_cost_per_delivered")
    ax.plot(steps, 100 * mean, "s-", color="k", lw=2, label="mean (chooses best.zip)")
    ax.axhline(0, color="C3", ls="--", label=baseline)
    ax.set_ylim(-60, 60)  # a collapsed policy (rejecting everything) is far above: cut
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
    ax.set(xlabel="env steps (decisions)", ylabel=f"cost/delivered vs {baseline} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
