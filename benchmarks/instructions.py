"""Instructions per env step, counted by valgrind's callgrind: a speed figure that the machine's load and
speed drift do not move.

    python benchmarks/instructions.py [--scenarios small,default,large] [--steps 300] [--out FILE]

This VM's speed drifts by up to 1.5x between processes and within one, so two rates measured minutes apart
compare badly even on the CPU clock. An instruction count does not drift: the same code and inputs give the
same count on a loaded or a quiet machine, within ~0.5% (counting is switched on and off asynchronously,
and the first run after an edit of the kernels compiles them for valgrind's CPU during its warm-up). It is
a proxy, not a time: an instruction of the search kernel that misses the cache costs more than one of the
interpreter, so a ratio of counts is not a ratio of times, and the time rows of ``suite.py`` stay the
figures the targets are judged on. Counts are what to compare two revisions by, step for step.

Each env runs in its own process under ``valgrind --tool=callgrind --instr-atstart=no``: it is built and
warmed up (150 decisions of another day), then counting is switched on (``callgrind_control -i on``) for
``--steps`` steps of day 0 (CartPole-v1: random actions; the dispatch env: a uniformly random valid action,
drawn as the argmax of random keys over the mask, resets included), then off. Those are the first decisions
of the day (a morning of ``large``, whose plans are longest later): a figure to compare revisions by, step
for step, not scenarios. ``PYTHONHASHSEED=0``. Needs
valgrind (Debian: ``apt-get install valgrind``); a run takes about a minute per env.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import os, subprocess, sys
import gymnasium as gym
import numpy as np
import lastmile_env  # noqa: F401
name, steps = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
if name == "CartPole-v1":
    env = gym.make(name)
    env.action_space.seed(0)
    policy = lambda obs: int(env.action_space.sample())
else:
    env = gym.make("LastMile-Dispatch-v0", scenario=name)
    def policy(obs):
        mask = obs["action_mask"]
        return int(np.argmax(rng.random(mask.shape[0]) * mask))
obs, _ = env.reset(seed=9)
for _ in range(150):
    obs, _, terminated, truncated, _ = env.step(policy(obs))
    if terminated or truncated:
        obs, _ = env.reset(seed=9)
obs, _ = env.reset(seed=0)
control = ["callgrind_control", "-i"]
subprocess.run([*control, "on", str(os.getpid())], check=True, capture_output=True)
for _ in range(steps):
    obs, _, terminated, truncated, _ = env.step(policy(obs))
    if terminated or truncated:
        obs, _ = env.reset(seed=1)
subprocess.run([*control, "off", str(os.getpid())], check=True, capture_output=True)
"""
# ``--resets``: a seeded reset draws the day's orders, builds the fleet and the event queue and plays up to
# the first decision (the env unwrapped: no wrapper's checks)
RESET_CHILD = """
import os, subprocess, sys
import gymnasium as gym
import lastmile_env  # noqa: F401
name, resets = sys.argv[1], int(sys.argv[2])
env = gym.make("LastMile-Dispatch-v0", scenario=name).unwrapped
for seed in range(1000, 1005):
    env.reset(seed=seed)
control = ["callgrind_control", "-i"]
subprocess.run([*control, "on", str(os.getpid())], check=True, capture_output=True)
for seed in range(resets):
    env.reset(seed=seed)
subprocess.run([*control, "off", str(os.getpid())], check=True, capture_output=True)
"""


def callgrind(child: str, name: str, n: int, python: str = sys.executable) -> int:
    """The instructions ``child`` (a script run as ``python -c child name n``) counts between switching
    callgrind's counting on and off."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        run = subprocess.run(
            [*valgrind, python, "-c", child, name, str(n)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        tail = run.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{name}: the counted run failed (exit {run.returncode}): {tail[0]}")
    return int(found.group(1))


def count(name: str, steps: int, python: str = sys.executable) -> float:
    """Instructions per step of env ``name`` (``CartPole-v1`` or a lastmile scenario) over ``steps`` steps."""
    return callgrind(CHILD, name, steps, python) / steps


def count_resets(name: str, resets: int, python: str = sys.executable) -> float:
    """Instructions per seeded reset of scenario ``name`` (seeds 0 .. ``resets`` - 1, after five others)."""
    return callgrind(RESET_CHILD, name, resets, python) / resets


def table(counts: dict[str, float], steps: int) -> str:
    base = counts["CartPole-v1"]
    lines = [
        "| env | instructions per step | CartPole-v1's / this env's |",
        "|---|---:|---:|",
    ]
    for name, per_step in counts.items():
        label = name if name == "CartPole-v1" else f"`{name}`"
        lines.append(f"| {label} | {per_step:,.0f} | {base / per_step:.4f} |")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp}; {steps} steps per env after a warm-up; callgrind, `PYTHONHASHSEED=0`.\n\n" + "\n".join(
        lines
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default="small,default,large", help="comma-separated scenario names")
    parser.add_argument("--steps", type=int, default=300, help="counted steps per env (default 300)")
    parser.add_argument("--resets", type=int, default=0, help="also count N seeded resets per scenario")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.resets < 0:
        print(
            f"instructions.py: --steps must be at least 1 and --resets 0 or more, got {args.steps} and "
            f"{args.resets}",
            file=sys.stderr,
        )
        return 2
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(
            f"instructions.py: {' and '.join(missing)} not found (Debian: apt-get install valgrind)",
            file=sys.stderr,
        )
        return 2
    from lastmile_env.config import available_scenarios  # after the checks: imports the package

    names = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in names if s not in available_scenarios()]
    if unknown or not names:
        valid = ", ".join(available_scenarios())
        print(
            f"instructions.py: unknown scenario(s) {', '.join(unknown) or '(none)'}; valid: {valid}",
            file=sys.stderr,
        )
        return 2
    try:
        counts = {name: count(name, args.steps) for name in ["CartPole-v1", *names]}
        resets = {name: count_resets(name, args.resets) for name in names} if args.resets else {}
    except RuntimeError as error:
        print(f"instructions.py: {error}", file=sys.stderr)
        return 1
    text = table(counts, args.steps)
    if resets:
        rows = "\n".join(f"| `{name}` | {per_reset:,.0f} |" for name, per_reset in resets.items())
        header = "| env | instructions per reset |\n|---|---:|"
        text += f"\n\n{args.resets} seeded resets per scenario:\n\n{header}\n{rows}"
    print(text)
    if args.out is not None:
        command = "python benchmarks/instructions.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.write_text(f"# Instructions per step\n\nCommand: `{command.strip()}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
