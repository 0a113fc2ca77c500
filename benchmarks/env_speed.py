"""Decision steps per second of the dispatch env under a random masked policy, next to CartPole-v1.

    python benchmarks/env_speed.py [--repeats 3] [--steps 3000] [--out benchmarks/results/env_speed.md]

Each figure is the median of ``--repeats`` runs of ``--steps`` decisions (episodes restarted with new seeds
as they end), single process; CartPole runs in the same process, so the ratio is measured in one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np

import lastmile_env  # noqa: F401  (registers LastMile-Dispatch-v0)


def steps_per_second(env: gym.Env, steps: int, seed: int, masked: bool) -> float:
    """Steps per second of a uniformly random (masked) policy, resets included."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode = 0
    started = time.perf_counter()
    for _ in range(steps):
        if masked:
            action = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        else:
            action = int(env.action_space.sample())
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    return steps / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--scenarios", default="small,default,aguascalientes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/env_speed.md"))
    args = parser.parse_args(argv)

    cartpole = gym.make("CartPole-v1")
    cartpole.action_space.seed(0)
    cartpole_rate = statistics.median(
        steps_per_second(cartpole, args.steps * 10, r, masked=False) for r in range(args.repeats)
    )
    rows = [("CartPole-v1 (gymnasium)", "-", "-", cartpole_rate)]
    for name in args.scenarios.split(","):
        env = gym.make("LastMile-Dispatch-v0", scenario=name)
        env.reset(seed=0)  # builds the world (and compiles the kernels) outside the timing
        world = env.unwrapped.world  # type: ignore[attr-defined]
        rate = statistics.median(
            steps_per_second(env, args.steps, r, masked=True) for r in range(args.repeats)
        )
        rows.append((f"LastMile-Dispatch-v0 `{name}`", world.n_vehicles, world.graph.number_of_nodes(), rate))

    lines = [
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"median of {args.repeats} runs of {args.steps} decisions (CartPole: {args.steps * 10} steps).",
        "",
        "| env | vehicles | graph nodes | steps/s | vs CartPole |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, vehicles, nodes, rate in rows:
        lines.append(f"| {label} | {vehicles} | {nodes} | {rate:,.0f} | {rate / cartpole_rate:.3f} |")
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/env_speed.py " + " ".join(
        f"--{k} {v}" for k, v in (("repeats", args.repeats), ("steps", args.steps))
    )
    args.out.write_text(f"# Env decision steps per second\n\nCommand: `{command}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
