"""The routing network: an attention / pointer scorer over a vehicle's planned stops, and its SB3 policies.

``RoutingNet`` maps one observation of the routing env (``stops``, ``vehicle``, ``global``,
``action_mask``) to ``K + 1`` logits (one per stop slot, then wait) and a value::

    e_i     = embed(stop_i)                                     each stop, shared weights
    h       = e + SelfAttention(e, padding masked)              one transformer-style layer over the stops
    h       = h + FFN(h)
    ctx     = [masked mean_i h_i, masked max_i h_i, vehicle, global]
    logit_i = pointer([h_i, stop_i, ctx]) + prior(stop_i)       one shared MLP for every stop
    wait    = wait([ctx])
    value   = value([ctx])

``prior`` is a learnable linear map of a stop's own features, initialized to ``-10 x delta_cost + 1 x
is_first``: the untrained policy is close to greedy re-pricing (the stop whose move to the front gives the
cheapest plan, by the simulator's own price), which PPO then improves on, instead of a uniform random
router whose days cost ten times more.

Nothing depends on the number of slots K, and a stop's features do not depend on its slot (its position in
the plan is a feature), so permuting the stops permutes their logits and leaves wait and value unchanged;
padding slots (``present`` = 0) are excluded from attention and pooling, so the same weights score a plan
of any length. Masked actions get ``MASKED_LOGIT``. As for dispatch, the whole net is the SB3 policy's
features extractor (features = masked logits, then the value) with identity heads.
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.learned.model import MASKED_LOGIT, NetHeads, _mlp
from lastmile_env.routing_env import ROUTE_GLOBAL_FEATURES, ROUTE_VEHICLE_FEATURES, STOP_FEATURES

N_STOP, N_RVEHICLE, N_RGLOBAL = len(STOP_FEATURES), len(ROUTE_VEHICLE_FEATURES), len(ROUTE_GLOBAL_FEATURES)
PRESENT = STOP_FEATURES.index("present")


class RoutingNet(nn.Module):
    """Scores every planned stop of the deciding vehicle, and waiting; see the module docstring.

    Args:
        hidden: width of the stop embedding and of every hidden layer.
        heads: attention heads (``hidden`` must be divisible by it).
    """

    def __init__(self, hidden: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.hidden = hidden
        self.heads = heads
        self.embed = _mlp(N_STOP, hidden, hidden, out_gain=1.0)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn = _mlp(hidden, hidden, hidden, out_gain=1.0)
        self.norm2 = nn.LayerNorm(hidden)
        context = 2 * hidden + N_RVEHICLE + N_RGLOBAL
        self.pointer = _mlp(hidden + N_STOP + context, hidden, 1, out_gain=0.01)
        self.prior = nn.Linear(N_STOP, 1)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)
        with torch.no_grad():
            self.prior.weight[0, STOP_FEATURES.index("delta_cost")] = -10.0
            self.prior.weight[0, STOP_FEATURES.index("is_first")] = 1.0
        self.wait = _mlp(context, hidden, 1, out_gain=0.01)
        self.value = _mlp(context, hidden, 1, out_gain=1.0)

    def forward(
        self, stops: torch.Tensor, vehicle: torch.Tensor, global_: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stops ``(B, K, N_STOP)``, vehicle ``(B, N_RVEHICLE)``, global ``(B, N_RGLOBAL)``, mask ``(B, K+1)``
        -> masked logits ``(B, K + 1)`` (stops, wait) and value ``(B, 1)``."""
        batch, k = stops.shape[0], stops.shape[1]
        present = stops[:, :, PRESENT] > 0.5
        # A row without any stop (the end-of-day placeholder) attends to its first slot, not to nothing.
        padding = ~present
        padding[:, 0] &= present.any(dim=1)
        e = self.embed(stops)
        attended, _ = self.attention(e, e, e, key_padding_mask=padding, need_weights=False)
        h = self.norm1(e + attended)
        h = self.norm2(h + self.ffn(h))
        weight = present.unsqueeze(2).float()
        count = weight.sum(dim=1).clamp(min=1.0)
        mean = (h * weight).sum(dim=1) / count
        peak = h.masked_fill(~present.unsqueeze(2), -1e4).amax(dim=1) * present.any(dim=1, keepdim=True)
        ctx = torch.cat([mean, peak, vehicle, global_], dim=1)
        per_stop = torch.cat([h, stops, ctx.unsqueeze(1).expand(batch, k, -1)], dim=2)
        scores = self.pointer(per_stop).squeeze(2) + self.prior(stops).squeeze(2)
        logits = torch.cat([scores, self.wait(ctx)], dim=1)
        return logits.masked_fill(mask < 0.5, MASKED_LOGIT), self.value(ctx)

    def forward_obs(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` on a batch of Dict observations (``stops`` flat or ``(B, K, N_STOP)``)."""
        stops = obs["stops"].reshape(obs["stops"].shape[0], -1, N_STOP)
        return self(stops, obs["vehicle"], obs["global"], obs["action_mask"])


class RoutingFeatures(BaseFeaturesExtractor):
    """The whole ``RoutingNet`` as an SB3 features extractor: features = ``[K + 1 masked logits, value]``."""

    def __init__(self, observation_space: spaces.Dict, hidden: int = 64, heads: int = 4) -> None:
        mask_shape = observation_space["action_mask"].shape
        assert mask_shape is not None
        n_actions = int(mask_shape[0])
        super().__init__(observation_space, features_dim=n_actions + 1)
        self.n_actions = n_actions
        self.net = RoutingNet(hidden, heads)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, value = self.net.forward_obs(observations)
        return torch.cat([logits, value], dim=1)


class MaskableRoutingPolicy(NetHeads, MaskableActorCriticPolicy):
    """``RoutingNet`` as an sb3-contrib ``MaskableActorCriticPolicy`` (for ``MaskablePPO``)."""

    extractor = RoutingFeatures


class RoutingActorCriticPolicy(NetHeads, ActorCriticPolicy):
    """``RoutingNet`` as an SB3 ``ActorCriticPolicy`` (for ``PPO`` / ``A2C``); masking comes from the obs."""

    extractor = RoutingFeatures


def routing_net(policy: BasePolicy) -> RoutingNet:
    """The ``RoutingNet`` inside a routing policy (the same module, not a copy)."""
    extractor = policy.features_extractor
    if not isinstance(extractor, RoutingFeatures):
        raise TypeError(f"{type(policy).__name__} has no RoutingNet (features: {type(extractor).__name__})")
    return extractor.net
