"""Train a dispatch policy (MaskablePPO by default) on a scenario; the same as ``lastmile train``.

    python train.py --config configs/experiment/dispatch_ppo.yaml
    python train.py --config configs/experiment/smoke.yaml --total-timesteps 2000 algo.learning_rate=1e-4
    python train.py --config configs/experiment/dispatch_ppo.yaml --algo ppo --n-envs 2 env.fleet.size=30
    python train.py --resume runs/default__maskable_ppo__0__20250101-120000
    tensorboard --logdir runs

The experiment config (validated before anything starts) is documented field by field in
``agents/learned/training.py`` (``ExperimentConfig``); the run folder layout there too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from agents.learned.cli import add_train_arguments, run_train
from lastmile_env.cli_errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    """A bad config, scenario, map or checkpoint: one line and exit code 2 (``--debug``: the traceback)."""
    parser = add_train_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    return run_cli(lambda args: run_train(parser.parse_args(args)), argv, "train.py")


if __name__ == "__main__":
    raise SystemExit(main())
