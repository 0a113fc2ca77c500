"""Invariant soak: random masked steps on both envs across the shipped scenarios, invariants checked after
every simulator event (``debug=True``); any violation stops the run with the scenario, seed and step.

    python benchmarks/soak.py                          # 1,000,000 steps per env (hours on the 2-core box)
    python benchmarks/soak.py --steps 20000 --scenarios small,default,peak --out benchmarks/results/soak.md

Steps are spread evenly over the scenarios; each scenario plays seeded episodes (seed 0, 1, ...) with a
seeded random choice among the valid actions, so a failure replays exactly. Prints (and with ``--out``
writes) a table of steps, episodes and seconds per env and scenario.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from lastmile_env.config import available_scenarios  # noqa: E402
from lastmile_env.env import DispatchEnv  # noqa: E402
from lastmile_env.routing_env import RoutingEnv  # noqa: E402

ENVS = {"dispatch": DispatchEnv, "routing": RoutingEnv}


def soak(env_name: str, scenario: str, steps: int, seed: int) -> tuple[int, int, float]:
    """``steps`` random masked steps on a fresh env; returns (steps, episodes started, seconds)."""
    env = ENVS[env_name](scenario, debug=True, invalid_action="raise")
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    episode, done_steps = seed * 1_000_000, 0
    env.reset(seed=episode)
    episodes = 1
    while done_steps < steps:
        valid = np.flatnonzero(env.action_masks())
        try:
            _, _, terminated, truncated, _ = env.step(int(rng.choice(valid)))
        except Exception as exc:
            raise SystemExit(
                f"soak: {env_name} on {scenario}, episode seed {episode}, step {done_steps}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        done_steps += 1
        if terminated or truncated:
            episode += 1
            episodes += 1
            env.reset(seed=episode)
    return done_steps, episodes, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1_000_000, help="steps per env, over all scenarios")
    parser.add_argument("--scenarios", default=",".join(available_scenarios()), help="comma-separated")
    parser.add_argument("--envs", default="dispatch,routing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="a Markdown record to write")
    args = parser.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    envs = [e for e in args.envs.split(",") if e]
    # The steps split over the scenarios, the remainder to the first ones: exactly --steps per env.
    share, extra = divmod(args.steps, len(scenarios))
    per_scenario = {sc: max(1, share + (k < extra)) for k, sc in enumerate(scenarios)}
    load_before = os.getloadavg()[0]
    command = "python benchmarks/soak.py " + " ".join(sys.argv[1:])
    rows: list[str] = []
    totals: dict[str, tuple[int, float]] = {}
    for env_name in envs:
        for scenario in scenarios:
            steps, episodes, seconds = soak(env_name, scenario, per_scenario[scenario], args.seed)
            rate = steps / seconds
            rows.append(f"| {env_name} | {scenario} | {steps:,} | {episodes} | {seconds:.0f} | {rate:,.0f} |")
            print(rows[-1], flush=True)
            done_steps, done_s = totals.get(env_name, (0, 0.0))
            totals[env_name] = (done_steps + steps, done_s + seconds)
            if args.out is not None:  # after every scenario: a run stopped early keeps what it checked
                args.out.write_text(_record(command, load_before, rows, totals, finished=False))
    if args.out is not None:
        args.out.write_text(_record(command, load_before, rows, totals, finished=True))
    print("\n".join(f"{name}: {n:,} steps in {s:.0f} s." for name, (n, s) in totals.items()))


def _record(
    command: str, load_before: float, rows: list[str], totals: dict[str, tuple[int, float]], finished: bool
) -> str:
    """The Markdown record of the rows soaked so far."""
    status = "" if finished else " **Still running (or stopped) when written: the rows below are complete.**"
    lines = [
        "# Invariant soak",
        "",
        f"`{command}`: random masked actions, `debug=True` (invariants after every event), no violation."
        + status,
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load_before:.2f} before the "
        f"run ({os.getloadavg()[0]:.2f} when written; other processes share the CPUs).",
        "",
        "| env | scenario | steps | episodes | seconds | steps/s |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        *(f"{name}: {steps:,} steps in {seconds:.0f} s." for name, (steps, seconds) in totals.items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
