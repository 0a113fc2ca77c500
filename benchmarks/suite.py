"""The benchmark suite: speed, scaling, training throughput, evaluation wall time and memory, in one table.

    python benchmarks/suite.py [--sections speed,scaling,ppo,eval,memory] [--quick] [--repeats 5]
                               [--steps 2000] [--out benchmarks/results/suite.md]
    lastmile bench --sections all [...]        (the same script; ``lastmile bench`` alone: the speed section)

Sections (each figure is the median of ``--repeats`` runs; every comparison is a ratio of two figures
measured in this same run, on this machine, under the load printed in the header):

- ``speed``: dispatch env decision steps per second under a random masked policy, single process, on
  ``--scenarios`` (default ``small,default,large``), next to gymnasium's CartPole-v1 (random actions) and,
  when it can be installed, OR-Gym's VehicleRouting-v0 (random actions; gym 0.19 in a separate venv,
  ``benchmarks/.orgym-venv``, built by this script; skipped with the reason otherwise). A scenario's
  ratios are paired: each of its runs is divided by a CartPole run just before it and an OR-Gym run
  just after it (OR-Gym's process stays open between runs, on the same clock).
- ``scaling``: microseconds per decision step as the fleet (10, 50, 100, 200 vehicles), the orders per
  shift (rate x 0.5, 1, 2, 4) and the road graph (300 to 10,000 nodes, same 298 addresses) grow, one at a
  time from ``default``; the fitted log-log slope per dimension, and a plot (``--plot``).
- ``ppo``: SB3 PPO env steps per second (MlpPolicy, the same settings, one env, CPU, one torch thread) on
  ``default`` (flat observation, invalid actions penalized) and on CartPole-v1.
- ``eval``: wall time of ``evaluate`` (``--eval-episodes`` days x 5 heuristics on ``--eval-scenario``)
  with one worker and with all cores; the results must be identical.
- ``memory``: peak RSS of a fresh process that builds each scenario and plays one episode.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import lastmile_env  # noqa: F401  (registers LastMile-Dispatch-v0)
from lastmile_env.sim import Simulator

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("speed", "scaling", "ppo", "eval", "memory")
HEURISTICS = ("random", "nearest", "least_loaded", "insertion", "regret")
ORGYM_VENV = REPO / "benchmarks" / ".orgym-venv"
# gym 0.19's setup.py does not build with setuptools >= 58 / wheel >= 0.38 (its extras use a requirement
# syntax they reject), so the venv pins them and builds gym without build isolation.
ORGYM_INSTALL = (
    ("pip", "install", "-q", "setuptools<58", "wheel<0.38", "pip<24.1"),
    ("pip", "install", "-q", "--no-build-isolation", "gym==0.19.0"),
    ("pip", "install", "-q", "or-gym==0.5.0"),
)
# A long-lived child: it prints its grid, then for each line N read from stdin plays N random steps and
# prints their rate (steps per second on the parent's clock), so its runs can be paired with the parent's.
ORGYM_CHILD = """
import contextlib, json, os, sys, time
import or_gym
clock = time.process_time if sys.argv[1] == "cpu" else time.perf_counter
env = or_gym.make("VehicleRouting-v0")
env.action_space.seed(0)
out = sys.stdout
print(json.dumps(list(env.grid)), file=out, flush=True)
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # its step() prints every move
    env.reset()
    for line in sys.stdin:
        steps = int(line)
        started = clock()
        for _ in range(steps):
            _, _, done, _ = env.step(env.action_space.sample())
            if done:
                env.reset()
        print(steps / (clock() - started), file=out, flush=True)
"""
MEMORY_CHILD = """
import json, sys
import numpy as np
import gymnasium as gym
import lastmile_env
def high_water_kib():  # this process's peak RSS (ru_maxrss would include the parent's, from before exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
base = high_water_kib()
env = gym.make("LastMile-Dispatch-v0", scenario=sys.argv[1])
obs, _ = env.reset(seed=0)
rng = np.random.default_rng(0)
steps, done = 0, False
while not done:
    obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
    steps, done = steps + 1, terminated or truncated
print(json.dumps({"imports_kib": base, "peak_kib": high_water_kib(),
    "steps": steps, "nodes": env.unwrapped.world.graph.number_of_nodes(),
    "vehicles": env.unwrapped.world.n_vehicles}))
"""


@dataclass
class Row:
    """One line of the results table."""

    section: str
    what: str
    value: str
    comparison: str = ""


@dataclass
class Settings:
    repeats: int
    steps: int
    scenarios: list[str]
    quick: bool
    eval_scenario: str
    eval_episodes: int
    ppo_steps: int
    plot: Path
    orgym: str  # build (the venv when missing), auto (only if it exists), no
    vector_envs: int  # sub-envs of the vector env row (0: no row)


# ------------------------------------------------------------------------------------------- helpers
# The env speed and PPO rows' clock: wall time, or (``--clock cpu``) this process's CPU time, steadier when
# other jobs share the cores (PPO runs on one torch thread). OR-Gym's child process always runs on wall time.
CLOCK: list[Callable[[], float]] = [time.perf_counter]
CLOCK_NAME = ["wall"]


def masked_random_actions(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """A uniformly random valid action per row of ``masks`` (``(N, A)``): the argmax of uniform keys over the
    valid actions, one generator call for the whole batch (how a vector policy acts)."""
    keys = rng.random(masks.shape)
    keys[masks == 0] = -1.0
    return keys.argmax(axis=1)


def steps_per_second(
    env: gym.Env, steps: int, seed: int, masked: bool, whole: bool = False, keys: bool = False
) -> float:
    """Steps per second of a uniformly random (masked) policy, resets included.

    ``whole``: play whole episodes (days ``seed``, ``seed + 1``...) until at least ``steps`` decisions, so
    every hour of the day weighs as it does in an episode (plans are short in the morning, long at the
    peaks); the rate is then over all the decisions played. ``keys``: the masked policy is
    ``masked_random_actions`` on a batch of one (as cheap as the vector env's batched policy, per decision)
    instead of ``rng.choice`` over the valid actions (the rows recorded since the first speed pass).
    """
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode = done = 0
    started = CLOCK[0]()
    while done < steps or (whole and episode == 0):
        if masked and keys:
            action = int(masked_random_actions(rng, obs["action_mask"][None])[0])
        elif masked:
            action = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        else:
            action = int(env.action_space.sample())
        obs, _, terminated, truncated, _ = env.step(action)
        done += 1
        if terminated or truncated:
            episode += 1
            if whole and done >= steps:
                break
            obs, _ = env.reset(seed=seed + episode)
    return done / (CLOCK[0]() - started)


def median_rate(
    env: gym.Env, steps: int, repeats: int, masked: bool, whole: bool = False, keys: bool = False
) -> float:
    return statistics.median(steps_per_second(env, steps, r, masked, whole, keys) for r in range(repeats))


def vector_steps_per_second(scenario: str, num_envs: int, steps: int, seed: int) -> float:
    """Decisions per second (summed over the sub-envs) of the vector env under a uniformly random masked
    policy acting on the batch (``masked_random_actions``), in this one process (so per core), autoresets
    included: about ``steps`` decisions, whole batches. Sub-env ``i`` plays day ``seed * num_envs + i``."""
    from lastmile_env.vector_env import DispatchVectorEnv

    venv = DispatchVectorEnv(num_envs=num_envs, scenario=scenario)
    rng = np.random.default_rng(seed)
    obs, _ = venv.reset(seed=seed * num_envs)
    done = 0
    started = CLOCK[0]()
    while done < steps:
        obs, *_ = venv.step(masked_random_actions(rng, obs["action_mask"]))
        done += num_envs
    return done / (CLOCK[0]() - started)


def in_turn_steps_per_second(scenario: str, num_envs: int, steps: int, seed: int) -> float:
    """``vector_steps_per_second`` without the vector env: its ``num_envs`` bare ``DispatchEnv``s stepped one
    after another by a plain loop (same days, same policy and draws, so the same decisions): the vector
    env's floor, what it would reach if its own batching cost nothing."""
    from lastmile_env.env import DispatchEnv

    first = DispatchEnv(scenario=scenario)
    envs = [first, *(first.spawn() for _ in range(num_envs - 1))]
    rng = np.random.default_rng(seed)
    masks = np.stack([env.reset(seed=seed * num_envs + i)[0]["action_mask"] for i, env in enumerate(envs)])
    done = 0
    started = CLOCK[0]()
    while done < steps:
        for i, (env, action) in enumerate(zip(envs, masked_random_actions(rng, masks).tolist(), strict=True)):
            obs, _, terminated, _, _ = env.step(action)
            if terminated:
                obs, _ = env.reset()
            masks[i] = obs["action_mask"]
        done += num_envs
    return done / (CLOCK[0]() - started)


def cartpole_env() -> gym.Env:
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    steps_per_second(env, 1000, 0, masked=False)  # warm-up
    return env


def cartpole_rate(settings: Settings) -> float:
    return median_rate(cartpole_env(), settings.steps * 10, settings.repeats, masked=False)


def paired_rates(
    env: gym.Env, cartpole: gym.Env, settings: Settings, orgym: OrGym | None = None
) -> tuple[float, float, float]:
    """The dispatch env's median rate (whole days, random masked policy), and the medians of its ratios to
    CartPole-v1 measured just before it and to OR-Gym (when given) measured just after it, run by run: each
    ratio compares two rates of the same moment, where the ratio of two medians would compare moments
    apart (this VM's speed drifts within a process too)."""
    rates, ratios, vs_orgym = [], [], []
    for r in range(settings.repeats):
        base = steps_per_second(cartpole, settings.steps * 10, r, masked=False)
        rate = steps_per_second(env, settings.steps, r, masked=True, whole=True)
        rates.append(rate)
        ratios.append(rate / base)
        other = math.nan if orgym is None else orgym.rate(settings.steps * 5)
        if not math.isnan(other):
            vs_orgym.append(rate / other)
    paired_orgym = statistics.median(vs_orgym) if vs_orgym else math.nan
    return statistics.median(rates), statistics.median(ratios), paired_orgym


def dispatch_env(scenario: str, overrides: dict[str, Any] | None = None, **kwargs: Any) -> gym.Env:
    env = gym.make("LastMile-Dispatch-v0", scenario=scenario, overrides=overrides, **kwargs)
    env.reset(seed=0)  # builds the world (and loads the compiled kernels) outside the timing
    return env


def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The log-log slope of ``ys`` against ``xs`` (least squares): y ~ x**slope."""
    slope, _ = np.polyfit(np.log(np.asarray(xs, dtype=float)), np.log(np.asarray(ys, dtype=float)), 1)
    return float(slope)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# ------------------------------------------------------------------------------------------- OR-Gym
def orgym_python(timeout_s: float = 900) -> tuple[Path | None, str]:
    """The OR-Gym venv's interpreter (built on first use), or None and why it is not available."""
    python = ORGYM_VENV / "bin" / "python"
    check = [str(python), "-c", "import or_gym; or_gym.make('VehicleRouting-v0')"]
    if python.exists() and subprocess.run(check, capture_output=True, timeout=120).returncode == 0:
        return python, ""
    print(f"building {ORGYM_VENV} (gym 0.19 + or-gym; a few minutes the first time)...", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(ORGYM_VENV)], check=True, timeout=120)
        deadline = time.monotonic() + timeout_s
        for step in ORGYM_INSTALL:
            cmd = [str(python), "-m", *step]
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic())
            )
            if out.returncode != 0:
                tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
                return None, f"`{' '.join(step)}` failed: {' / '.join(tail)}"
        out = subprocess.run(check, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            return None, f"or_gym does not import: {out.stderr.strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        return None, f"installing gym 0.19 + or-gym took more than {timeout_s:.0f} s"
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not build the venv: {exc}"
    return python, ""


class OrGym:
    """OR-Gym's VehicleRouting-v0 in its own venv's process, kept open so that its runs can be paired with
    the dispatch env's in time (``rate`` plays one run there and returns its steps per second; nan once the
    process failed, ``error`` saying why, so that the runs measured before are kept)."""

    TIMEOUT_S = 600.0  # for one run (or the start-up) to answer

    def __init__(self, python: Path) -> None:
        # a file, not a pipe: its warnings can never fill it (closed by ``close``)
        self.errors = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(python), "-c", ORGYM_CHILD, CLOCK_NAME[0]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )
        self.grid: list[int] = json.loads(self._line())
        self.rates: list[float] = []
        self.error = ""

    def _line(self) -> str:
        stdout = self.proc.stdout
        assert stdout is not None
        if not select.select([stdout], [], [], self.TIMEOUT_S)[0]:
            self.proc.kill()
            raise RuntimeError(f"VehicleRouting-v0 gave no answer within {self.TIMEOUT_S:g} s")
        line = stdout.readline()
        if not line:  # it died: say why
            self.proc.wait(timeout=30)
            self.errors.seek(0)
            raise RuntimeError(f"VehicleRouting-v0 failed: {self.errors.read().strip().splitlines()[-1:]}")
        return line

    def rate(self, steps: int) -> float:
        assert self.proc.stdin is not None
        if self.error:
            return math.nan
        try:
            self.proc.stdin.write(f"{steps}\n")
            self.proc.stdin.flush()
            self.rates.append(float(self._line()))
        except (OSError, RuntimeError, ValueError) as exc:
            self.error = str(exc) or type(exc).__name__
            return math.nan
        return self.rates[-1]

    def close(self) -> None:
        if self.proc.stdin is not None and self.proc.poll() is None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.errors.close()


def start_orgym(settings: Settings) -> tuple[OrGym | None, str]:
    """OR-Gym's process, warmed up by one run, or None and why it is not measured."""
    if settings.orgym == "no":
        return None, "skipped (--orgym no)"
    if settings.orgym == "auto" and not (ORGYM_VENV / "bin" / "python").exists():
        return None, f"skipped: {ORGYM_VENV.relative_to(REPO)} not built (`--orgym build` builds it)"
    python, why = orgym_python()
    if python is None:
        return None, why
    try:
        orgym = OrGym(python)
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if math.isnan(orgym.rate(settings.steps)):  # the warm-up
        orgym.close()
        return None, orgym.error
    orgym.rates.clear()
    return orgym, ""


# ------------------------------------------------------------------------------------------- sections
def section_speed(settings: Settings, rows: list[Row], notes: list[str]) -> dict[str, float]:
    cartpole = cartpole_rate(settings)
    orgym, why = start_orgym(settings)
    rows.append(Row("speed", "CartPole-v1 (gymnasium), random actions: steps/s", f"{cartpole:,.0f}", "1.000"))
    found = {"cartpole": cartpole, "orgym": math.nan}
    base = cartpole_env()
    scenario_rows = []
    try:
        for name in settings.scenarios:
            env = dispatch_env(name)
            world = env.unwrapped.world  # type: ignore[attr-defined]
            steps_per_second(env, 100, 10_000, masked=True)
            rate, ratio, vs_orgym = paired_rates(env, base, settings, orgym)
            found[name], found[f"{name}_vs_cartpole"], found[f"{name}_vs_orgym"] = rate, ratio, vs_orgym
            vs = f"{ratio:.4f} x CartPole (paired runs)"
            if not math.isnan(vs_orgym):
                vs += f"; {vs_orgym:.2f} x OR-Gym (paired runs)"
            scenario_rows.append(
                Row(
                    "speed",
                    f"LastMile-Dispatch-v0 `{name}` ({world.n_vehicles} vehicles, "
                    f"{world.graph.number_of_nodes():,} nodes, {len(world.matrix.nodes):,} key nodes), "
                    "random masked policy: steps/s",
                    f"{rate:,.0f}",
                    vs,
                )
            )
    finally:
        if orgym is not None:
            orgym.close()
    if orgym is not None and orgym.rates:
        found["orgym"] = statistics.median(orgym.rates)
        rows.append(
            Row(
                "speed",
                f"OR-Gym VehicleRouting-v0 (1 vehicle, {orgym.grid[0]}x{orgym.grid[1]} grid, gym 0.19), "
                "random actions: steps/s",
                f"{found['orgym']:,.0f}",
                f"{found['orgym'] / cartpole:.3f} x CartPole",
            )
        )
    if orgym is None:
        notes.append(f"OR-Gym VehicleRouting-v0 not measured: {why}.")
    elif orgym.error:
        notes.append(f"OR-Gym VehicleRouting-v0 stopped ({orgym.error}): its ratios pair the runs before.")
    rows.extend(scenario_rows)
    notes.append(
        "Dispatch env rows: x CartPole is the median over the runs of the scenario's rate over CartPole-v1's "
        "measured just before it in the same process (paired runs), not the ratio of the two medians; "
        "x OR-Gym likewise, with OR-Gym's run (in its own process, on the same clock) just after it."
    )
    if "default" in settings.scenarios and settings.vector_envs > 0:
        vector_rows(settings, rows, notes, found)
    return found


@contextlib.contextmanager
def kernels_timed() -> Iterator[list[float]]:
    """Every compiled (numba) function the package calls from Python, timed on ``CLOCK`` while the block runs
    (the seconds accumulate in the yielded list)."""
    from numba.core.registry import CPUDispatcher

    spent = [0.0]
    patched = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("lastmile_env") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, CPUDispatcher):

                def timed(*args: Any, _kernel: Any = value) -> Any:
                    started = CLOCK[0]()
                    try:
                        return _kernel(*args)
                    finally:
                        spent[0] += CLOCK[0]() - started

                patched.append((module, attr, value))
                setattr(module, attr, timed)
    try:
        yield spent
    finally:
        for module, attr, value in patched:
            setattr(module, attr, value)


def compiled_share(env: gym.Env, settings: Settings) -> float:
    """The median share of a decision (random keys policy, whole days) spent in compiled code: what no
    batching of days into compiled calls can remove, since each day's kernels still run."""
    shares = []
    for r in range(settings.repeats):
        with kernels_timed() as spent:
            started = CLOCK[0]()
            steps_per_second(env, settings.steps, r, masked=True, whole=True, keys=True)
            shares.append(spent[0] / (CLOCK[0]() - started))
    return statistics.median(shares)


def vector_rows(settings: Settings, rows: list[Row], notes: list[str], found: dict[str, float]) -> None:
    """The vector env on ``default`` against the single env with an equally cheap policy, and against its
    floor (the same sub-envs stepped in turn by a plain loop)."""
    n = settings.vector_envs
    env = dispatch_env("default")
    steps_per_second(env, 100, 10_000, masked=True, keys=True)
    single = median_rate(env, settings.steps, settings.repeats, masked=True, whole=True, keys=True)
    vector_steps_per_second("default", n, n, 10_000)  # warm-up
    in_turn_steps_per_second("default", n, n, 10_000)
    # at least a whole day per sub-env, so that every hour of the day weighs as in the single env
    steps = max(settings.steps, 450 * n)
    rates: dict[Callable[..., float], list[float]] = {
        vector_steps_per_second: [],
        in_turn_steps_per_second: [],
    }
    for r in range(settings.repeats):  # alternating (and which goes first), so that both see the same load
        for measure in list(rates)[:: 1 if r % 2 == 0 else -1]:
            rates[measure].append(measure("default", n, steps, r))
    rate = statistics.median(rates[vector_steps_per_second])
    floor = statistics.median(rates[in_turn_steps_per_second])
    share = compiled_share(env, settings)
    found["default_keys"], found["vector"], found["vector_n"] = single, rate, n
    found["vector_bound"] = 1.0 / share
    cartpole = found["cartpole"]
    rows.append(
        Row(
            "speed",
            "`default` single env (`gym.make`, wrappers), random masked policy by random keys: steps/s",
            f"{single:,.0f}",
            f"{single / cartpole:.4f} x CartPole",
        )
    )
    rows.append(
        Row(
            "speed",
            f"`default`, N = {n} bare `DispatchEnv`s stepped in turn by a plain loop (the vector env's "
            "floor): decisions/s",
            f"{floor:,.0f}",
            f"{floor / single:.2f} x the single env (random keys)",
        )
    )
    rows.append(
        Row(
            "speed",
            f"DispatchVectorEnv `default`, N = {n}, random masked policy by random keys on the batch: "
            "decisions/s (one process)",
            f"{rate:,.0f}",
            f"{rate / single:.2f} x the single env (random keys); {rate / floor:.2f} x its floor; "
            f"{rate / cartpole:.4f} x CartPole",
        )
    )
    rows.append(
        Row(
            "speed",
            "`default` single env: share of a decision spent in compiled (numba) code, whole days",
            f"{share:.0%}",
            f"a vector env that still runs each day's kernels: at most {1 / share:.1f}x the single env "
            "per core",
        )
    )
    notes.append(
        "Vector env rows: the policy is uniformly random over the valid actions, drawn as the argmax of "
        "uniform keys over the mask (one generator call per batch; the single env's second row draws a "
        "batch of one); the single env's first row keeps `rng.choice` over the valid actions, a costlier "
        "draw, as every earlier speed pass recorded it. The floor plays the vector env's days with the same "
        "draws (the same decisions); 1 - vector env / floor is the vector env's own cost per decision as a "
        "share of its sub-envs' steps. The compiled share times every numba function the package calls "
        "from Python (their call overhead included, a few tenths of a microsecond each) in separate runs of "
        "the single env: batching N days into compiled calls can remove the Python around the kernels, not "
        "the kernels' work for each day, so 1 / share bounds a vector env's speed-up per core."
    )


SCALING: dict[str, tuple[str, list[float], Callable[[float], dict[str, Any]]]] = {
    "fleet": ("vehicles", [10, 50, 100, 200], lambda x: {"fleet.size": int(x)}),
    "orders": ("orders per shift", [0.5, 1.0, 2.0, 4.0], lambda x: {"orders.rate_per_hour": 42 * x}),
    "graph": (
        "graph nodes",
        [300, 1000, 3000, 10000],
        lambda x: {"graph.n_nodes": int(x), "graph.n_addresses": 298},
    ),
}


def section_scaling(settings: Settings, rows: list[Row], notes: list[str]) -> None:
    steps = 300 if settings.quick else 1000
    results: dict[str, tuple[list[float], list[float]]] = {}
    for dim, (label, values, overrides) in SCALING.items():
        xs, ys = [], []
        for x in values:
            env = dispatch_env("default", overrides(x))
            sim = env.unwrapped.sim  # type: ignore[attr-defined]
            steps_per_second(env, 100, 10_000, masked=True)
            rate = median_rate(env, steps, settings.repeats, masked=True, whole=True)
            if dim == "orders":  # the x axis: the orders of a day, measured
                x = float(np.mean([len(Simulator(sim.world, s).orders) for s in range(5)]))
            xs.append(x)
            ys.append(1e6 / rate)
        results[dim] = (xs, ys)
        slope = fit_slope(xs, ys)
        points = ", ".join(f"{x:,.0f}: {y:,.0f}" for x, y in zip(xs, ys, strict=True))
        rows.append(Row("scaling", f"µs per step vs {label} ({points})", f"slope {slope:.2f}", "log-log fit"))
    notes.append(
        f"Scaling: from `default` (20 vans, ~410 orders, 300 nodes), one dimension at a time; medians of "
        f"{settings.repeats} runs of whole days (at least {steps} decisions). Graph size: same area and "
        "298 addresses, so the travel matrix (centers + addresses) keeps its size while the road graph grows."
    )
    plot_scaling(results, settings.plot)


def plot_scaling(results: dict[str, tuple[list[float], list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6))
    for ax, (dim, (xs, ys)) in zip(np.atleast_1d(axes), results.items(), strict=True):
        slope, intercept = np.polyfit(np.log(xs), np.log(ys), 1)
        grid = np.geomspace(min(xs), max(xs), 50)
        ax.loglog(xs, ys, "o", color="C0")
        ax.loglog(grid, np.exp(intercept) * grid**slope, "-", color="C1", label=f"slope {slope:.2f}")
        ax.set_xlabel(SCALING[dim][0])
        ax.set_ylabel("µs per decision step")
        ax.set_title(f"step time vs {SCALING[dim][0]}")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ppo_rate(make_env: Callable[[], gym.Env], timesteps: int, seed: int) -> float:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO(
        "MlpPolicy", make_env(), n_steps=512, batch_size=64, n_epochs=4, seed=seed, device="cpu", verbose=0
    )
    # Every run starts from an empty collector: a full collection of the objects left by the imports and
    # numba's compiling (~0.2 s with torch loaded) would otherwise land in whichever run crosses its
    # threshold first.
    gc.collect()
    started = CLOCK[0]()
    model.learn(total_timesteps=timesteps)
    return model.num_timesteps / (CLOCK[0]() - started)


def section_ppo(settings: Settings, rows: list[Row], notes: list[str], found: dict[str, float]) -> None:
    def ours() -> gym.Env:
        return gym.make(
            "LastMile-Dispatch-v0", scenario="default", observation="flat", invalid_action="penalize"
        )

    def cartpole() -> gym.Env:
        return gym.make("CartPole-v1")

    repeats = max(1, min(settings.repeats, 5))
    for make in (cartpole, ours):
        _ppo_rate(make, 512, 0)  # warm-up: imports, first compile
    carts, mines, ratios = [], [], []
    for r in range(repeats):  # paired: each `default` run against the CartPole run just before it
        carts.append(_ppo_rate(cartpole, settings.ppo_steps, r))
        mines.append(_ppo_rate(ours, settings.ppo_steps, r))
        ratios.append(mines[-1] / carts[-1])
    ratio = found["ppo_vs_cartpole"] = statistics.median(ratios)
    rows.append(Row("ppo", "SB3 PPO on CartPole-v1: env steps/s", f"{statistics.median(carts):,.0f}", "1.00"))
    rows.append(
        Row(
            "ppo",
            "SB3 PPO on `default` (flat obs): env steps/s",
            f"{statistics.median(mines):,.0f}",
            f"{ratio:.2f} (paired runs; {min(ratios):.2f}-{max(ratios):.2f})",
        )
    )
    notes.append(
        f"PPO: `MlpPolicy`, n_steps 512, batch 64, 4 epochs, 1 env, CPU, 1 torch thread, "
        f"{settings.ppo_steps} steps per run, {repeats} runs of each alternating, per {CLOCK_NAME[0]} "
        "second, each run from a freshly collected heap; the ratio is the median over the runs of "
        "`default`'s rate over the CartPole run just before it. `default` with the flat observation and "
        "invalid actions penalized as rejections (plain PPO does not mask)."
    )


def section_eval(settings: Settings, rows: list[Row], notes: list[str]) -> None:
    from agents.evaluation import evaluate

    def run(workers: int) -> tuple[float, list[dict[str, Any]]]:
        started = time.perf_counter()
        result = evaluate(
            settings.eval_scenario,
            list(HEURISTICS),
            episodes=settings.eval_episodes,
            seed=1000,
            workers=workers,
            reference="insertion",
            hindsight_time_limit_s=0,
            progress=False,
            route_map=False,
        )
        took = time.perf_counter() - started
        return took, [{k: v for k, v in r.items() if k != "wall_s"} for r in result.rows]

    cores = os.cpu_count() or 1
    serial_s, serial_rows = run(1)
    parallel_s, parallel_rows = run(cores)
    if json.dumps(serial_rows) == json.dumps(parallel_rows):  # NaN-aware (no hindsight: NaN columns)
        same = "results identical"
    elif [sorted(r) for r in serial_rows] != [sorted(r) for r in parallel_rows]:
        same = "results DIFFERENT: other columns (did the code change during the run?)"
    else:
        n = sum(json.dumps(a) != json.dumps(b) for a, b in zip(serial_rows, parallel_rows, strict=True))
        same = f"results DIFFERENT in {n} of {len(serial_rows)} rows"
    days, scenario = settings.eval_episodes, settings.eval_scenario
    what = f"evaluate: {days} days x {len(HEURISTICS)} heuristics on `{scenario}`"
    rows.append(Row("eval", f"{what}, 1 worker: wall s", f"{serial_s:.1f}", ""))
    rows.append(
        Row(
            "eval",
            f"{what}, {cores} workers: wall s",
            f"{parallel_s:.1f}",
            f"{serial_s / parallel_s:.2f}x faster; {same}",
        )
    )
    notes.append(f"Evaluation: heuristics {', '.join(HEURISTICS)}; no hindsight bound, no route map.")


def section_memory(settings: Settings, rows: list[Row], notes: list[str]) -> None:
    for name in settings.scenarios:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, name], capture_output=True, text=True, timeout=900, cwd=REPO
        )
        if out.returncode != 0:
            rows.append(Row("memory", f"`{name}`: peak RSS", "failed", out.stderr.strip()[-200:]))
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            Row(
                "memory",
                f"`{name}` ({r['vehicles']} vehicles, {r['nodes']:,} nodes), one episode: peak RSS MiB",
                f"{r['peak_kib'] / 1024:,.0f}",
                f"{r['imports_kib'] / 1024:,.0f} MiB after imports",
            )
        )
    notes.append(
        "Memory: a fresh process per scenario builds the world (travel matrix from the on-disk cache when "
        "present) and plays one episode (random masked policy); its `VmHWM`."
    )


# ------------------------------------------------------------------------------------------- main
def targets(found: dict[str, float]) -> list[str]:
    """The issue's targets for what this run measured."""
    lines = []
    if "default" in found:
        rate, cart, orgym = found["default"], found["cartpole"], found.get("orgym", math.nan)
        verdict = "met" if rate >= 20_000 else f"missed ({rate / 20_000:.1%} of it)"
        lines.append(f"- `default` >= 20,000 steps/s: {verdict}.")
        vs_cart = found.get("default_vs_cartpole", rate / cart)  # paired runs when measured so
        verdict = "met" if vs_cart >= 0.1 else f"missed (x{vs_cart:.4f}, {10 * vs_cart:.1%} of it)"
        lines.append(f"- `default` >= 1/10 of CartPole-v1: {verdict}.")
        if math.isfinite(orgym):
            ratio = found.get("default_vs_orgym", math.nan)  # paired runs when measured so
            ratio = ratio if math.isfinite(ratio) else rate / orgym  # (OR-Gym stopped before `default`)
            verdict = "met" if ratio >= 3 else f"missed (x{ratio:.2f}, {ratio / 3:.0%} of it)"
            lines.append(f"- `default` >= 3x OR-Gym VehicleRouting-v0: {verdict}.")
    if "vector" in found:
        ratio = found["vector"] / found.get("default_keys", found["default"])
        verdict = "met" if ratio >= 3 else f"missed (x{ratio:.2f}, {ratio / 3:.0%} of it)"
        bound = found.get("vector_bound")
        if bound is not None:
            verdict += f"; any design that runs each day's kernels reaches at most x{bound:.1f}"
        lines.append(
            f"- vector env (N = {found['vector_n']:.0f}) >= 3x the single env's decisions/s per core: "
            f"{verdict}."
        )
    if "ppo_vs_cartpole" in found:
        ratio = found["ppo_vs_cartpole"]
        verdict = "met" if ratio >= 0.7 else f"missed (x{ratio:.2f}, {ratio / 0.7:.0%} of it)"
        lines.append(f"- SB3 PPO on `default` >= 0.70 of PPO on CartPole-v1 (paired runs): {verdict}.")
    return lines


def parse_args(
    argv: Sequence[str] | None, prog: str | None, default_sections: str, orgym_default: str, out_default: str
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default=default_sections, help=f"{','.join(SECTIONS)} or all")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, steps and episodes")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (default 5; quick 3)")
    parser.add_argument("--steps", type=int, default=None, help="decisions per run (default 2000; quick 300)")
    parser.add_argument("--scenarios", default="small,default,large", help="speed and memory sections")
    parser.add_argument("--eval-scenario", default="default")
    parser.add_argument("--eval-episodes", type=int, default=None, help="default 100; quick 4")
    parser.add_argument("--ppo-steps", type=int, default=None, help="PPO env steps per run (default 4096)")
    parser.add_argument(
        "--orgym",
        choices=("build", "auto", "no"),
        default=orgym_default,
        help=f"OR-Gym VehicleRouting-v0: build its venv when missing, use it only if built, or skip "
        f"(default {orgym_default})",
    )
    parser.add_argument(
        "--vector-envs", type=int, default=64, help="sub-envs of the vector env speed row (0: skip it)"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="env speed and PPO rows per wall-clock second or per CPU second of the process (loaded machine)",
    )
    parser.add_argument("--out", type=Path, default=REPO / out_default)
    parser.add_argument("--plot", type=Path, default=REPO / "benchmarks/results/scaling.png")
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    default_sections: str = "all",
    orgym_default: str = "build",
    command: str = "python benchmarks/suite.py",
    out_default: str = "benchmarks/results/suite.md",
) -> int:
    args = parse_args(argv, prog, default_sections, orgym_default, out_default)
    sections = SECTIONS if args.sections == "all" else tuple(s.strip() for s in args.sections.split(","))
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}, all", file=sys.stderr)
        return 2
    settings = Settings(
        repeats=args.repeats or (3 if args.quick else 5),
        steps=args.steps or (300 if args.quick else 2000),
        scenarios=[s.strip() for s in args.scenarios.split(",") if s.strip()],
        quick=args.quick,
        eval_scenario=args.eval_scenario,
        eval_episodes=args.eval_episodes or (4 if args.quick else 100),
        ppo_steps=args.ppo_steps or (1024 if args.quick else 4096),
        plot=args.plot,
        orgym=args.orgym,
        vector_envs=args.vector_envs,
    )
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    CLOCK_NAME[0] = args.clock
    load_before = load_average()
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    found: dict[str, float] = {}
    for section in sections:
        print(f"[{section}]...", file=sys.stderr, flush=True)
        try:
            if section == "speed":
                found.update(section_speed(settings, rows, notes))
            elif section == "scaling":
                section_scaling(settings, rows, notes)
            elif section == "ppo":
                section_ppo(settings, rows, notes, found)
            elif section == "eval":
                section_eval(settings, rows, notes)
            else:
                section_memory(settings, rows, notes)
        except Exception as exc:  # one broken section must not lose the others' figures
            traceback.print_exc()
            rows.append(Row(section, "FAILED", "-", f"{type(exc).__name__}: {exc}"[:300].replace("|", "/")))
    took = time.perf_counter() - started
    header = [
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average (1/5/15 min) "
        f"{load_before} before, {load_average()} after; {took:.0f} s. Medians of {settings.repeats} runs "
        f"of whole days (at least {settings.steps} decisions; CartPole {settings.steps * 10} steps, "
        f"OR-Gym {settings.steps * 5}); env speed and PPO per {args.clock} second.",
    ]
    table = [
        "| section | measurement | value | comparison (same run) |",
        "|---|---|---:|---|",
        *(f"| {r.section} | {r.what} | {r.value} | {r.comparison} |" for r in rows),
    ]
    text = "\n".join([*header, "", *table, ""])
    if found:
        text += "\nTargets:\n" + "\n".join(targets(found)) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shown = shlex.join(list(argv) if argv is not None else sys.argv[1:])
    plot = ""
    if "scaling" in sections:
        plot = f"\n![step time scaling]({os.path.relpath(args.plot, args.out.parent)})\n"
    status = 1 if any(r.what == "FAILED" for r in rows) else 0
    args.out.write_text(f"# Benchmark suite\n\nCommand: `{command} {shown}`\n\n{text}{plot}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
