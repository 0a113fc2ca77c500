"""The training command line, shared by ``python train.py`` and ``lastmile train``.

Only argparse here: torch and SB3 are imported when a run starts, not when the ``lastmile`` parser is built.
"""

from __future__ import annotations

import argparse
from typing import Any

from lastmile_env.cli_errors import DEBUG_HELP
from lastmile_env.config import REPO_ROOT, ConfigError

DEFAULT_CONFIG = REPO_ROOT / "configs" / "experiment" / "dispatch_ppo.yaml"


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of a training run (see ``run_train``)."""
    parser.add_argument(
        "--config", default=None, help=f"experiment YAML (default: {DEFAULT_CONFIG.relative_to(REPO_ROOT)})"
    )
    parser.add_argument("--total-timesteps", type=int, help="env steps to train for (overrides the config)")
    parser.add_argument("--n-envs", type=int, help="parallel envs (overrides the config)")
    parser.add_argument("--seed", type=int, help="seed (overrides the config)")
    parser.add_argument(
        "--algo", choices=["maskable_ppo", "ppo", "a2c"], help="algorithm (overrides the config)"
    )
    parser.add_argument("--runs-dir", default="runs", help="where new run folders go (default: runs)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue this run from its last complete checkpoint (only --total-timesteps may change)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="config overrides: algo.learning_rate=1e-4, eval.every=5000, env.fleet.size=30 (scenario)",
    )
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Start (or with ``--resume`` continue) a run; ConfigError for a bad config, before any training."""
    from agents.learned import training

    progress = not args.no_progress
    if args.resume:
        changed = _given(
            ("--config", args.config),
            ("--n-envs", args.n_envs),
            ("--seed", args.seed),
            ("--algo", args.algo),
            ("overrides", args.overrides or None),
        )
        if changed:
            raise ConfigError(
                f"--resume continues the run's saved config; only --total-timesteps may change, got {changed}"
            )
        training.resume(args.resume, total_timesteps=args.total_timesteps, progress=progress)
        return 0
    if args.config and _is_epoch_config(args.config):
        return _train_epoch_policy(args, progress)
    exp = training.load_experiment(
        args.config or DEFAULT_CONFIG,
        args.overrides,
        total_timesteps=args.total_timesteps,
        n_envs=args.n_envs,
        seed=args.seed,
        **{"algo.name": args.algo},
    )
    training.train(exp, runs_dir=args.runs_dir, progress=progress)
    return 0


def _given(*options: tuple[str, Any]) -> list[str]:
    """The names of the ``(name, value)`` options the command line gave (value not None)."""
    return [name for name, value in options if value is not None]


def _is_epoch_config(path: str) -> bool:
    from agents.learned.epoch_training import is_epoch_config

    return is_epoch_config(path)


def _train_epoch_policy(args: argparse.Namespace, progress: bool) -> int:
    """``task: euro2022_epoch``: the learned wave policy by imitation of hindsight (no RL options apply)."""
    from agents.learned.epoch_training import run_epoch_training

    ignored = _given(
        ("--total-timesteps", args.total_timesteps),
        ("--n-envs", args.n_envs),
        ("--algo", args.algo),
        ("overrides", args.overrides or None),
    )
    if ignored:
        raise ConfigError(
            f"{args.config} (task: euro2022_epoch) is trained by imitation: {ignored} do not apply"
        )
    run_epoch_training(args.config, args.runs_dir, seed=args.seed, progress=progress)
    return 0
