"""Training the learned wave policy (``agents.learned.epoch_policy``) on EURO Meets NeurIPS 2022 days, by
imitation of the hindsight solution (``task: euro2022_epoch`` in ``train.py``'s config).

1. Labels: for each training day (an instance file and an instance seed, never a final-phase seed of that
   instance) PyVRP solves the hindsight problem (every request known, with its release time). A request
   "should go" at an epoch once every request of its hindsight route has arrived: from then on that route
   can leave, and the hindsight solution says it is a good route.
2. States: the day is played by the expert (at each wave: the requests whose label is 1, and the must-go
   ones) with a small routing budget (with an unlimited fleet the routes' quality does not change which
   requests stay in the pool); every wave's ``wave_features`` is a sample. ``dagger_rounds`` adds the
   states the trained policy itself visits, with the same labels, and trains again.
3. Training: binary cross-entropy on the requests that may wait (must-go rows carry no decision), positives
   weighted by the negatives / positives ratio; Adam, minibatches of waves, a fixed torch seed, one thread.
4. Selection: each mode and setting (``prize_scales``, ``thresholds``) plays the validation days (other
   seeds, also never final-phase ones) at the evaluation budget per wave; the cheapest mean is saved in the
   model file.

A run writes ``RUN/model.pt``, ``RUN/config.yaml`` and ``RUN/validation.md`` (every candidate's costs and
greedy's on the same days).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.evaluation.euro2022 import load_runs, play_day
from agents.heuristics.waves import GreedyWave
from agents.learned.epoch_policy import ROWS, EpochNet, LearnedWave, save_epoch_model
from lastmile_env.config import REPO_ROOT, ConfigError, format_validation_error, read_yaml_mapping
from lastmile_env.epoch_env import wave_features
from lastmile_env.sim import Simulator, world_for
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.sources import euro2022
from lastmile_env.wave_routing import WAVE_ITERATIONS, dispatch_wave

TASK = "euro2022_epoch"


class EpochTrainingConfig(BaseModel):
    """``task: euro2022_epoch``: what ``train.py`` reads to train a learned wave policy."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    task: Literal["euro2022_epoch"]
    """this kind of run"""
    seed: int = 0
    """torch seed (initial weights, minibatch order)"""
    instances: list[str] = Field(default_factory=list)
    """instance files (relative to the repository root); empty: every shipped instance"""
    train_seeds: list[int] = Field(min_length=1)
    """instance seeds of the training days (each instance plays each)"""
    val_seeds: list[int] = Field(min_length=1)
    """instance seeds of the validation days, none of them a training seed"""
    requests_per_epoch: int | None = Field(None, ge=1)
    """keep only the first k requests of each epoch (quick checks and tests); null: the whole day"""
    hindsight_iterations: int = Field(10_000, ge=1)
    """PyVRP iterations for each training day's hindsight problem (the labels)"""
    rollout_iterations: int = Field(200, ge=1)
    """PyVRP iterations per wave while collecting states"""
    solver_iterations: int = Field(WAVE_ITERATIONS, ge=1)
    """PyVRP iterations per wave on the validation days (the budget the policy is meant to play at)"""
    hidden: int = Field(64, ge=4)
    """width of the network's layers"""
    epochs: int = Field(60, ge=1)
    """passes over the training waves"""
    batch_waves: int = Field(16, ge=1)
    """waves per minibatch"""
    learning_rate: float = Field(1e-3, gt=0)
    """Adam's step size"""
    weight_decay: float = Field(1e-4, ge=0)
    """Adam's weight decay"""
    dagger_rounds: int = Field(0, ge=0)
    """rounds of adding the trained policy's own states (DAgger) and training again"""
    prize_scales: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4], min_length=0)
    """``prize`` mode candidates: the prize of a request is scale * odds * its round trip"""
    thresholds: list[float] = Field(default_factory=lambda: [0.5], min_length=0)
    """``threshold`` mode candidates"""

    @model_validator(mode="after")
    def _checks(self) -> EpochTrainingConfig:
        if set(self.train_seeds) & set(self.val_seeds):
            raise ValueError(
                f"val_seeds share {sorted(set(self.train_seeds) & set(self.val_seeds))} with train_seeds"
            )
        if not self.prize_scales and not self.thresholds:
            raise ValueError("give at least one of prize_scales and thresholds")
        if any(not s > 0 for s in self.prize_scales) or any(not 0 < t < 1 for t in self.thresholds):
            raise ValueError("prize_scales must be > 0 and thresholds in (0, 1)")
        return self


@dataclass(frozen=True)
class Day:
    """A training or validation day: the instance, its file, the instance seed and its requests."""

    inst: euro2022.Instance
    path: str
    instance_seed: int
    requests: euro2022.Requests

    def describe(self) -> str:
        return f"{Path(self.path).name} seed {self.instance_seed}"


@dataclass(frozen=True)
class Sample:
    """One wave of one day: the observed requests' features, the global features, must-go flags, labels."""

    requests: np.ndarray  # (k, F)
    glob: np.ndarray  # (G,)
    must: np.ndarray  # (k,) bool
    label: np.ndarray  # (k,) float32


def load_epoch_config(path: str | Path, seed: int | None = None) -> EpochTrainingConfig:
    """The validated config; ConfigError names the problem."""
    data = read_yaml_mapping(Path(path), "experiment config")
    if seed is not None:
        data["seed"] = seed
    try:
        return EpochTrainingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"invalid experiment config {path}")) from None


def is_epoch_config(path: str | Path) -> bool:
    """Whether an experiment YAML is a ``task: euro2022_epoch`` one (train.py sends it here)."""
    return read_yaml_mapping(Path(path), "experiment config").get("task") == TASK


def instance_files(cfg: EpochTrainingConfig) -> list[Path]:
    """The configured instance files (default: every shipped one), checked to exist."""
    if not cfg.instances:
        return sorted((euro2022.DATA_DIR / "instances").glob("*.txt"))
    files = [REPO_ROOT / f if not Path(f).is_absolute() else Path(f) for f in cfg.instances]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"instances: {', '.join(missing)} not found")
    return files


def final_phase_seeds() -> dict[str, set[int]]:
    """The dynamic final-phase seeds of every instance named in the competition's configs."""
    runs, _ = load_runs(euro2022.DATA_DIR / "final_configs.json", euro2022.DATA_DIR / "instances", False)
    seeds: dict[str, set[int]] = {}
    for run in runs:
        seeds.setdefault(run.instance, set()).add(run.instance_seed)
    return seeds


def make_days(cfg: EpochTrainingConfig, files: Sequence[Path], seeds: Sequence[int]) -> list[Day]:
    """The days of ``seeds`` on every instance; a final-phase seed of an instance is refused (those days
    are the test set)."""
    held_out = final_phase_seeds()
    days = []
    for f in files:
        clash = sorted(set(seeds) & held_out.get(f.name, set()))
        if clash:
            raise ConfigError(
                f"seeds {clash} are final-phase seeds of {f.name}: the test days, not for training"
            )
        inst = euro2022.read_instance(f)
        for s in seeds:
            days.append(
                Day(inst, str(f), s, truncate(euro2022.sample_requests(inst, s), cfg.requests_per_epoch))
            )
    return days


def truncate(requests: euro2022.Requests, per_epoch: int | None) -> euro2022.Requests:
    """The first ``per_epoch`` requests of each epoch (all of them for None)."""
    if per_epoch is None:
        return requests
    keep = np.zeros(len(requests), dtype=bool)
    for e in np.unique(requests.epoch):
        keep[np.flatnonzero(requests.epoch == e)[:per_epoch]] = True
    return euro2022.Requests(
        requests.customer[keep],
        requests.epoch[keep],
        requests.window_s[keep],
        requests.service_s[keep],
        requests.demand[keep],
    )


def go_epochs(day: Day, budget: SolverBudget) -> np.ndarray:
    """Per request, the epoch from which it should go: when the last request of its hindsight route
    arrives."""
    _, routes = euro2022.solve_hindsight(day.inst, day.requests, budget, seed=1)
    go = np.full(len(day.requests), -1, dtype=np.int64)
    for route in routes:
        go[route] = int(day.requests.epoch[route].max())
    assert (go >= 0).all(), "the hindsight solution leaves a request out"
    return go


def collect(
    day: Day, go: np.ndarray, choose: Callable[[Simulator], list[int]], budget: SolverBudget
) -> list[Sample]:
    """Play the day with ``choose`` deciding each wave; every wave's features with the hindsight labels."""
    world = world_for(euro2022.scenario(day.inst, day.path))
    sim = Simulator(world, day.instance_seed, generator=euro2022.RequestStream(day.requests))
    samples = []
    while sim.next_decision() is not None:
        obs = wave_features(sim, ROWS)
        k = int(obs["request_mask"].sum())
        epoch = round(sim.now * 60) // euro2022.EPOCH_S
        ids = np.array([o.id for o in sim.pool[:k]], dtype=np.int64)
        samples.append(
            Sample(
                obs["requests"][:k].copy(),
                obs["global"].copy(),
                obs["must_dispatch"][:k].astype(bool),
                (go[ids] <= epoch).astype(np.float32),
            )
        )
        dispatch_wave(sim, choose(sim), budget, 1)
    return samples


def expert(go: np.ndarray) -> Callable[[Simulator], list[int]]:
    """The hindsight expert of a day: send the requests whose hindsight route can leave now."""

    def choose(sim: Simulator) -> list[int]:
        epoch = round(sim.now * 60) // euro2022.EPOCH_S
        return [o.id for o in sim.pool if go[o.id] <= epoch]

    return choose


def fit(
    net: EpochNet, samples: Sequence[Sample], cfg: EpochTrainingConfig, log: list[dict[str, float]]
) -> None:
    """Minibatch Adam on the class-weighted BCE of the rows that may wait."""
    n = max(len(s.label) for s in samples)
    f, g = samples[0].requests.shape[1], len(samples[0].glob)
    x = torch.zeros(len(samples), n, f)
    mask = torch.zeros(len(samples), n)
    free = torch.zeros(len(samples), n)
    y = torch.zeros(len(samples), n)
    glob = torch.zeros(len(samples), g)
    for i, s in enumerate(samples):
        k = len(s.label)
        x[i, :k] = torch.from_numpy(s.requests)
        mask[i, :k] = 1.0
        free[i, :k] = torch.from_numpy((~s.must).astype(np.float32))
        y[i, :k] = torch.from_numpy(s.label)
        glob[i] = torch.from_numpy(s.glob)
    pos = float((y * free).sum())
    neg = float(free.sum()) - pos
    pos_weight = torch.tensor(neg / pos if pos > 0 and neg > 0 else 1.0)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    net.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(samples), generator=gen)
        total, rows = 0.0, 0.0
        for start in range(0, len(samples), cfg.batch_waves):
            b = order[start : start + cfg.batch_waves]
            logits = net(x[b], mask[b], glob[b])
            loss_rows = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y[b], pos_weight=pos_weight, reduction="none"
            )
            weight = free[b]
            loss = (loss_rows * weight).sum() / weight.sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float((loss_rows * weight).sum().detach())
            rows += float(weight.sum())
        if epoch == cfg.epochs - 1 or epoch % 10 == 0:
            with torch.no_grad():
                pred = (net(x, mask, glob) > 0).float()
            acc = float(((pred == y).float() * free).sum() / free.sum().clamp(min=1.0))
            log.append({"epoch": epoch, "loss": total / max(rows, 1.0), "accuracy": acc})
    net.eval()


def candidates(cfg: EpochTrainingConfig) -> list[dict[str, Any]]:
    """The settings validation compares."""
    return [{"mode": "prize", "prize_scale": s} for s in cfg.prize_scales] + [
        {"mode": "threshold", "threshold": t} for t in cfg.thresholds
    ]


def train_epoch_policy(cfg: EpochTrainingConfig, run_dir: Path, progress: bool = True) -> Path:
    """The whole pipeline (see the module's docstring); returns the model file."""
    torch.manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers on any machine
    started = time.process_time()
    say = print if progress else (lambda *_: None)
    try:
        files = instance_files(cfg)
        train_days = make_days(cfg, files, cfg.train_seeds)
        val_days = make_days(cfg, files, cfg.val_seeds)
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        hindsight = SolverBudget(max_iterations=cfg.hindsight_iterations)
        rollout = SolverBudget(max_iterations=cfg.rollout_iterations)
        labels, samples = [], []
        for day in train_days:
            go = go_epochs(day, hindsight)
            labels.append(go)
            samples += collect(day, go, expert(go), rollout)
            say(f"  {day.describe()}: {len(day.requests)} requests, {len(samples)} waves so far")
        net = EpochNet(cfg.hidden)
        log: list[dict[str, float]] = []
        fit(net, samples, cfg, log)
        for r in range(cfg.dagger_rounds):
            learner = LearnedWave(net, budget=rollout)
            for day, go in zip(train_days, labels, strict=True):
                samples += collect(day, go, learner.choose, rollout)
            fit(net, samples, cfg, log)
            say(f"  DAgger round {r + 1}: {len(samples)} waves")
        say(f"  trained: {log[-1]}")
        budget = SolverBudget(max_iterations=cfg.solver_iterations)
        rows = [
            (
                "greedy",
                [
                    play_day(d.inst, d.path, d.requests, GreedyWave(budget), d.instance_seed).cost
                    for d in val_days
                ],
            )
        ]
        results = []
        for setting in candidates(cfg):
            policy = LearnedWave(net, budget=budget, **setting)
            costs = [play_day(d.inst, d.path, d.requests, policy, d.instance_seed).cost for d in val_days]
            results.append((setting, costs))
            rows.append((", ".join(f"{k}={v}" for k, v in setting.items()), costs))
            say(f"  validation {setting}: mean {np.mean(costs):,.0f} (greedy {np.mean(rows[0][1]):,.0f})")
        best, best_costs = min(results, key=lambda r: (float(np.mean(r[1])), candidates(cfg).index(r[0])))
        info = {
            "train_days": [d.describe() for d in train_days],
            "val_days": [d.describe() for d in val_days],
            "waves": len(samples),
            "log": log,
            "validation_mean": float(np.mean(best_costs)),
            "greedy_validation_mean": float(np.mean(rows[0][1])),
            "cpu_s": time.process_time() - started,
        }
        settings = {"mode": "prize", "prize_scale": 0.2, "threshold": 0.5, **best}
        model = save_epoch_model(
            run_dir / "model.pt", net, settings["mode"], settings["prize_scale"], settings["threshold"], info
        )
        _write_validation(run_dir / "validation.md", cfg, val_days, rows, best, info)
        (run_dir / "training.json").write_text(json.dumps(info, indent=1))
        return model
    finally:
        torch.set_num_threads(threads)


def _write_validation(
    path: Path,
    cfg: EpochTrainingConfig,
    days: Sequence[Day],
    rows: Sequence[tuple[str, list[int]]],
    best: dict[str, Any],
    info: dict[str, Any],
) -> None:
    greedy = float(np.mean(rows[0][1]))
    lines = [
        f"# Learned wave policy: validation ({len(days)} days, "
        f"{cfg.solver_iterations} PyVRP iterations per wave)",
        "",
        f"Chosen: {best}. Trained on {len(info['train_days'])} days ({info['waves']} waves); "
        f"{info['cpu_s']:.0f} CPU s in all.",
        "",
        "| policy | mean cost | vs greedy | " + " | ".join(d.describe() for d in days) + " |",
        "|---|---|---|" + "---|" * len(days),
    ]
    for name, costs in rows:
        lines.append(
            f"| {name} | {np.mean(costs):,.0f} | {100 * (np.mean(costs) / greedy - 1):+.1f}% | "
            + " | ".join(f"{c:,}" for c in costs)
            + " |"
        )
    path.write_text("\n".join(lines) + "\n")


def run_epoch_training(
    config: str | Path, runs_dir: str | Path, seed: int | None = None, progress: bool = True
) -> Path:
    """``train.py --config X`` for a ``task: euro2022_epoch`` config: a new run folder under ``runs_dir``."""
    cfg = load_epoch_config(config, seed)
    run_dir = Path(runs_dir) / f"{TASK}__{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    model = train_epoch_policy(cfg, run_dir, progress)
    if progress:
        print(f"wrote {model}")
    return model
