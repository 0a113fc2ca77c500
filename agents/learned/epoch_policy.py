"""A learned when-to-dispatch (wave / epoch) policy: a network scores each pooled order, PyVRP decides.

``EpochNet`` scores every open request of a wave from its ``REQUEST_FEATURES``, the wave's
``GLOBAL_FEATURES`` and the mean embedding of the whole pool (``lastmile_env.epoch_env.wave_features``,
the env's own observation): the logit of "in hindsight, this request should go now". ``LearnedWave``
(a ``WavePolicy``) turns the scores into a choice in one of two ways:

- ``prize`` (the EURO Meets NeurIPS 2022 winners' idea, simplified): the must-go requests are required,
  every other one is optional with a prize ``prize_scale * odds(p) * its round trip from the center`` and
  PyVRP solves that prize-collecting VRPTW of the whole pool within the policy's budget; the requests on
  its routes go now. A likely request is sent unless it costs a lot; an unlikely one only if it is almost
  free on a route that goes anyway.
- ``threshold``: the requests with ``p >= threshold`` (and the must-go ones) go.

Two margins matter where lateness costs (the `default` city; both 0 on the competition's days):
``slack_min`` makes an order must-go once its direct trip after the next wave would reach it within that
many minutes of its due time (``Simulator.must_dispatch``), ``safety_min`` makes PyVRP plan every due time
that many minutes early (``solve_wave``).

The chosen batch is then routed like any wave policy's (``dispatch_wave``, the same budget), so ``prize``
runs two solves per wave, like ``urgent_routes``. Everything is deterministic: the network is evaluated
in float32 on the CPU, PyVRP has an iteration budget and a seed.

A model file (``.pt``) holds the weights and how to use them (format, feature names, mode, prize scale,
threshold, training summary); ``load_epoch_model`` checks it and names the problem in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from lastmile_env.config import REPO_ROOT, ConfigError
from lastmile_env.epoch_env import GLOBAL_FEATURES, REQUEST_FEATURES, wave_features
from lastmile_env.sim.simulator import Simulator
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.wave_routing import WAVE_ITERATIONS, WAVE_SEED, solve_wave

MODEL_FORMAT = "lastmile-epoch-dispatch-v1"
ROWS = 512  # wave_features rows (the env's default max_requests): a bigger pool's newest orders wait
MAX_ODDS = 1e3  # the prize's odds are capped: p = 1 is a large prize, not an infinite one
SHIPPED_EPOCH_MODEL = REPO_ROOT / "experiments" / "euro2022" / "learned_epoch" / "model.pt"
Mode = Literal["prize", "threshold"]


class EpochNet(nn.Module):
    """Per-request logits: a shared MLP embeds each request with the wave's global features, a second MLP
    scores it together with the mean embedding of the pool (what else could go with it)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        n_in = len(REQUEST_FEATURES) + len(GLOBAL_FEATURES)
        self.hidden = hidden
        self.embed = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.score = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, requests: torch.Tensor, mask: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """``requests`` (B, N, F), ``mask`` (B, N) in {0, 1}, ``glob`` (B, G) -> logits (B, N)."""
        x = torch.cat([requests, glob[:, None, :].expand(-1, requests.shape[1], -1)], dim=-1)
        h = self.embed(x)
        m = mask[..., None]
        pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        logits = self.score(torch.cat([h, pooled[:, None, :].expand_as(h)], dim=-1)).squeeze(-1)
        return logits


def wave_probabilities(net: EpochNet, sim: Simulator) -> np.ndarray:
    """The network's probability that each observed pooled order should go now (``sim.pool`` order)."""
    obs = wave_features(sim, ROWS)
    k = int(obs["request_mask"].sum())
    with torch.no_grad():
        logits = net(
            torch.from_numpy(obs["requests"][None, :k]),
            torch.from_numpy(obs["request_mask"][None, :k].astype(np.float32)),
            torch.from_numpy(obs["global"][None]),
        )
    return torch.sigmoid(logits[0]).numpy().astype(np.float64)


class LearnedWave:
    """The wave policy of an ``EpochNet`` (see the module's docstring for the two modes)."""

    def __init__(
        self,
        net: EpochNet,
        mode: Mode = "prize",
        prize_scale: float = 0.2,
        threshold: float = 0.5,
        budget: SolverBudget | None = None,
        seed: int = WAVE_SEED,
        name: str = "learned_epoch",
        slack_min: float = 0.0,
        safety_min: float = 0.0,
    ) -> None:
        for what, minutes in (("slack_min", slack_min), ("safety_min", safety_min)):
            if not 0 <= minutes < float("inf"):
                raise ConfigError(f"{what} must be a finite number of minutes >= 0, got {minutes}")
        if mode not in ("prize", "threshold"):
            raise ConfigError(f"mode must be 'prize' or 'threshold', got {mode!r}")
        if not prize_scale > 0 or not 0 < threshold < 1:
            raise ConfigError(
                f"prize_scale must be > 0 and threshold in (0, 1), got {prize_scale}, {threshold}"
            )
        self.net = net.eval()
        self.mode: Mode = mode
        self.prize_scale = prize_scale
        self.threshold = threshold
        self.budget = budget or SolverBudget(max_iterations=WAVE_ITERATIONS)
        self.seed = seed
        self.name = name
        self.slack_min = float(slack_min)
        self.safety_min = float(safety_min)

    def reset(self, seed: int | None = None) -> None:
        return None

    def choose(self, sim: Simulator) -> list[int]:
        pool, must = sim.pool, sim.must_dispatch(self.slack_min)
        if must.all():
            return [o.id for o in pool]
        p = np.zeros(len(pool))
        p[: min(len(pool), ROWS)] = wave_probabilities(self.net, sim)
        if self.mode == "threshold":
            return [o.id for o, m, q in zip(pool, must, p, strict=True) if m or q >= self.threshold]
        odds = np.minimum(p / np.maximum(1.0 - p, 1.0 / MAX_ODDS), MAX_ODDS)
        prizes = {
            o.id: self.prize_scale * float(q) * round_trip_cost(sim, o.center, o.loc)
            for o, m, q in zip(pool, must, odds, strict=True)
            if not m
        }
        ids = [o.id for o in pool]
        routes, _ = solve_wave(sim, ids, self.budget, self.seed, prizes, safety_min=self.safety_min)
        routed = {i for _, ids in routes for i in ids}
        return sorted(routed | {o.id for o, m in zip(pool, must, strict=True) if m})


def round_trip_cost(sim: Simulator, center: int, loc: int) -> float:
    """What the cheapest vehicle pays to drive from ``center`` to ``loc`` and back (free flow): the unit of a
    request's prize (on a competition day, the round trip's driving seconds)."""
    w = sim.world
    km = float(w.dist_arr[center, loc] + w.dist_arr[loc, center])
    hours = float(w.time_arr[center, loc] + w.time_arr[loc, center]) / 60.0
    return min(s.cost_per_km * km + s.cost_per_hour * hours for s in w.vehicles)


def save_epoch_model(
    path: str | Path, net: EpochNet, mode: Mode, prize_scale: float, threshold: float, info: dict[str, Any]
) -> Path:
    """Write a model file: the weights and how to play them (see ``load_epoch_model``)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "request_features": list(REQUEST_FEATURES),
        "global_features": list(GLOBAL_FEATURES),
        "hidden": net.hidden,
        "mode": mode,
        "prize_scale": float(prize_scale),
        "threshold": float(threshold),
        "info": info,
        "state_dict": net.state_dict(),
    }
    tmp = out.with_name(out.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(out)
    return out


def load_epoch_model(path: str | Path) -> tuple[EpochNet, dict[str, Any]]:
    """The network of a model file and its settings; ConfigError (one line) for a missing file, a file that
    is not a model of this kind, or one trained on other features."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: epoch dispatch model not found")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for a file that is not its own
        raise ConfigError(f"{p}: not an epoch dispatch model ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{p}: not an epoch dispatch model (expected format {MODEL_FORMAT})")
    if payload.get("request_features") != list(REQUEST_FEATURES) or payload.get("global_features") != list(
        GLOBAL_FEATURES
    ):
        raise ConfigError(f"{p}: trained on other wave features than lastmile_env.epoch_env's; retrain it")
    net = EpochNet(int(payload["hidden"]))
    try:
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{p}: weights do not fit the network ({str(exc).splitlines()[0]})") from None
    settings = {k: payload[k] for k in ("mode", "prize_scale", "threshold", "info")}
    return net.eval(), settings


def learned_wave(
    path: str | Path, budget: SolverBudget | None = None, seed: int = WAVE_SEED, **settings: Any
) -> LearnedWave:
    """The wave policy of a model file, with its saved mode and prize scale unless ``settings`` says
    otherwise (``mode``, ``prize_scale``, ``threshold``)."""
    net, saved = load_epoch_model(path)
    saved.pop("info")
    return LearnedWave(net, budget=budget, seed=seed, name=str(path), **{**saved, **settings})
