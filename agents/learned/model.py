"""The dispatch network: a permutation-invariant vehicle scorer, and its Stable-Baselines3 policies.

``DispatchNet`` maps one observation of the env (``order``, ``vehicles``, ``global``, ``action_mask``) to
``V + 1`` logits (one per vehicle, then reject; then defer for an env made with ``defer=True``) and a
value::

    e_i     = embed(vehicle_i)                                   each vehicle, shared weights
    fleet   = [mean_i e_i, max_i e_i]                            fleet context, order-free pooling
    logit_i = score([vehicle_i, order, global, fleet])           one shared MLP for every vehicle
    reject  = reject([fleet, order, global])                     (defer: the same with its own MLP)
    value   = value([fleet, order, global])

No layer depends on the fleet size V, so permuting the vehicles permutes their logits the same way and
leaves the reject logit and the value unchanged, and weights trained on one fleet run on any other.
Masked actions get a logit of ``MASKED_LOGIT``. An env padded to ``max_vehicles`` slots (training across
fleet sizes) adds ``vehicle_mask`` to the observation: the pooling then runs over the real vehicles only, so
a padded observation gives the same logits and value as the unpadded one of the same fleet.

For SB3 the whole network is the policy's features extractor (``DispatchFeatures``), whose features are the
masked logits followed by the value; the policy's ``mlp_extractor`` only splits them and ``action_net`` /
``value_net`` are identities. ``MaskableDispatchPolicy`` is for sb3-contrib's ``MaskablePPO``;
``DispatchPolicy`` for plain ``PPO`` / ``A2C``, which then never sample a masked action either, because
the mask is part of the observation and the network applies it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from lastmile_env.observations import GLOBAL_FEATURES, ORDER_FEATURES, VEHICLE_FEATURES

MASKED_LOGIT = -1e8  # the value sb3-contrib's MaskableCategorical uses: exp() underflows to exactly 0

N_ORDER, N_VEHICLE, N_GLOBAL = len(ORDER_FEATURES), len(VEHICLE_FEATURES), len(GLOBAL_FEATURES)


def _mlp(n_in: int, hidden: int, n_out: int, out_gain: float) -> nn.Sequential:
    """Two ReLU hidden layers (orthogonal init, gain sqrt 2) and a linear output with gain ``out_gain``."""
    linears = [nn.Linear(n_in, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, n_out)]
    for layer, gain in zip(linears, (np.sqrt(2), np.sqrt(2), out_gain), strict=True):
        nn.init.orthogonal_(layer.weight, gain=float(gain))
        nn.init.zeros_(layer.bias)
    return nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2])


class DispatchNet(nn.Module):
    """Scores every vehicle for the pending order with one shared MLP; see the module docstring.

    Args:
        hidden: width of every hidden layer and of the vehicle embedding.
        defer: add the defer logit (after reject), for envs made with ``defer=True``.
    """

    def __init__(self, hidden: int = 64, defer: bool = False) -> None:
        super().__init__()
        self.hidden = hidden
        self.with_defer = defer
        context = 2 * hidden + N_ORDER + N_GLOBAL  # pooled fleet, order, global
        self.embed = _mlp(N_VEHICLE, hidden, hidden, out_gain=float(np.sqrt(2)))
        self.score = _mlp(N_VEHICLE + context, hidden, 1, out_gain=0.01)
        self.reject = _mlp(context, hidden, 1, out_gain=0.01)
        self.defer = _mlp(context, hidden, 1, out_gain=0.01) if defer else None
        self.value = _mlp(context, hidden, 1, out_gain=1.0)

    def forward(
        self,
        order: torch.Tensor,
        vehicles: torch.Tensor,
        global_: torch.Tensor,
        mask: torch.Tensor,
        present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Order ``(B, N_ORDER)``, vehicles ``(B, V, N_VEHICLE)``, global ``(B, N_GLOBAL)``, mask ``(B, A)``
        -> masked logits ``(B, A)`` (vehicles, reject, [defer]) and value ``(B, 1)``. ``present``
        ``(B, V)``: which vehicle slots are real (a padded fleet; the others are left out of the pooling and
        must be masked in ``mask``); None: all of them."""
        batch, n_vehicles = vehicles.shape[0], vehicles.shape[1]
        e = self.embed(vehicles)
        if present is None:
            pooled = [e.mean(dim=1), e.amax(dim=1)]
        else:
            real = (present > 0.5).unsqueeze(2)
            count = real.sum(dim=1).clamp(min=1)
            pooled = [
                e.masked_fill(~real, 0.0).sum(dim=1) / count,
                e.masked_fill(~real, float("-inf")).amax(dim=1).clamp(min=torch.finfo(e.dtype).min),
            ]
        shared = torch.cat([*pooled, order, global_], dim=1)
        per_vehicle = torch.cat([vehicles, shared.unsqueeze(1).expand(batch, n_vehicles, -1)], dim=2)
        heads = [self.score(per_vehicle).squeeze(2), self.reject(shared)]
        if self.defer is not None:
            heads.append(self.defer(shared))
        logits = torch.cat(heads, dim=1).masked_fill(mask < 0.5, MASKED_LOGIT)
        return logits, self.value(shared)

    def forward_obs(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` on a batch of Dict observations (``vehicles`` flat or ``(B, V, N_VEHICLE)``; with
        ``vehicle_mask`` when the env pads its fleet)."""
        vehicles = obs["vehicles"].reshape(obs["vehicles"].shape[0], -1, N_VEHICLE)
        return self(obs["order"], vehicles, obs["global"], obs["action_mask"], obs.get("vehicle_mask"))


class DispatchFeatures(BaseFeaturesExtractor):
    """The whole ``DispatchNet`` as an SB3 features extractor: features = ``[A masked logits, value]``.

    The defer head is there when the observation's action mask has a defer entry (``V + 2`` actions).
    """

    def __init__(self, observation_space: spaces.Dict, hidden: int = 64) -> None:
        mask_shape, vehicles_shape = (
            observation_space["action_mask"].shape,
            observation_space["vehicles"].shape,
        )
        assert mask_shape is not None and vehicles_shape is not None
        n_actions, n_vehicles = int(mask_shape[0]), int(vehicles_shape[0])
        if n_actions not in (n_vehicles + 1, n_vehicles + 2):
            raise ValueError(f"{n_actions} actions for {n_vehicles} vehicles: expected V + 1 or V + 2")
        super().__init__(observation_space, features_dim=n_actions + 1)
        self.n_actions = n_actions
        self.net = DispatchNet(hidden, defer=n_actions == n_vehicles + 2)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, value = self.net.forward_obs(observations)
        return torch.cat([logits, value], dim=1)


class SplitLatent(nn.Module):
    """Stands in for SB3's ``MlpExtractor``: splits ``DispatchFeatures`` into the actor and critic latents."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.latent_dim_pi = n_actions
        self.latent_dim_vf = 1

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.latent_dim_pi]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, self.latent_dim_pi :]


def _build_identity_heads(
    policy: ActorCriticPolicy | MaskableActorCriticPolicy, lr_schedule: Schedule
) -> None:
    """Replaces SB3's ``_build``: split latents, identity heads (the net has its own), then the optimizer."""
    extractor = policy.features_extractor
    n_actions = getattr(extractor, "n_actions", None)  # DispatchFeatures, or the routing net's extractor
    assert isinstance(n_actions, int), "the policy's extractor must output [masked logits, value]"
    policy.mlp_extractor = SplitLatent(n_actions)  # type: ignore[assignment]
    policy.action_net = nn.Identity()
    policy.value_net = nn.Identity()  # type: ignore[assignment]
    policy.optimizer = policy.optimizer_class(
        policy.parameters(),
        lr=lr_schedule(1),  # type: ignore[call-arg]
        **policy.optimizer_kwargs,
    )


class NetHeads:
    """Mixin for an SB3 actor-critic policy whose features extractor (``extractor``) is a whole network that
    outputs ``[masked logits, value]``: identity heads, one extractor shared by actor and critic, the
    network's own initialization (no orthogonal re-init)."""

    extractor: type[BaseFeaturesExtractor]

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("features_extractor_class", self.extractor)
        kwargs.setdefault("ortho_init", False)
        kwargs.setdefault("share_features_extractor", True)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)  # type: ignore[call-arg]

    def _build(self, lr_schedule: Schedule) -> None:
        _build_identity_heads(self, lr_schedule)  # type: ignore[arg-type]


class MaskableDispatchPolicy(NetHeads, MaskableActorCriticPolicy):
    """``DispatchNet`` as an sb3-contrib ``MaskableActorCriticPolicy`` (for ``MaskablePPO``).

    ``policy_kwargs=dict(features_extractor_kwargs=dict(hidden=64))`` sets the width.
    """

    extractor = DispatchFeatures


class DispatchPolicy(NetHeads, ActorCriticPolicy):
    """``DispatchNet`` as an SB3 ``ActorCriticPolicy`` (for ``PPO`` / ``A2C``); masking comes from the obs."""

    extractor = DispatchFeatures


def dispatch_net(policy: BasePolicy) -> DispatchNet:
    """The ``DispatchNet`` inside a dispatch policy (the same module, not a copy)."""
    extractor = policy.features_extractor
    if not isinstance(extractor, DispatchFeatures):
        raise TypeError(f"{type(policy).__name__} has no DispatchNet (features: {type(extractor).__name__})")
    return extractor.net
