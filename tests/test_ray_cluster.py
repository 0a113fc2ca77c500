"""Evaluation on a simulated two-node Ray cluster (``ray.cluster_utils.Cluster``) that loses its worker node
mid-evaluation: Ray retries the lost tasks on the head and the rows equal the local pool's. Slow:
``python -m pytest -m slow tests/test_ray_cluster.py``."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agents.evaluation import evaluate

pytestmark = pytest.mark.slow


def _rows(result) -> str:  # NaN-aware comparison of the episode rows, wall times aside
    return json.dumps([{k: v for k, v in r.items() if k != "wall_s"} for r in result.rows])


def test_evaluation_survives_losing_a_node_and_equals_the_local_pool():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from agents.evaluation import connect_ray

    common = {"episodes": 8, "seed": 3, "hindsight_time_limit_s": 0, "progress": False}
    policies = ["insertion", "regret", "nearest"]
    pool = evaluate("small", policies, workers=1, **common)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        connect_ray(cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        removed = threading.Event()

        def remove_soon() -> None:
            time.sleep(2.0)  # tasks are running on both nodes by then
            cluster.remove_node(worker, allow_graceful=False)
            removed.set()

        threading.Thread(target=remove_soon, daemon=True).start()
        on_cluster = evaluate("small", policies, ray=True, **common)
        assert removed.is_set(), "the evaluation ended before the node was removed"
        assert _rows(on_cluster) == _rows(pool)
        deadline = time.monotonic() + 60.0  # the GCS marks the lost node dead after its health checks
        while len([n for n in ray.nodes() if n["Alive"]]) != 1:
            assert time.monotonic() < deadline, "the removed node still counts as alive"
            time.sleep(0.5)
    finally:
        ray.shutdown()
        cluster.shutdown()
