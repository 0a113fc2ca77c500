"""Training ``DispatchNet`` (or, with ``task: routing``, ``RoutingNet`` on ``LastMile-Routing-v0``) with
MaskablePPO (default), PPO or A2C: config, envs, callbacks, checkpoints.

A run lives in ``runs/<scenario>__<algo>__<seed>__<YYYYmmdd-HHMMSS>/``:

* TensorBoard events (SB3's ``train/`` losses, ``rollout/``, ``time/``; ``charts/`` at every episode end;
  ``eval/`` at every evaluation), and ``config.yaml``, the validated experiment config;
* ``checkpoints/step_<N>.zip`` + ``step_<N>.json`` every ``checkpoint_every`` steps, each written to a temp
  file in the same folder and renamed, the JSON last: a checkpoint exists when its JSON does, so a run
  killed at any moment resumes from its last complete checkpoint (``resume``);
* ``best.zip`` + ``best.json``: the model at the evaluation (``eval.every``) with the lowest cost per
  delivered order on the evaluation days (``eval.seeds``: validation days, never the days a model is
  reported on), so a run is judged by the checkpoint it would ship, chosen without the test days;
* ``final.zip`` at the end. ``LearnedPolicy.load`` reads any of these zips.

Invalid actions: MaskablePPO masks them with the env's ``action_masks()``. For PPO and A2C the network
itself sets the masked logits to -1e8 from the observation's ``action_mask``, so they never sample one
either; their envs still use ``invalid_action="penalize"`` (a rejection plus ``invalid_action_penalty``) as
a safety net rather than raising.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat, configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import lastmile_env  # noqa: F401  (registers LastMile-Dispatch-v0 and LastMile-Routing-v0)
from agents.base import Policy, RoutingPolicy, dispatch_policy, dispatch_rule, run_episode
from agents.heuristics import HEURISTICS, make_heuristic
from agents.heuristics.reopt import REOPT_ITERATIONS, ReoptPolicy
from agents.learned.model import DispatchPolicy, MaskableDispatchPolicy, dispatch_net
from agents.learned.policy import LearnedPolicy
from agents.learned.reopt_env import ReoptimizingEnv
from agents.learned.routing_model import MaskableRoutingPolicy, RoutingActorCriticPolicy, routing_net
from agents.learned.routing_policy import LearnedRoutingPolicy
from agents.routing import ROUTING_HEURISTICS, make_routing_heuristic
from lastmile_env.config import (
    ConfigError,
    ScenarioConfig,
    apply_override,
    format_validation_error,
    load_scenario,
    parse_overrides,
    read_yaml_mapping,
    scenario_overrides,
)
from lastmile_env.randomized_load import LoadRanges, RandomizedLoad, load_overrides
from lastmile_env.sb3_vec import SB3VecEnv
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import World, world_for
from lastmile_env.vector_env import DispatchVectorEnv

AlgoName = Literal["maskable_ppo", "ppo", "a2c"]
ALGOS: dict[str, type[BaseAlgorithm]] = {"maskable_ppo": MaskablePPO, "ppo": PPO, "a2c": A2C}
CHECKPOINT_DIR = "checkpoints"
BEST_STATE = "best.json"  # the evaluation that chose best.zip


# --------------------------------------------------------------------------------------------------------
# Experiment config


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class AlgoConfig(_Section):
    """The RL algorithm and its hyperparameters (SB3 names)."""

    name: AlgoName = "maskable_ppo"
    """maskable_ppo (sb3-contrib, uses the env's action masks), ppo or a2c"""
    learning_rate: float = Field(1e-3, gt=0)
    """optimizer step size"""
    n_steps: int = Field(512, ge=1)
    """env steps per env per rollout (an episode of `default` is ~420 decisions)"""
    batch_size: int = Field(256, ge=2)
    """minibatch size (PPO only)"""
    n_epochs: int = Field(10, ge=1)
    """passes over each rollout (PPO only)"""
    gamma: float = Field(0.95, gt=0, le=1)
    """discount factor per decision (the cost reward already prices each order's whole planned route)"""
    gae_lambda: float = Field(0.95, ge=0, le=1)
    """GAE bias-variance trade-off"""
    clip_range: float = Field(0.2, gt=0)
    """policy ratio clipping (PPO only)"""
    ent_coef: float = Field(0.01, ge=0)
    """entropy bonus"""
    vf_coef: float = Field(0.5, ge=0)
    """value loss weight"""
    max_grad_norm: float = Field(0.5, gt=0)
    """gradient clipping"""
    target_kl: float | None = Field(None, gt=0)
    """stop an update's epochs early past this KL (PPO only; null: never)"""

    def sb3_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the SB3 class; the PPO-only ones are left out for A2C."""
        kwargs = self.model_dump(exclude={"name"})
        if self.name == "a2c":
            for key in ("batch_size", "n_epochs", "clip_range", "target_kl"):
                kwargs.pop(key)
        return kwargs


class ModelConfig(_Section):
    """The network (``DispatchNet``, or ``RoutingNet`` for ``task: routing``)."""

    hidden: int = Field(64, ge=4)
    """width of every hidden layer and of the vehicle (stop) embedding"""
    heads: int = Field(4, ge=1)
    """routing only: attention heads over the stops (hidden must be divisible by it)"""

    def extractor_kwargs(self, task: str) -> dict[str, Any]:
        return {"hidden": self.hidden, "heads": self.heads} if task == "routing" else {"hidden": self.hidden}


class RoutingTaskConfig(_Section):
    """``task: routing``: the routing env's settings (``LastMile-Routing-v0``)."""

    dispatch: str = "insertion"
    """dispatch rule giving orders to vehicles: a heuristic name or a trained dispatch model .zip"""
    max_stops: int = Field(32, ge=1)
    """stop slots of the observation (the plan's first max_stops stops are offered)"""
    skip_forced: bool = True
    """play routing decisions with a single valid action without asking the agent"""

    @field_validator("dispatch")
    @classmethod
    def _known_dispatch(cls, v: str) -> str:
        if v not in HEURISTICS and not v.endswith(".zip"):
            raise ValueError(f"unknown dispatch rule {v!r}; valid: {', '.join(HEURISTICS)} or a model .zip")
        return v


class ReoptTrainConfig(_Section):
    """Re-optimization inside the training loop (task dispatch): the network learns to dispatch on the
    plans PyVRP re-optimizes, to be played as ``model.zip+reopt`` (``agents.learned.reopt_env``)."""

    enabled: bool = False
    """re-optimize every stop not yet started every ``interval_min`` of sim time, between decisions"""
    interval_min: float = Field(30.0, gt=0)
    """sim minutes between re-optimizations (``reopt``'s default: 30)"""
    iterations: int = Field(REOPT_ITERATIONS, ge=1)
    """PyVRP iterations per re-optimization (``reopt``'s default)"""

    def policy(self, dispatch: Policy | None = None) -> ReoptPolicy:
        """The re-optimizer these settings describe, deciding orders by ``dispatch`` when given."""
        return ReoptPolicy(self.interval_min, max_iterations=self.iterations, dispatch=dispatch)


class LoadConfig(_Section):
    """Randomized load (task dispatch): every training episode on a fleet size and an order volume drawn
    at random (``lastmile_env.randomized_load``), so that one model holds across loads. The env pads its
    fleet to ``max_vehicles`` slots (masked, never chosen), so the spaces are the same for every fleet size
    and the model plays any fleet up to it (and, the network being size-invariant, any fleet at all when
    played unpadded by ``evaluate.py``). The draws are seeded by the run's seed: the same seed, the same
    sequence of loads."""

    enabled: bool = False
    """draw each training episode's fleet size and volume (off: every episode is the scenario's own)"""
    fleet_sizes: list[int] = Field(default_factory=lambda: [5, 7, 10, 15, 20, 25], min_length=1)
    """fleet sizes, one drawn uniformly per episode (``fleet.size`` of the scenario)"""
    volume: tuple[float, float] = (0.8, 1.6)
    """[low, high]: the order-rate multiplier (``orders.rate_per_hour`` times it), uniform in between"""
    max_vehicles: int | None = Field(None, ge=1)
    """vehicle slots of the padded env (null: the largest fleet of fleet_sizes, eval_loads, the scenario)"""
    eval_loads: list[tuple[int, float]] = Field(
        default_factory=lambda: [(5, 1.0), (20, 1.0), (20, 1.5)], min_length=1
    )
    """[fleet size, volume] pairs the periodic evaluation plays its days at (best.zip: the lowest mean
    cost per delivered relative to the baseline over them)"""

    @field_validator("fleet_sizes")
    @classmethod
    def _positive_fleets(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError(f"fleet sizes must be >= 1, got {v}")
        return v

    @field_validator("volume")
    @classmethod
    def _volume_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        low, high = v
        if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high < low:
            raise ValueError(f"volume must be [low, high] with 0 < low <= high, got [{low}, {high}]")
        return v

    @field_validator("eval_loads")
    @classmethod
    def _eval_loads(cls, v: list[tuple[int, float]]) -> list[tuple[int, float]]:
        bad = [[n, m] for n, m in v if n < 1 or not math.isfinite(m) or m <= 0]
        if bad:
            raise ValueError(f"eval loads need a fleet size >= 1 and a volume > 0, got {bad}")
        return v

    def slots(self, scenario: ScenarioConfig) -> int:
        """The padded env's vehicle slots; ValueError when ``max_vehicles`` is below a fleet it must hold."""
        loads = [(n, 1.0) for n in self.fleet_sizes] + list(self.eval_loads)
        needed = max(world_for(scenario).n_vehicles, *(self.fleet_at(scenario, n, v) for n, v in loads))
        if self.max_vehicles is None:
            return needed
        if self.max_vehicles < needed:
            raise ValueError(
                f"load.max_vehicles ({self.max_vehicles}) is smaller than the largest fleet it must hold "
                f"({needed}: fleet_sizes, eval_loads and the scenario's own fleet)"
            )
        return self.max_vehicles

    def fleet_at(self, scenario: ScenarioConfig, fleet_size: int, volume: float) -> int:
        """The number of vehicles of ``scenario`` at one load (a roster keeps its own)."""
        return world_for(self.scenario_at(scenario, fleet_size, volume)).n_vehicles

    def ranges(self) -> LoadRanges:
        return LoadRanges.of(self.fleet_sizes, self.volume)

    def scenario_at(self, scenario: ScenarioConfig, fleet_size: int, volume: float) -> ScenarioConfig:
        """``scenario`` at one load (the evaluation's days)."""
        return load_scenario(scenario, load_overrides(scenario.orders.rate_per_hour, fleet_size, volume))


class EvalConfig(_Section):
    """Periodic deterministic evaluation of the learned policy against a heuristic on fixed days."""

    every: int = Field(20_000, ge=0)
    """env steps between evaluations (0: never)"""
    seeds: list[int] = Field(default_factory=lambda: [10_000, 10_001, 10_002], min_length=1)
    """episode seeds (days) played by both policies"""
    baseline: str = "insertion"
    """heuristic to compare with (a name from agents.heuristics; for task routing, from agents.routing)"""

    @field_validator("baseline")
    @classmethod
    def _known_heuristic(cls, v: str) -> str:
        if v not in HEURISTICS and v not in ROUTING_HEURISTICS:
            raise ValueError(
                f"unknown heuristic {v!r}; valid: {', '.join([*HEURISTICS, *ROUTING_HEURISTICS])}"
            )
        return v


class ExperimentConfig(_Section):
    """One training run. Every field can be overridden from the command line (``algo.learning_rate=1e-4``);
    scenario fields are addressed as ``env.<field>`` (``env.fleet.size=30``)."""

    task: Literal["dispatch", "routing"] = "dispatch"
    """dispatch (LastMile-Dispatch-v0, DispatchNet) or routing (LastMile-Routing-v0, RoutingNet)"""
    scenario: str = "default"
    """scenario name (configs/scenario/<name>.yaml) or YAML path"""
    env: dict[str, Any] = Field(default_factory=dict)
    """scenario overrides, dotted keys (`fleet.size: 30`, the command line's `env.fleet.size=30`)"""
    reward_scale: float = Field(10.0, gt=0)
    """the cost reward is divided by this (rewards of order one)"""
    defer: bool = False
    """add the env's defer action (decide the order again at the next dispatch tick)"""
    invalid_action_penalty: float = Field(0.0, ge=0)
    """PPO / A2C only: extra penalty of an invalid action (played as a rejection)"""
    total_timesteps: int = Field(1_000_000, ge=1)
    """env steps (decisions) to train for, over all envs"""
    n_envs: int = Field(1, ge=1)
    """parallel envs: SubprocVecEnv when > 1, else DummyVecEnv (see ``vector_env``)"""
    vector_env: bool = False
    """dispatch task: the ``n_envs`` envs as one in-process ``DispatchVectorEnv`` (the same days): each
    rollout step is one batched policy forward over them instead of one per env or a subprocess each"""
    seed: int = Field(0, ge=0)
    """seeds python, numpy, torch; env rank i plays day seed + i first"""
    checkpoint_every: int = Field(50_000, ge=0)
    """env steps between checkpoints (0: only the final one)"""
    keep_checkpoints: int = Field(3, ge=1)
    """most recent checkpoints kept"""
    torch_threads: int = Field(1, ge=1)
    """torch intra-op threads of the learner process"""
    algo: AlgoConfig = AlgoConfig()
    model: ModelConfig = ModelConfig()
    eval: EvalConfig = EvalConfig()
    routing: RoutingTaskConfig = RoutingTaskConfig()
    reopt: ReoptTrainConfig = ReoptTrainConfig()
    load: LoadConfig = LoadConfig()

    @model_validator(mode="after")
    def _baseline_fits_task(self) -> ExperimentConfig:
        if self.task == "routing" and self.vector_env:
            raise ValueError("vector_env is for the dispatch task (LastMile-Dispatch-v0) only")
        if self.load.enabled and self.task != "dispatch":
            raise ValueError("load.enabled randomizes the dispatch env's load: task must be dispatch")
        if self.load.enabled and self.vector_env:
            raise ValueError("load.enabled and vector_env cannot be combined: the vector env has one fleet")
        if self.reopt.enabled and self.task != "dispatch":
            raise ValueError(
                "reopt.enabled trains a dispatch policy under re-optimization: task must be dispatch"
            )
        if self.reopt.enabled and self.vector_env:
            raise ValueError("reopt.enabled and vector_env cannot be combined: re-optimization wraps one env")
        names = ROUTING_HEURISTICS if self.task == "routing" else HEURISTICS
        if self.eval.baseline not in names:
            raise ValueError(
                f"eval.baseline {self.eval.baseline!r} is not a {self.task} heuristic; "
                f"valid: {', '.join(names)}"
            )
        if self.task == "routing" and self.model.hidden % self.model.heads:
            raise ValueError(
                f"model.hidden {self.model.hidden} is not divisible by model.heads {self.model.heads}"
            )
        return self

    def load_scenario(self) -> ScenarioConfig:
        return load_scenario(self.scenario, self.env)


def validate_experiment(data: Mapping[str, Any], source: str = "<mapping>") -> ExperimentConfig:
    """Validate an experiment mapping and its scenario; ConfigError names the field otherwise."""
    try:
        exp = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"invalid experiment config {source}")) from None
    scenario = exp.load_scenario()  # the scenario and its overrides are checked now, not in the env workers
    if exp.load.enabled:
        try:
            exp.load.slots(scenario)  # builds every load's scenario: e.g. a fleet.size it rejects
        except ValueError as exc:
            raise ConfigError(f"invalid experiment config {source}: {exc}") from None
    return exp


def load_experiment(path: str | Path, overrides: Sequence[str] = (), **fields: Any) -> ExperimentConfig:
    """Read an experiment YAML, apply command-line overrides (``env.*`` go to the scenario) and ``fields``
    (dotted keys, e.g. ``total_timesteps=1000``, ``**{"algo.name": "ppo"}``; None values are skipped)."""
    data = read_yaml_mapping(Path(path), "experiment config", allow_empty=True)
    scenario_items = [item for item in overrides if item.startswith("env.")]
    other = parse_overrides([item for item in overrides if not item.startswith("env.")])
    env = data.get("env") or {}
    if isinstance(env, dict):  # (anything else fails validation below, naming the field)
        data["env"] = {**env, **scenario_overrides(scenario_items)}
    for key, value in {**other, **{k: v for k, v in fields.items() if v is not None}}.items():
        apply_override(data, key, value)
    return validate_experiment(data, str(path))


# --------------------------------------------------------------------------------------------------------
# Envs and evaluation


def dispatch_env_kwargs(scenario: ScenarioConfig, exp: ExperimentConfig) -> dict[str, Any]:
    """The training dispatch env's arguments, the same for one env and for the vector env: cost rewards,
    and invalid actions raised under MaskablePPO (it never samples one), penalized for PPO / A2C."""
    return {
        "scenario": scenario,
        "max_vehicles": exp.load.slots(scenario) if exp.load.enabled else None,
        "defer": exp.defer,
        "reward": "cost",
        "reward_scale": exp.reward_scale,
        "invalid_action": "raise" if exp.algo.name == "maskable_ppo" else "penalize",
        "invalid_action_penalty": exp.invalid_action_penalty,
    }


def make_env(scenario: ScenarioConfig, exp: ExperimentConfig) -> Callable[[], gym.Env]:
    """A thunk building one monitored env (picklable, for SubprocVecEnv)."""
    masked = exp.algo.name == "maskable_ppo"

    def thunk() -> gym.Env:
        if exp.task == "routing":
            return Monitor(
                gym.make(
                    "LastMile-Routing-v0",
                    scenario=scenario,
                    dispatch=dispatch_rule(exp.routing.dispatch),
                    max_stops=exp.routing.max_stops,
                    skip_forced=exp.routing.skip_forced,
                    reward="cost",
                    reward_scale=exp.reward_scale,
                    invalid_action="raise" if masked else "penalize",
                    invalid_action_penalty=exp.invalid_action_penalty,
                )
            )
        env = gym.make("LastMile-Dispatch-v0", **dispatch_env_kwargs(scenario, exp))
        if exp.load.enabled:
            env = RandomizedLoad(env, exp.load.ranges())
        if exp.reopt.enabled:
            env = ReoptimizingEnv(env, exp.reopt.policy())
        return Monitor(env)

    return thunk


def make_vec_env(scenario: ScenarioConfig, exp: ExperimentConfig, seed: int) -> VecEnv:
    """``n_envs`` envs (in subprocesses when more than one); rank i plays day ``seed + i`` first."""
    if exp.vector_env:
        return make_vector_env(scenario, exp, seed)
    thunks = [make_env(scenario, exp) for _ in range(exp.n_envs)]
    vec_env: VecEnv = SubprocVecEnv(thunks) if exp.n_envs > 1 else DummyVecEnv(thunks)
    vec_env.seed(seed)
    return vec_env


def make_vector_env(scenario: ScenarioConfig, exp: ExperimentConfig, seed: int) -> VecEnv:
    """``make_vec_env`` with ``vector_env``: the ``n_envs`` dispatch envs as one ``DispatchVectorEnv`` in
    this process, monitored; rank i plays day ``seed + i`` first, as with the other vec envs."""
    venv = DispatchVectorEnv(
        num_envs=exp.n_envs,
        max_episode_steps=gym.spec("LastMile-Dispatch-v0").max_episode_steps,
        **dispatch_env_kwargs(scenario, exp),
    )
    vec_env = VecMonitor(SB3VecEnv(venv))
    vec_env.seed(seed)
    return vec_env


def evaluate(
    policy: Policy, world: World, seeds: Sequence[int], router: RoutingPolicy | None = None
) -> dict[str, float]:
    """Play one episode per seed (with ``router``: in routing mode, the router choosing every next stop);
    totals over the episodes (cost per delivered = total cost / deliveries)."""
    totals = dict.fromkeys(("orders", "delivered", "on_time", "rejected", "cost"), 0.0)
    for seed in seeds:
        sim = Simulator(world, seed, routing=router is not None)
        summary = run_episode(sim, policy, seed, router=router).summary()
        for key in totals:
            totals[key] += summary[key]
    return {
        "cost_per_delivered": totals["cost"] / max(1.0, totals["delivered"]),
        "cost_per_order": totals["cost"] / max(1.0, totals["orders"]),
        "on_time_rate": totals["on_time"] / max(1.0, totals["delivered"] + totals["rejected"]),
        "rejection_rate": totals["rejected"] / max(1.0, totals["orders"]),
    }


# --------------------------------------------------------------------------------------------------------
# Checkpoints


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], object]) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _checkpoint_steps(ckpt_dir: Path) -> list[int]:
    """Steps of the complete checkpoints (zip and JSON both there), ascending."""
    steps = []
    for meta in ckpt_dir.glob("step_*.json"):
        if meta.with_suffix(".zip").is_file():
            with contextlib.suppress(ValueError):
                steps.append(int(meta.stem.removeprefix("step_")))
    return sorted(steps)


def save_checkpoint(model: BaseAlgorithm, run_dir: Path, state: dict[str, Any], keep: int) -> Path:
    """``checkpoints/step_<N>.zip`` then its JSON (``state`` + num_timesteps); prune to the ``keep`` last."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    zip_path = ckpt_dir / f"step_{model.num_timesteps:010d}.zip"
    _atomic_write(zip_path, model.save)
    state = {**state, "num_timesteps": model.num_timesteps, "checkpoint": zip_path.name}
    _atomic_write(zip_path.with_suffix(".json"), lambda f: f.write(json.dumps(state, indent=2).encode()))
    for step in _checkpoint_steps(ckpt_dir)[:-keep]:
        stale = ckpt_dir / f"step_{step:010d}"
        stale.with_suffix(".json").unlink()  # the JSON first: a half-pruned checkpoint is incomplete
        stale.with_suffix(".zip").unlink(missing_ok=True)
    return zip_path


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint of a run: its zip and its JSON state."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    steps = _checkpoint_steps(ckpt_dir) if ckpt_dir.is_dir() else []
    if not steps:
        return None
    stem = ckpt_dir / f"step_{steps[-1]:010d}"
    state_path, zip_path = stem.with_suffix(".json"), stem.with_suffix(".zip")
    try:
        state = json.loads(state_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{state_path}: the checkpoint's state is not valid JSON ({exc})") from None
    missing = sorted(
        {"config", "num_timesteps", "wall_time_s"} - set(state if isinstance(state, dict) else {})
    )
    if missing:
        raise ConfigError(f"{state_path}: the checkpoint's state lacks {', '.join(missing)}")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigError(f"{zip_path}: the checkpoint is not a readable zip ({exc})") from None
    if broken is not None:
        raise ConfigError(f"{zip_path}: the checkpoint's member {broken!r} is corrupt")
    return zip_path, state


# --------------------------------------------------------------------------------------------------------
# Callbacks


def _tb_writer(logger: Logger) -> SummaryWriter:
    """The SummaryWriter behind SB3's TensorBoard output (so ``charts/`` land at exact steps)."""
    for fmt in logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    raise RuntimeError("the logger has no TensorBoard output")


class EpisodeStatsCallback(BaseCallback):
    """``charts/`` scalars from the final info of every finished episode."""

    def _on_step(self) -> bool:
        writer = _tb_writer(self.logger)
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if not done:
                continue
            orders = max(1, info["orders"])
            step = self.num_timesteps
            writer.add_scalar("charts/on_time_rate", info["on_time_rate"], step)
            writer.add_scalar("charts/cost_per_order", info["cost"] / orders, step)
            writer.add_scalar("charts/cost_per_delivered", info["cost"] / max(1, info["delivered"]), step)
            writer.add_scalar("charts/rejection_rate", info["rejected"] / orders, step)
            writer.add_scalar("charts/episode_cost", info["cost"], step)
        return True


class _EveryCallback(BaseCallback):
    """Calls ``fire()`` each time ``num_timesteps`` crosses a multiple of ``every`` (0: never)."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps // self.every > self.last // self.every:
            self.last = self.num_timesteps
            self.fire()
        return True

    def fire(self) -> None:
        raise NotImplementedError


class EvalCallback(_EveryCallback):
    """Evaluates the live network (deterministic, on the simulator) and the baseline on the same seeds.

    With ``load.enabled`` the days are played at every one of ``load.eval_loads`` and best.zip is the
    network with the lowest mean, over those loads, of its cost per delivered relative to the baseline's
    (relative, so that the costly capacity-bound days do not outweigh the others)."""

    def __init__(
        self, exp: ExperimentConfig, world: World, echo: Callable[[str], None], run_dir: Path
    ) -> None:
        super().__init__(exp.eval.every)
        self.exp, self.world, self.echo, self.run_dir = exp, world, echo, run_dir
        self._baseline: dict[str, float] | None = None  # deterministic: computed once
        self._load_baselines: dict[tuple[int, float], dict[str, float]] = {}
        best = run_dir / BEST_STATE
        self.best_cost = math.inf
        if best.is_file():
            state = json.loads(best.read_text())
            self.best_cost = state.get("selection", state["cost_per_delivered"])

    def fire(self) -> None:
        if self.exp.task == "dispatch" and self.exp.load.enabled:
            self._fire_across_loads()
            return
        started = time.perf_counter()
        cfg = self.exp.eval
        if self.exp.task == "routing":
            dispatcher = dispatch_policy(self.exp.routing.dispatch)
            if self._baseline is None:
                baseline = make_routing_heuristic(cfg.baseline)
                self._baseline = evaluate(dispatcher, self.world, cfg.seeds, router=baseline)
            router = LearnedRoutingPolicy(routing_net(self.model.policy))
            learned = evaluate(dispatcher, self.world, cfg.seeds, router=router)
        else:
            # With re-optimization in training, both play under it (the baseline insertion: reopt).
            replan = self.exp.reopt.policy if self.exp.reopt.enabled else (lambda p: p)
            if self._baseline is None:
                self._baseline = evaluate(replan(make_heuristic(cfg.baseline)), self.world, cfg.seeds)
            net = LearnedPolicy(dispatch_net(self.model.policy))
            learned = evaluate(replan(net), self.world, cfg.seeds)
        relative = learned["cost_per_delivered"] / self._baseline["cost_per_delivered"] - 1.0
        seconds = time.perf_counter() - started
        base = self._baseline
        writer, step = _tb_writer(self.logger), self.num_timesteps
        for who, metrics in (("learned", learned), (cfg.baseline, self._baseline)):
            for key, value in metrics.items():
                writer.add_scalar(f"eval/{who}_{key}", value, step)
        writer.add_scalar("eval/relative_cost_per_delivered", relative, step)
        writer.add_scalar("eval/seconds", seconds, step)
        best = learned["cost_per_delivered"] < self.best_cost
        if best:  # the zip first, then the JSON that names it: best.json always describes best.zip
            self.best_cost = learned["cost_per_delivered"]
            _atomic_write(self.run_dir / "best.zip", self.model.save)
            state = {"num_timesteps": step, "eval_seeds": list(cfg.seeds), **learned}
            _atomic_write(self.run_dir / BEST_STATE, lambda f: f.write(json.dumps(state, indent=2).encode()))
        self.echo(
            f"step {step:>9,} | eval on {len(cfg.seeds)} days: learned cost/delivered "
            f"{learned['cost_per_delivered']:.2f}, on-time {learned['on_time_rate']:.1%}, "
            f"rejected {learned['rejection_rate']:.1%} | {cfg.baseline}{'+reopt' * self.exp.reopt.enabled} "
            f"{base['cost_per_delivered']:.2f}, "
            f"{base['on_time_rate']:.1%}, {base['rejection_rate']:.1%} | "
            f"relative {relative:+.1%} | {seconds:.1f}s{' | best so far: best.zip' if best else ''}"
        )

    def _fire_across_loads(self) -> None:
        """``fire`` with randomized load: the evaluation days at every ``load.eval_loads`` point."""
        started = time.perf_counter()
        cfg, load = self.exp.eval, self.exp.load
        replan = self.exp.reopt.policy if self.exp.reopt.enabled else (lambda p: p)
        net = LearnedPolicy(dispatch_net(self.model.policy))
        writer, step = _tb_writer(self.logger), self.num_timesteps
        scenario = self.world.config
        relatives, parts = [], []
        for fleet, volume in load.eval_loads:
            world = world_for(load.scenario_at(scenario, fleet, volume))
            key = (fleet, volume)
            if key not in self._load_baselines:
                self._load_baselines[key] = evaluate(replan(make_heuristic(cfg.baseline)), world, cfg.seeds)
            base = self._load_baselines[key]
            learned = evaluate(replan(net), world, cfg.seeds)
            relative = learned["cost_per_delivered"] / base["cost_per_delivered"] - 1.0
            relatives.append(relative)
            tag = f"{fleet}v_x{volume:g}"
            for who, metrics in (("learned", learned), (cfg.baseline, base)):
                for name, value in metrics.items():
                    writer.add_scalar(f"eval/{tag}/{who}_{name}", value, step)
            writer.add_scalar(f"eval/{tag}/relative_cost_per_delivered", relative, step)
            parts.append(f"{tag} {learned['cost_per_delivered']:.2f} vs {base['cost_per_delivered']:.2f}")
        selection = float(sum(relatives) / len(relatives))
        seconds = time.perf_counter() - started
        writer.add_scalar("eval/relative_cost_per_delivered", selection, step)
        writer.add_scalar("eval/seconds", seconds, step)
        best = selection < self.best_cost
        if best:  # the zip first, then the JSON that names it: best.json always describes best.zip
            self.best_cost = selection
            _atomic_write(self.run_dir / "best.zip", self.model.save)
            state = {
                "num_timesteps": step,
                "eval_seeds": list(cfg.seeds),
                "eval_loads": [list(pair) for pair in load.eval_loads],
                "relative_cost_per_delivered": relatives,
                "selection": selection,
            }
            _atomic_write(self.run_dir / BEST_STATE, lambda f: f.write(json.dumps(state, indent=2).encode()))
        self.echo(
            f"step {step:>9,} | eval on {len(cfg.seeds)} days x {len(relatives)} loads, cost/delivered "
            f"learned vs {cfg.baseline}: {', '.join(parts)} | mean relative {selection:+.1%} | "
            f"{seconds:.1f}s{' | best so far: best.zip' if best else ''}"
        )


class CheckpointCallback(_EveryCallback):
    """Atomic checkpoints every ``checkpoint_every`` steps (see ``save_checkpoint``)."""

    def __init__(self, exp: ExperimentConfig, run_dir: Path, wall_time_before: float) -> None:
        super().__init__(exp.checkpoint_every)
        self.exp, self.run_dir = exp, run_dir
        self.wall_time_before = wall_time_before
        self.started = time.time()

    def state(self) -> dict[str, Any]:
        return {
            "config": self.exp.model_dump(mode="json"),
            "wall_time_s": self.wall_time_before + time.time() - self.started,
            "tensorboard_dir": str(self.run_dir.resolve()),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def fire(self) -> None:
        save_checkpoint(self.model, self.run_dir, self.state(), self.exp.keep_checkpoints)


class ProgressBarCallback(BaseCallback):
    """A tqdm bar over env steps (starting at the resumed step count)."""

    def __init__(self, total: int, enabled: bool) -> None:
        super().__init__()
        self.total, self.enabled = total, enabled
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(
            total=self.total,
            initial=self.num_timesteps,
            unit="step",
            dynamic_ncols=True,
            disable=not self.enabled,
        )

    def _on_step(self) -> bool:
        assert self.bar is not None
        self.bar.update(self.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------------------
# Runs


def _new_run_dir(runs_dir: Path, scenario: ScenarioConfig, exp: ExperimentConfig) -> Path:
    task = "routing__" if exp.task == "routing" else ""  # dispatch runs keep their historical names
    name = f"{task}{scenario.name}__{exp.algo.name}__{exp.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, n = runs_dir / name, 1
    while run_dir.exists():  # two runs started in the same second
        n += 1
        run_dir = runs_dir / f"{name}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def train(exp: ExperimentConfig, runs_dir: str | Path = "runs", progress: bool = True) -> Path:
    """Train from scratch into a new run folder; returns it."""
    scenario = exp.load_scenario()
    run_dir = _new_run_dir(Path(runs_dir), scenario, exp)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))

    # Seeding: the libraries here; env rank i plays day seed + i first, then days drawn from its seeded
    # generator; SB3's seed= below reseeds the same and the action space.
    set_random_seed(exp.seed)  # python, numpy, torch
    torch.set_num_threads(exp.torch_threads)

    vec_env = make_vec_env(scenario, exp, exp.seed)
    masked = exp.algo.name == "maskable_ppo"
    policy: type[BasePolicy]
    if exp.task == "routing":
        policy = MaskableRoutingPolicy if masked else RoutingActorCriticPolicy
    else:
        policy = MaskableDispatchPolicy if masked else DispatchPolicy
    model = ALGOS[exp.algo.name](
        policy,
        vec_env,
        policy_kwargs={"features_extractor_kwargs": exp.model.extractor_kwargs(exp.task)},
        seed=exp.seed,
        device="cpu",
        verbose=0,
        **exp.algo.sb3_kwargs(),
    )
    return _learn(model, exp, scenario, run_dir, wall_time_before=0.0, progress=progress)


def resume(run_dir: str | Path, total_timesteps: int | None = None, progress: bool = True) -> Path:
    """Continue a run from its newest complete checkpoint: same config (``total_timesteps`` may be raised),
    step count and TensorBoard folder. The envs restart at fresh days (seeded ``seed + num_timesteps``);
    the interrupted rollout is collected again."""
    run_dir = Path(run_dir)
    found = latest_checkpoint(run_dir)
    if found is None:
        raise ConfigError(f"{run_dir}: no complete checkpoint to resume from")
    zip_path, state = found
    for folder in (run_dir, run_dir / CHECKPOINT_DIR):  # temp files left by a kill mid-write
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink()
    data = dict(state["config"])
    if total_timesteps is not None:
        data["total_timesteps"] = total_timesteps
    exp = validate_experiment(data, str(zip_path.with_suffix(".json")))
    scenario = exp.load_scenario()
    torch.set_num_threads(exp.torch_threads)
    reseed = exp.seed + int(state["num_timesteps"])
    vec_env = make_vec_env(scenario, exp, reseed)
    model = ALGOS[exp.algo.name].load(zip_path, env=vec_env, device="cpu")
    model.set_random_seed(reseed)
    wall_time = float(state["wall_time_s"])
    return _learn(model, exp, scenario, run_dir, wall_time_before=wall_time, progress=progress)


def _learn(
    model: BaseAlgorithm,
    exp: ExperimentConfig,
    scenario: ScenarioConfig,
    run_dir: Path,
    wall_time_before: float,
    progress: bool,
) -> Path:
    """The training loop shared by ``train`` and ``resume``: callbacks, learn, final checkpoint and zip."""
    echo: Callable[[str], None] = tqdm.write if progress else print
    model.set_logger(configure(str(run_dir), ["tensorboard"]))
    start_step = model.num_timesteps
    echo(
        f"run {run_dir} | {exp.algo.name} on {scenario.name} | step {start_step:,} / {exp.total_timesteps:,}"
    )
    checkpoints = CheckpointCallback(exp, run_dir, wall_time_before)
    callbacks = [EpisodeStatsCallback(), checkpoints, ProgressBarCallback(exp.total_timesteps, progress)]
    if exp.eval.every:
        callbacks.append(EvalCallback(exp, world_for(scenario), echo, run_dir))
    try:
        if start_step < exp.total_timesteps:
            model.learn(
                total_timesteps=exp.total_timesteps - start_step,
                callback=CallbackList(callbacks),
                reset_num_timesteps=start_step == 0,
                log_interval=1,
            )
        found = latest_checkpoint(run_dir)
        if found is None or found[1]["num_timesteps"] != model.num_timesteps:
            save_checkpoint(model, run_dir, checkpoints.state(), exp.keep_checkpoints)
        _atomic_write(run_dir / "final.zip", model.save)
    finally:
        model.logger.close()
        if model.env is not None:
            model.env.close()
    echo(f"run {run_dir} | done at step {model.num_timesteps:,}: {run_dir / 'final.zip'}")
    return run_dir
