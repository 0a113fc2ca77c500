"""``LearnedPolicy``: a trained ``DispatchNet`` behind the ``Policy`` protocol (deterministic, argmax)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from stable_baselines3.common.save_util import load_from_zip_file

from agents.base import decision_from_logits
from agents.learned.model import DispatchNet
from lastmile_env.observations import DispatchObservation
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import World

_NET_PREFIX = "features_extractor.net."  # where a NetHeads policy's extractor keeps its network


def load_net_state(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The network's constructor kwargs and weights from an SB3 zip saved by training (a checkpoint or
    ``final.zip``) of a ``NetHeads`` policy; the weights are empty when the zip holds no such network."""
    data, params, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
    if data is None or "policy" not in params:
        raise ValueError(f"{path}: not an SB3 model zip")
    kwargs = dict((data.get("policy_kwargs") or {}).get("features_extractor_kwargs") or {})
    policy_state = cast(dict[str, torch.Tensor], params["policy"])
    state = {k.removeprefix(_NET_PREFIX): v for k, v in policy_state.items() if k.startswith(_NET_PREFIX)}
    return kwargs, state


class LearnedPolicy:
    """Gives the order to the argmax of the network's masked logits: action ``V`` is ``REJECT``, ``V + 1``
    (for a net trained with the env's defer action) ``DEFER``.

    The observation comes from the env's own ``DispatchObservation`` encoder, built for whichever world the
    simulator runs, so one network plays any fleet size. The policy reads the network it is given (during
    training: the live one) and never changes it.
    """

    name = "learned"

    def __init__(self, net: DispatchNet) -> None:
        self.net = net
        self._world: World | None = None
        self._encoder: DispatchObservation | None = None

    @classmethod
    def load(cls, path: str | Path) -> LearnedPolicy:
        """From an SB3 zip saved by training (a checkpoint or ``final.zip``): the net's weights and width."""
        extractor_kwargs, state = load_net_state(path)
        if any(k.startswith("attention.") for k in state):
            raise ValueError(
                f"{path}: a routing model (RoutingNet weights), not a dispatch policy; it plays as the "
                "routing half of a pair, e.g. insertion+model.zip"
            )
        if not state:
            raise ValueError(f"{path}: not trained with a dispatch policy (no DispatchNet weights)")
        net = DispatchNet(**extractor_kwargs, defer=any(k.startswith("defer.") for k in state))
        net.load_state_dict(state)
        net.eval()
        return cls(net)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, sim: Simulator) -> int:
        return decision_from_logits(self.logits(sim), len(sim.vehicles))

    def logits(self, sim: Simulator) -> np.ndarray:
        """The masked logits of the pending decision: ``V`` vehicles, reject, [defer]."""
        if self._encoder is None or self._world is not sim.world:
            self._world, self._encoder = sim.world, DispatchObservation(sim.world, defer=self.net.with_defer)
        obs = self._encoder.encode(sim)
        assert isinstance(obs, dict)
        batch = {k: torch.as_tensor(v, dtype=torch.float32).unsqueeze(0) for k, v in obs.items()}
        with torch.no_grad():
            logits, _ = self.net.forward_obs(batch)
        return logits[0].numpy()
