"""Learning curves of one training run, read from its TensorBoard events.

    python experiments/plot_training.py RUN_DIR OUT.png

Left: cost per delivered order of every training episode (and a 10-episode rolling mean), the greedy
policy on the fixed evaluation days, and the insertion baseline on the same days. Right: the on-time rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

WINDOW = 10


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    events = EventAccumulator(str(args.run_dir))
    events.Reload()

    def series(tag: str) -> tuple[np.ndarray, np.ndarray]:
        points = events.Scalars(tag)
        return np.array([p.step for p in points]), np.array([p.value for p in points])

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, scale, label in (
        (axes[0], "cost_per_delivered", 1.0, "cost per delivered order"),
        (axes[1], "on_time_rate", 100.0, "on-time rate (%)"),
    ):
        steps, values = series(f"charts/{metric}")
        ax.plot(steps, scale * values, alpha=0.25, color="C0", label="training episode")
        if len(values) >= WINDOW:
            rolling = np.convolve(values, np.ones(WINDOW) / WINDOW, mode="valid")
            ax.plot(steps[WINDOW - 1 :], scale * rolling, color="C0", label=f"rolling mean ({WINDOW})")
        _, baseline = series(f"eval/insertion_{metric}")
        ax.axhline(scale * float(baseline[-1]), color="C3", ls="--", label="insertion (eval days)")
        eval_steps, learned = series(f"eval/learned_{metric}")
        ax.plot(eval_steps, scale * learned, "o-", color="C2", label="learned, greedy (eval days)")
        ax.set(xlabel="env steps", ylabel=label)
        ax.legend(fontsize=8)
    axes[0].set_ylim(0, 2 * float(series("eval/insertion_cost_per_delivered")[1][-1]))  # cut the first spike
    fig.suptitle(args.run_dir.name)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)


if __name__ == "__main__":
    main()
