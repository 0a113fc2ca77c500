"""``LearnedRoutingPolicy``: a trained ``RoutingNet`` behind the ``RoutingPolicy`` protocol (argmax)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch
from stable_baselines3.common.save_util import load_from_zip_file

from agents.base import TIE_LOGIT, WAIT
from agents.learned.routing_model import RoutingNet
from lastmile_env.routing_env import RoutingObservation
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import World

_NET_PREFIX = "features_extractor.net."


def is_routing_model(path: str | Path) -> bool:
    """Whether a model zip holds a ``RoutingNet`` (not a dispatch net)."""
    _, params, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
    return any(k.startswith(_NET_PREFIX + "attention.") for k in (params or {}).get("policy", {}))


class LearnedRoutingPolicy:
    """Serves the stop with the highest masked logit, or waits when the wait logit is highest (ties to the
    earlier slot, i.e. plan order). The observation comes from the routing env's own encoder with one slot
    per planned stop, so the network sees every stop whatever the plan's length."""

    name = "learned_route"

    def __init__(self, net: RoutingNet) -> None:
        self.net = net
        self._world: World | None = None
        self._encoder: RoutingObservation | None = None

    @classmethod
    def load(cls, path: str | Path) -> LearnedRoutingPolicy:
        """From an SB3 zip saved by routing training (a checkpoint or ``final.zip``)."""
        data, params, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
        if data is None or "policy" not in params:
            raise ValueError(f"{path}: not an SB3 model zip")
        kwargs = dict((data.get("policy_kwargs") or {}).get("features_extractor_kwargs") or {})
        policy_state = cast(dict[str, torch.Tensor], params["policy"])
        state = {k.removeprefix(_NET_PREFIX): v for k, v in policy_state.items() if k.startswith(_NET_PREFIX)}
        if not any(k.startswith("attention.") for k in state):
            raise ValueError(f"{path}: not trained with a routing policy (no RoutingNet weights)")
        net = RoutingNet(**kwargs)
        net.load_state_dict(state)
        net.eval()
        return cls(net)

    def reset(self, seed: int | None = None) -> None:
        pass

    def route(self, sim: Simulator) -> int:
        logits = self.logits(sim)
        action = int(np.flatnonzero(logits >= logits.max() - TIE_LOGIT)[0])
        return WAIT if action == len(logits) - 1 else action

    def logits(self, sim: Simulator) -> np.ndarray:
        """The masked logits of the pending routing decision: one per planned stop, then wait."""
        if self._encoder is None or self._world is not sim.world:
            self._world, self._encoder = sim.world, RoutingObservation(sim.world)
        assert sim.routing_vehicle is not None, "no routing decision is pending"
        n_stops = max(1, len(sim.vehicles[sim.routing_vehicle].route))
        obs = self._encoder.encode(sim, n_slots=n_stops)
        assert isinstance(obs, dict)
        batch = {k: torch.as_tensor(v, dtype=torch.float32).unsqueeze(0) for k, v in obs.items()}
        with torch.no_grad():
            logits, _ = self.net.forward_obs(batch)
        return logits[0].numpy()
