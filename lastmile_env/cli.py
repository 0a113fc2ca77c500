"""The ``lastmile`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from lastmile_env.config import ConfigError, load_scenario, parse_overrides


def _scenario_overrides(items: Sequence[str]) -> dict[str, object]:
    """CLI overrides address the scenario as ``env.<field>``: ``env.fleet.size=30``."""
    parsed = parse_overrides(items)
    out = {}
    for key, value in parsed.items():
        if not key.startswith("env."):
            raise ConfigError(
                f"override {key!r}: scenario overrides start with 'env.' (e.g. env.fleet.size=30)"
            )
        out[key.removeprefix("env.")] = value
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    """Run episodes of a scenario with a random masked policy and print on-time rate and cost."""
    import gymnasium as gym

    config = load_scenario(args.scenario, _scenario_overrides(args.overrides))
    env = gym.make("LastMile-Dispatch-v0", scenario=config)
    rng = np.random.default_rng(args.seed)
    print(f"scenario {config.name}: {config.description}")
    for episode in range(args.episodes):
        started = time.perf_counter()
        env.reset(seed=args.seed + episode)
        steps, done = 0, False
        while not done:
            valid = np.flatnonzero(env.unwrapped.action_masks())  # type: ignore[attr-defined]
            _, _, terminated, truncated, _ = env.step(int(rng.choice(valid)))
            steps += 1
            done = terminated or truncated
        elapsed = time.perf_counter() - started
        s = env.unwrapped.sim.summary()  # type: ignore[attr-defined]
        print(
            f"episode {episode} (seed {args.seed + episode}, random masked policy): {s['orders']} orders, "
            f"on-time rate {s['on_time_rate']:.1%}, cost {s['cost']:.1f} "
            f"(distance {s['cost_distance']:.1f}, driver time {s['cost_driver_time']:.1f}, "
            f"lateness {s['cost_lateness']:.1f}, rejection {s['cost_rejection']:.1f}), "
            f"{s['rejected']} rejected, {s['distance_km']:.0f} km; {steps / elapsed:.0f} decisions/s"
        )
    env.close()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the repository's ``evaluate.py`` on the arguments after ``evaluate``: one implementation behind
    ``python evaluate.py ...`` and ``lastmile evaluate ...``."""
    import importlib.util

    from lastmile_env.config import REPO_ROOT

    script = REPO_ROOT / "evaluate.py"
    spec = importlib.util.spec_from_file_location("lastmile_evaluate", script)
    if not script.is_file() or spec is None or spec.loader is None:
        print(
            f"lastmile evaluate: {script} not found (run from a checkout of the repository)", file=sys.stderr
        )
        return 2
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(args.argv, prog="lastmile evaluate"))


def cmd_train(args: argparse.Namespace) -> int:
    """Train a dispatch policy: the same code and options as ``python train.py``."""
    from agents.learned.cli import run_train

    return run_train(args)


def _not_yet(issue: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"lastmile {args.command}: not available yet (tracked in {issue})", file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lastmile", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run episodes with a random masked policy; print on-time rate and cost"
    )
    demo.add_argument("--scenario", default="default", help="scenario name or YAML path")
    demo.add_argument("--episodes", type=int, default=1)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("overrides", nargs="*", help="scenario overrides, e.g. env.fleet.size=30")
    demo.set_defaults(func=cmd_demo)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate policies on paired episodes and write a report (python evaluate.py; see -h)",
        add_help=False,
        prefix_chars="\0",  # no options of its own: every argument, -h included, goes on to evaluate.py
    )
    evaluate.add_argument("argv", nargs="*", help="the arguments of evaluate.py")
    evaluate.set_defaults(func=cmd_evaluate)

    from agents.learned.cli import add_train_arguments

    train = sub.add_parser("train", help="train a dispatch policy (MaskablePPO by default); see train.py")
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)

    for name, issue in (
        ("export", "the export and serving issue"),
        ("serve", "the export and serving issue"),
        ("bench", "the benchmark issue"),
    ):
        stub = sub.add_parser(name, help=f"(not available yet: {issue})")
        stub.set_defaults(func=_not_yet(issue))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
