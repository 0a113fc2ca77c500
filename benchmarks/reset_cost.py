"""The cost of an env reset: seeded ``reset`` of the dispatch env, in microseconds and in instructions.

    python benchmarks/reset_cost.py [--scenario default] [--resets 100] [--rounds 7] [--instructions 50]

A reset draws the day's orders, builds the fleet and the event queue and plays up to the first decision
(``env.unwrapped.reset(seed=s)`` for seeds 0, 1, ...). Time: the minimum and the median over ``--rounds``
rounds of ``--resets`` resets, after a warm-up. Instructions (``--instructions N``, needs valgrind): N resets
counted by callgrind in a child process (``--instr-atstart=no``, switched on around the resets, as
``instructions.py`` does), a figure the machine's load does not move. To compare two revisions, run this
script on each (``git worktree`` or ``git archive``) back to back.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import os, subprocess, sys
import gymnasium as gym
import lastmile_env  # noqa: F401
scenario, resets = sys.argv[1], int(sys.argv[2])
env = gym.make("LastMile-Dispatch-v0", scenario=scenario).unwrapped
for seed in range(1000, 1005):
    env.reset(seed=seed)
control = ["callgrind_control", "-i"]
subprocess.run([*control, "on", str(os.getpid())], check=True, capture_output=True)
for seed in range(resets):
    env.reset(seed=seed)
subprocess.run([*control, "off", str(os.getpid())], check=True, capture_output=True)
"""


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


def reset_instructions(scenario: str, resets: int) -> float:
    """Instructions per seeded reset, counted by callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        run = subprocess.run(
            [*valgrind, sys.executable, "-c", CHILD, scenario, str(resets)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        tail = run.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the counted run failed (exit {run.returncode}): {tail[0]}")
    return int(found.group(1)) / resets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--resets", type=int, default=100, help="timed resets per round (default 100)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--instructions", type=int, default=0, help="also count N resets with callgrind")
    args = parser.parse_args(argv)
    if min(args.resets, args.rounds) < 1 or args.instructions < 0:
        print(
            "reset_cost.py: --resets and --rounds must be at least 1, --instructions 0 or more",
            file=sys.stderr,
        )
        return 2
    from lastmile_env.config import available_scenarios

    if args.scenario not in available_scenarios():
        valid = ", ".join(available_scenarios())
        print(f"reset_cost.py: unknown scenario {args.scenario!r}; valid: {valid}", file=sys.stderr)
        return 2
    if args.instructions and shutil.which("callgrind_control") is None:
        print("reset_cost.py: valgrind not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    figures = reset_times_us(args.scenario, args.resets, args.rounds)
    print(
        f"{args.scenario}: {min(figures):.1f} us per reset (min of {args.rounds} rounds of {args.resets}), "
        f"median {statistics.median(figures):.1f} us"
    )
    if args.instructions:
        try:
            per_reset = reset_instructions(args.scenario, args.instructions)
        except RuntimeError as error:
            print(f"reset_cost.py: {error}", file=sys.stderr)
            return 1
        counted = f"{args.instructions} resets, callgrind"
        print(f"{args.scenario}: {per_reset:,.0f} instructions per reset ({counted})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
