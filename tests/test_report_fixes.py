"""Evaluation reports: time per episode never negative, short policy labels on plots."""

from __future__ import annotations

from agents.evaluation.policies import short_labels
from agents.evaluation.scenario import _play, _Task
from lastmile_env.config import load_scenario


def test_short_labels_keep_heuristics_and_shorten_model_paths() -> None:
    assert short_labels(["nearest", "insertion"]) == ["nearest", "insertion"]
    assert short_labels(["insertion", "runs/ppo/seed0/model.zip"]) == ["insertion", "model"]
    assert short_labels(["runs/a/model.zip", "runs/b/model.zip", "regret"]) == [
        "a/model",
        "b/model",
        "regret",
    ]
    assert short_labels(["x/y/m.zip", "z/y/m.zip"]) == ["x/y/m", "z/y/m"]


def test_time_per_episode_is_not_negative_when_no_decision_comes_after_mid_shift() -> None:
    # Two orders early in a long shift: the mid-shift frame is drawn after the episode, untimed.
    cfg = load_scenario("small", {"orders.rate_per_hour": 0.5, "orders.peaks": []})
    task = _Task(
        scenario=0, config_json=cfg.model_dump_json(), episode=0, seed=3, policy="nearest", snapshot=True
    )
    out = _play(task)
    assert out["frame"] is not None
    assert out["row"]["wall_s"] >= 0.0
