"""The cost of an env reset: seeded ``reset`` of the dispatch env, in microseconds.

    python benchmarks/reset_cost.py [--scenario default] [--resets 100] [--rounds 7]

A reset draws the day's orders, builds the fleet and the event queue and plays up to the first decision
(``env.unwrapped.reset(seed=s)`` for seeds 0, 1, ...). Time: the minimum and the median over ``--rounds``
rounds of ``--resets`` resets, after a warm-up. The same resets' instructions, a figure the machine's load
does not move: ``python benchmarks/instructions.py --scenarios default --resets 50``. To compare two
revisions, run the scripts on each (``git worktree`` or ``git archive``) back to back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence


def reset_times_us(scenario: str, resets: int, rounds: int) -> list[float]:
    """Microseconds per seeded reset, one figure per round."""
    import gymnasium as gym

    import lastmile_env  # noqa: F401  (registers the env)

    env = gym.make("LastMile-Dispatch-v0", scenario=scenario).unwrapped
    for seed in range(1000, 1010):
        env.reset(seed=seed)
    figures = []
    for _ in range(rounds):
        started = time.perf_counter()
        for seed in range(resets):
            env.reset(seed=seed)
        figures.append((time.perf_counter() - started) / resets * 1e6)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--resets", type=int, default=100, help="timed resets per round (default 100)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    args = parser.parse_args(argv)
    if min(args.resets, args.rounds) < 1:
        print("reset_cost.py: --resets and --rounds must be at least 1", file=sys.stderr)
        return 2
    from lastmile_env.config import available_scenarios

    if args.scenario not in available_scenarios():
        valid = ", ".join(available_scenarios())
        print(f"reset_cost.py: unknown scenario {args.scenario!r}; valid: {valid}", file=sys.stderr)
        return 2
    figures = reset_times_us(args.scenario, args.resets, args.rounds)
    print(
        f"{args.scenario}: {min(figures):.1f} us per reset (min of {args.rounds} rounds of {args.resets}), "
        f"median {statistics.median(figures):.1f} us"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
