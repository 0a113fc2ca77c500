"""An SB3 ``VecEnv`` over ``DispatchVectorEnv``: SB3 / sb3-contrib algorithms (MaskablePPO included) train on
N days stepped in one call.

    venv = SB3VecEnv(DispatchVectorEnv(num_envs=64, scenario="default", observation="flat"))
    model = MaskablePPO("MlpPolicy", VecMonitor(venv), n_steps=16)

MaskablePPO reads the masks through ``env_method("action_masks")`` (one list entry per sub-env). SB3's
conventions: ``seed(s)`` then ``reset()`` plays days ``s .. s + N - 1``; a day that ends is reset in the
same step, its last observation in the info's ``terminal_observation`` and ``TimeLimit.truncated`` set when
it was cut by the step limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from lastmile_env.vector_env import DispatchVectorEnv


class SB3VecEnv(VecEnv):
    """SB3's ``VecEnv`` interface over a ``DispatchVectorEnv`` (its sub-envs are SB3's envs)."""

    def __init__(self, venv: DispatchVectorEnv) -> None:
        if not isinstance(venv, DispatchVectorEnv):
            raise TypeError(f"SB3VecEnv wraps a DispatchVectorEnv, got {type(venv).__name__}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions = np.zeros(venv.num_envs, dtype=np.int64)

    def reset(self) -> VecEnvObs:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        options = self._options[0] if self._options and self._options[0] else None
        obs, info = self.venv.reset(seed=seeds, options=options)
        self.reset_infos = _unbatch(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos = _unbatch(info, self.num_envs)
        if "final_obs" in info:
            finals = _unbatch(info["final_info"], self.num_envs)
            for i in np.flatnonzero(info["_final_obs"]):
                final = finals[i]
                final["terminal_observation"] = info["final_obs"][i]
                final["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos[i] = final
        return obs, rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """Every sub-env's valid actions, ``(N, A)`` booleans."""
        return self.venv.action_masks()

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    def has_attr(self, attr_name: str) -> bool:
        return hasattr(self.venv.envs[0], attr_name)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.venv.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._get_indices(indices):
            setattr(self.venv.envs[i], attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        if method_name == "action_masks" and not method_args and not method_kwargs:
            masks = self.venv.action_masks()  # MaskablePPO's call every step: rows of the batched masks
            return [masks[i] for i in self._get_indices(indices)]
        return [
            getattr(self.venv.envs[i], method_name)(*method_args, **method_kwargs)
            for i in self._get_indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]  # the sub-envs are bare DispatchEnvs


def _unbatch(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (key -> array, ``_key`` -> mask) as SB3's list of per-env dicts (Python
    scalars: each column converted by one ``tolist``)."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, values in info.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        present = info.get(f"_{key}")
        # a column of numbers becomes Python scalars; wider entries stay one array per env, as SB3 reads them
        scalars = isinstance(values, np.ndarray) and values.dtype != object and values.ndim == 1
        column = values.tolist() if scalars else list(values)
        if present is None or present.all():
            for entry, value in zip(out, column, strict=True):
                entry[key] = value
        else:
            for i in np.flatnonzero(present).tolist():
                out[i][key] = column[i]
    return out
