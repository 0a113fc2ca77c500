"""Render the README's figure: `default` (seed 0) under cheapest insertion after 180 decisions.

python docs/render_frame.py docs/default_episode.png
"""

from __future__ import annotations

import sys

import gymnasium as gym
from PIL import Image

import lastmile_env  # noqa: F401  (registers the env)
from agents.base import REJECT
from agents.heuristics import make_heuristic

env = gym.make("LastMile-Dispatch-v0", scenario="default", render_mode="rgb_array")
env.reset(seed=0)
policy = make_heuristic("insertion")
sim = env.unwrapped.sim  # type: ignore[attr-defined]
for _ in range(180):
    decision = policy.act(sim)
    env.step(env.unwrapped.reject_action if decision == REJECT else decision)  # type: ignore[attr-defined]
Image.fromarray(env.render()).save(sys.argv[1])  # type: ignore[arg-type]
