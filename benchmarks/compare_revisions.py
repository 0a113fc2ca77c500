"""Env speed of two git revisions, measured in the same run: before / after of a change.

    python benchmarks/compare_revisions.py d98e672 HEAD [--scenarios small,default] [--rounds 3]

Each revision is exported (``git archive``) to a temporary folder and measured in a fresh process with that
folder first on ``PYTHONPATH`` (this venv's packages otherwise), the two revisions alternating for
``--rounds`` rounds. Each process measures CartPole-v1 too, so every figure comes with its ratio to
CartPole measured in the same process; the table gives the medians over the rounds of steps/s and of the
ratio, and after / before. Runs are whole days of a random masked policy (as the suite's speed section).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import json, statistics, sys, time
import gymnasium as gym, numpy as np
import lastmile_env
def rate(env, steps, seed, masked):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode = done = 0
    started = clock()
    while done < steps or (masked and episode == 0):
        if masked:
            action = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        else:
            action = int(env.action_space.sample())
        obs, _, terminated, truncated, _ = env.step(action)
        done += 1
        if terminated or truncated:
            episode += 1
            if masked and done >= steps:
                break
            obs, _ = env.reset(seed=seed + episode)
    return done / (clock() - started)
steps, repeats = int(sys.argv[1]), int(sys.argv[2])
clock = time.process_time if sys.argv[3] == "cpu" else time.perf_counter
cartpole = gym.make("CartPole-v1")
cartpole.action_space.seed(0)
rate(cartpole, 1000, 0, False)
out = {"module": lastmile_env.__file__, "cartpole": statistics.median(
    rate(cartpole, steps * 10, r, False) for r in range(repeats))}
for name in sys.argv[4:]:
    env = gym.make("LastMile-Dispatch-v0", scenario=name)
    env.reset(seed=0)
    rate(env, 100, 10_000, True)
    out[name] = statistics.median(rate(env, steps, r, True) for r in range(repeats))
print(json.dumps(out))
"""


def export(revision: str, into: Path) -> Path:
    folder = into / revision.replace("/", "_")
    folder.mkdir()
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def measure(folder: Path, steps: int, repeats: int, scenarios: list[str], clock: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps), str(repeats), clock, *scenarios],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=1800,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if not str(found.pop("module")).startswith(str(folder)):
        raise RuntimeError(f"the child did not import lastmile_env from {folder}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--scenarios", default="small,default,aguascalientes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000, help="decisions per run (whole days)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure in each process")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="rates per wall-clock second, or per CPU second of the process (steadier on a loaded machine)",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folders = {rev: export(rev, Path(tmp)) for rev in (args.before, args.after)}
        runs: dict[str, list[dict[str, float]]] = {args.before: [], args.after: []}
        for _ in range(args.rounds):
            for rev, folder in folders.items():
                runs[rev].append(measure(folder, args.steps, args.repeats, scenarios, args.clock))
    load_after = os.getloadavg()

    def med(rev: str, key: str, ratio: bool) -> float:
        return statistics.median(r[key] / r["cartpole"] if ratio else r[key] for r in runs[rev])

    lines = [
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; {args.rounds} rounds "
        f"alternating the revisions, medians over the rounds; rates per {args.clock} second.",
        "",
        f"| env | `{args.before}` steps/s | `{args.after}` steps/s | after / before | "
        f"`{args.before}` vs CartPole | `{args.after}` vs CartPole | after / before (ratios) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("cartpole", *scenarios):
        b, a = med(args.before, key, False), med(args.after, key, False)
        rb, ra = med(args.before, key, True), med(args.after, key, True)
        label = "CartPole-v1" if key == "cartpole" else f"`{key}`"
        lines.append(f"| {label} | {b:,.0f} | {a:,.0f} | {a / b:.2f} | {rb:.4f} | {ra:.4f} | {ra / rb:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        command = (
            f"python benchmarks/compare_revisions.py {args.before} {args.after} --scenarios {args.scenarios} "
            f"--clock {args.clock} --rounds {args.rounds}"
        )
        args.out.write_text(f"# Env speed: before / after\n\nCommand: `{command}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
