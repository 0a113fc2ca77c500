"""``LearnedRoutingPolicy``: a trained ``RoutingNet`` behind the ``RoutingPolicy`` protocol (argmax)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agents.base import TIE_LOGIT, WAIT
from agents.learned.policy import load_net_state
from agents.learned.routing_model import RoutingNet
from lastmile_env.routing_env import RoutingObservation
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import World


def is_routing_model(path: str | Path) -> bool:
    """Whether a model zip holds a ``RoutingNet`` (not a dispatch net)."""
    return any(k.startswith("attention.") for k in load_net_state(path)[1])


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
        kwargs, state = load_net_state(path)
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
