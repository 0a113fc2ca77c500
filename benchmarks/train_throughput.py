"""Env steps per second of the shipped training config, and the learner's share of the time.

    python benchmarks/train_throughput.py [--config configs/experiment/dispatch_ppo.yaml] [--steps 5120]
                                          [--repeats 3] [--code PATH] [--clock wall|cpu] [override ...]

Each run trains from scratch exactly as ``train.py`` does (``agents.learned.training.train``: the config's
algorithm, policy, env and seed) for ``--steps`` env steps, with evaluation and intermediate checkpoints
off, in a temporary run folder. The env's ``step`` and ``reset`` are timed from inside (their CPU share is
the env's); the rest of the wall time is the learner's: the policy's forward passes during rollouts, the
gradient epochs, SB3's buffers and callbacks; the gradient updates alone (the algorithm's ``train``) are
printed too: an env and rollouts that cost nothing would leave them, so 1 / their share bounds the speed-up
any env-side change can give. A fresh process per run, so that every run pays the same
imports and compilation outside the timing (``learn`` only is timed). Medians of ``--repeats`` runs; the
machine's load average is printed, as in ``suite.py``. ``--clock cpu`` times with the training process's CPU
time (steadier when other jobs share the cores; the learner runs one torch thread by the config).

The env's time is every call of the env's ``step``, ``reset`` and ``action_masks`` (MaskablePPO's mask
query): ``DispatchEnv``'s, or with ``vector_env=true`` ``DispatchVectorEnv``'s (its batching included, its
sub-envs' calls inside it counted once). SB3's own wrappers (``Monitor``, ``DummyVecEnv``, the SB3 adapter)
count as the learner's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, os, sys, tempfile, time
import lastmile_env
where = os.path.dirname(os.path.dirname(os.path.abspath(lastmile_env.__file__)))
if os.path.realpath(where) != os.path.realpath(sys.argv[5]):
    sys.exit(f"--code {sys.argv[5]}: lastmile_env was imported from {where}, not from there")
from lastmile_env.env import DispatchEnv
from agents.learned import training
try:
    from lastmile_env.vector_env import DispatchVectorEnv
    timed_classes = (DispatchEnv, DispatchVectorEnv)
except ImportError:  # a revision from before the vector env
    timed_classes = (DispatchEnv,)

config, steps, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
spent = [0.0]
depth = [0]  # the vector env's step calls its sub-envs' steps: time the outermost call only
for cls, name in ((cls, name) for cls in timed_classes for name in ("step", "reset", "action_masks")):
    inner = getattr(cls, name)
    def timed(self, *args, _inner=inner, **kwargs):
        if depth[0]:  # inside a call already timed
            return _inner(self, *args, **kwargs)
        depth[0] += 1
        started = clock()
        try:
            return _inner(self, *args, **kwargs)
        finally:
            depth[0] -= 1
            spent[0] += clock() - started
    setattr(cls, name, timed)
took = [0.0]
def timed_learn(inner):
    def learn(self, *args, **kwargs):
        spent[0] = 0.0
        started = clock()
        try:
            return inner(self, *args, **kwargs)
        finally:
            took[0] = clock() - started
    return learn
trained = [0.0]
def timed_train(inner):
    def train(self, *args, **kwargs):
        started = clock()
        try:
            return inner(self, *args, **kwargs)
        finally:
            trained[0] += clock() - started
    return train
for algo in set(training.ALGOS.values()):
    algo.learn = timed_learn(algo.learn)
    algo.train = timed_train(algo.train)
exp = training.load_experiment(
    config, [*extra, f"total_timesteps={steps}", "eval.every=0", f"checkpoint_every={steps * 10}"]
)
with tempfile.TemporaryDirectory() as runs:
    training.train(exp, runs_dir=runs, progress=False)
print(json.dumps({"steps": steps, "learn_s": took[0], "env_s": spent[0], "train_s": trained[0]}))
"""


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def run_once(config: Path, steps: int, pythonpath: str, overrides: list[str], clock: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    # -P: the working directory (the repo) must not come before --code on the path
    command = [sys.executable, "-P", "-c", CHILD, str(config), str(steps), json.dumps(overrides), clock]
    out = subprocess.run(
        [*command, pythonpath],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=3600,
    )
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        raise SystemExit(f"training run failed: {last[0]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs/experiment/dispatch_ppo.yaml")
    parser.add_argument("--steps", type=int, default=5120, help="env steps per run (default 5120)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--code",
        default=str(REPO),
        help="PYTHONPATH of the code to measure (e.g. a `git archive` of a revision)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time per wall-clock second or per CPU second of the training process (loaded machine)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="config overrides as train.py takes them (n_envs=16 vector_env=true)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        print("--steps and --repeats must be positive", file=sys.stderr)
        return 2
    if not Path(args.code, "lastmile_env", "__init__.py").is_file():
        print(f"--code: no lastmile_env package in {args.code}", file=sys.stderr)
        return 2
    if not args.config.is_file():
        print(f"--config: no such file: {args.config}", file=sys.stderr)
        return 2
    before = load_average()
    runs = [
        run_once(args.config.resolve(), args.steps, args.code, args.overrides, args.clock)
        for _ in range(args.repeats)
    ]
    rates = [r["steps"] / r["learn_s"] for r in runs]
    shares = [1.0 - r["env_s"] / r["learn_s"] for r in runs]
    gradient = [r["train_s"] / r["learn_s"] for r in runs]
    env_rates = [r["steps"] / r["env_s"] for r in runs]
    print(
        f"{args.config.name} {' '.join(args.overrides)}, code {args.code}: "
        f"{statistics.median(rates):,.0f} env steps/s "
        f"(runs {', '.join(f'{r:,.0f}' for r in rates)}); learner share {statistics.median(shares):.0%} "
        f"(gradient updates {statistics.median(gradient):.0%}); "
        f"env alone {statistics.median(env_rates):,.0f} steps/s (per {args.clock} second); "
        f"load {before} before, {load_average()} after"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
