"""N independent days of a dispatch scenario stepped in one call: the vector entry point of
``LastMile-Dispatch-v0``.

``gym.make_vec("LastMile-Dispatch-v0", num_envs=64, vectorization_mode="vector_entry_point",
scenario="default")`` returns a ``DispatchVectorEnv``. Each sub-env is a ``DispatchEnv`` over the scenario's
one shared world (the road graph, the travel matrix and the order generator are built once per process);
the batch skips the per-env Gymnasium wrappers and writes every observation into one preallocated batch.
Sub-env ``i`` of ``reset(seed=s)`` plays day ``s + i`` and its later days come from its own seeded
generator, exactly as a single ``DispatchEnv`` reset with ``s + i`` and then without a seed: every day is
the single env's day, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, create_empty_array

from lastmile_env.env import DispatchEnv


class DispatchVectorEnv(VectorEnv):
    """
    ## Description
    ``num_envs`` independent days of ``DispatchEnv`` (same arguments) stepped together, in one process.

    ## Spaces
    ``single_observation_space`` / ``single_action_space`` are the ``DispatchEnv``'s; the batched
    ``observation_space`` stacks them (a Dict of ``(N, ...)`` arrays, or ``(N, D)`` with
    ``observation="flat"``) and ``action_space`` is ``MultiDiscrete([A] * N)``. ``action_masks()`` gives
    every sub-env's valid actions as an ``(N, A)`` boolean array (also the ``action_mask`` of a Dict
    observation).

    ## Autoreset
    Same-step (``AutoresetMode.SAME_STEP``, as SB3 expects): a sub-env whose day ends (terminated, or
    truncated after ``max_episode_steps`` decisions) is reset within the same ``step``; the returned
    observation is the new day's first, and ``info["final_obs"]`` / ``info["final_info"]`` (masked by
    ``info["_final_obs"]``) hold the ended day's last observation and info.

    ## Seeding
    ``reset(seed=s)``: sub-env ``i`` plays day ``s + i`` (a list gives one seed per sub-env); later days
    come from each sub-env's own generator, as in the single env.

    ## Info
    The single env's ``info`` keys, each an ``(N,)`` array with its ``_key`` mask: true where the sub-env's
    info has the key (a day reset within the step gives its reset info, without ``invalid_action``: mask
    false, value False).

    ## Performance
    The sub-envs are stepped one after another in this process: the batch saves the per-env wrappers and
    lets a policy act on all N observations at once (one forward pass: the training gain), but shares none
    of a sub-env's own step (its insertion search, event loop and observation), which costs more with many
    days interleaved (their state outgrows the CPU caches). Per core it runs at about 0.5-0.7x a single
    env with N = 64 (``benchmarks/results/speed2.md``, fourth pass).

    ## Arguments
    ``num_envs``, ``max_episode_steps`` (``None``: never truncate; ``make_vec`` passes the registered 10,000),
    and every ``DispatchEnv`` argument (``scenario``, ``overrides``, ``observation``, ``defer``, ``reward``,
    ...). ``render_mode`` is not supported.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}  # noqa: RUF012

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **env_kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, int)
            or max_episode_steps < 1
        ):
            raise ValueError(
                f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}"
            )
        if env_kwargs.get("render_mode") is not None:
            raise ValueError("DispatchVectorEnv does not render: leave render_mode unset")
        first = DispatchEnv(**env_kwargs)
        # The other sub-envs share the first one's config, world, generator and encoder (all read-only).
        self.envs: list[DispatchEnv] = [first, *(first.spawn() for _ in range(num_envs - 1))]
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._obs: Any = create_empty_array(self.single_observation_space, num_envs, fn=np.zeros)
        self._obs_keys: tuple[str, ...] = tuple(self._obs) if isinstance(self._obs, dict) else ()
        # the flat observation's action mask: the n_actions entries before the (padded fleet's) vehicle mask
        encoder = first.encoder
        flat_size = int(np.prod(encoder.space.shape or (0,)))
        end = flat_size - (encoder.max_vehicles or 0) if encoder.flat else encoder.n_actions
        self._flat_mask = slice(end - encoder.n_actions, end)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._started = False  # reset() has been called

    @property
    def n_actions(self) -> int:
        return int(self.single_action_space.n)  # type: ignore[attr-defined]

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every sub-env (or, with ``options={"reset_mask": mask}``, those where ``mask`` is true)."""
        super().reset(seed=seed if isinstance(seed, int) else None)
        seeds: list[int | None]
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} sub-envs")
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"reset_mask must be a boolean array of shape ({self.num_envs},)")
            if not self._started and not mask.all():
                raise ValueError("the first reset must reset every sub-env: leave reset_mask out")
        infos: list[dict[str, Any]] = []
        for i, env in enumerate(self.envs):
            if mask[i]:
                obs, info = env.reset(seed=seeds[i])
                self._elapsed[i] = 0
                self._write(i, obs)
            else:
                info = env._info()
            infos.append(info)
        self._started = True
        return self._copy_obs(), self._batch_infos(infos)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One decision in every sub-env; a day that ends is reset in the same step (see Autoreset)."""
        acts = np.asarray(actions)
        if acts.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {acts.shape}")
        n = self.num_envs
        rewards = np.empty(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        infos: list[dict[str, Any]] = [{}] * n
        ended: list[tuple[int, Any, dict[str, Any]]] = []  # (sub-env, its day's last observation, info)
        limit = self.max_episode_steps
        cut = [False] * n if limit is None else (self._elapsed + 1 >= limit).tolist()
        for i, (env, action) in enumerate(zip(self.envs, acts.tolist(), strict=True)):
            obs, reward, term, _, info = env.step(action)
            self._elapsed[i] += 1
            rewards[i] = reward
            if term or cut[i]:
                terminated[i], truncated[i] = term, not term
                ended.append((i, obs, info))
                obs, info = env.reset()
                self._elapsed[i] = 0
            self._write(i, obs)
            infos[i] = info
        batch = self._batch_infos(infos)
        if ended:
            done = np.zeros(n, dtype=bool)
            final_obs = np.full(n, None, dtype=object)
            final_infos: list[dict[str, Any]] = [{}] * n
            for i, obs, info in ended:
                done[i], final_obs[i], final_infos[i] = True, obs, info
            batch["final_obs"], batch["_final_obs"] = final_obs, done
            batch["final_info"], batch["_final_info"] = self._batch_infos(final_infos, present=done), done
        return self._copy_obs(), rewards, terminated, truncated, batch

    def action_masks(self) -> np.ndarray:
        """Every sub-env's valid actions, ``(N, A)`` booleans: read from the batched observation (the same
        as each sub-env's ``action_masks()``, without building them again)."""
        if not self._started:
            raise RuntimeError("call reset() before action_masks()")
        if isinstance(self._obs, dict):
            return self._obs["action_mask"].astype(bool)
        return self._obs[:, self._flat_mask] > 0

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()

    def _write(self, i: int, obs: Any) -> None:
        """Sub-env ``i``'s observation into row ``i`` of the batch."""
        if self._obs_keys:
            for key in self._obs_keys:
                self._obs[key][i] = obs[key]
        else:
            self._obs[i] = obs

    def _copy_obs(self) -> Any:
        if isinstance(self._obs, dict):
            return {key: values.copy() for key, values in self._obs.items()}
        return self._obs.copy()

    def _batch_infos(self, infos: list[dict[str, Any]], present: np.ndarray | None = None) -> dict[str, Any]:
        """Per-sub-env infos as Gymnasium's vector info: each key an ``(N,)`` array and its ``_key`` mask
        (``present``, or where the sub-env's info has the key; a missing value is 0 / False).

        Column by column over the sub-envs' values (one ``np.array`` per key), not sub-env by sub-env."""
        n = len(infos)
        layouts: dict[tuple[str, ...], None] = {}  # the distinct key tuples, in order of first appearance
        for info in infos:
            layouts.setdefault(tuple(info), None)
        out: dict[str, Any] = {}
        if len(layouts) == 1:  # every info has the same keys (no sub-env reset, or every one)
            (keys,) = layouts
            columns = zip(*(info.values() for info in infos), strict=True)
            for key, column in zip(keys, columns, strict=True):
                out[key] = np.array(column)
                out[f"_{key}"] = np.ones(n, dtype=bool) if present is None else present
            return out
        for key in dict.fromkeys(key for layout in layouts for key in layout):
            has = np.array([key in info for info in infos])
            given = np.array([info[key] for info in infos if key in info])
            filled = np.zeros(n, dtype=given.dtype)
            filled[has] = given
            out[key] = filled
            out[f"_{key}"] = has if present is None else present
        return out
