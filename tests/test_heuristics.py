"""Each heuristic on the hand-made line world (D - A - B, 1 km blocks, 2 min/km), where its best action
is known.

Scene: order 0 (to B, ready at 5) is given to van 0 at time 0, so van 0 is loading at the center and will
drive to B; van 1 waits idle at the center. Then order 1 (to A, ready at once) arrives.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.base import DEFER, REJECT, apply, run_episode
from agents.heuristics import HEURISTICS, make_heuristic
from lastmile_env.config import load_scenario
from lastmile_env.sim import Simulator, world_for
from tests.conftest import fixed_orders


def scene(tiny_world, second: dict | None = None, capacity: int = 10) -> Simulator:
    orders = fixed_orders(
        {"arrival_min": 0.0, "ready_min": 5.0, "node": "B", "due_min": 100.0},
        second or {"arrival_min": 0.0, "node": "A", "due_min": 100.0},
    )
    sim = Simulator(tiny_world(n_vehicles=2, capacity=capacity), seed=0, generator=orders, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    return sim


def test_insertion_rides_along_nearest_and_least_loaded_take_the_idle_van(tiny_world):
    sim = scene(tiny_world)
    # Van 0 delivers A on its way to B: +1 min loading, +2 min at the door, no extra km -> 3.
    # Van 1 makes a trip of its own: 2 km + 7 min -> 9.
    assert sim.insertion(0).delta_cost == pytest.approx(3.0)
    assert sim.insertion(1).delta_cost == pytest.approx(9.0)
    assert make_heuristic("insertion").act(sim) == 0
    # Both vans are next free at the center; van 1 has no plan.
    assert make_heuristic("nearest").act(sim) == 1
    assert make_heuristic("least_loaded").act(sim) == 1


def lone_order(tiny_world, due_min: float) -> Simulator:
    """A single order to B (ready at 5) with both vans idle: its cheapest insertion costs 20 or more, over
    the rejection penalty of 10."""
    sim = Simulator(
        tiny_world(n_vehicles=2),
        seed=0,
        generator=fixed_orders({"arrival_min": 0.0, "ready_min": 5.0, "node": "B", "due_min": due_min}),
    )
    sim.advance()
    return sim


@pytest.mark.parametrize("name", ["insertion", "reopt"])
def test_reasoned_rejection_serves_an_order_it_can_deliver_on_time(tiny_world, name):
    sim = lone_order(tiny_world, due_min=100.0)
    assert sim.insertion(0).delta_cost == pytest.approx(20.0)
    assert sim.insertion(0).on_time(sim.current)
    assert make_heuristic(name).act(sim) == 0
    assert make_heuristic(f"{name}_myopic").act(sim) == REJECT  # today's rule: 20 > 10


@pytest.mark.parametrize("name", ["insertion", "reopt"])
def test_reasoned_rejection_turns_away_an_order_that_is_late_and_dear(tiny_world, name):
    sim = lone_order(tiny_world, due_min=8.0)  # ready at 5, loaded at 6, at B at 10 at the earliest
    assert not any(sim.insertion(v).on_time(sim.current) for v in (0, 1))
    assert sim.insertion(0).delta_cost > 10.0
    assert make_heuristic(name).act(sim) == REJECT
    assert make_heuristic("insertion_always").act(sim) == 0


def test_random_picks_only_feasible_vehicles(tiny_world):
    # Order 1 is too big for van 0 while it carries order 0's parcel... and for any van: size 11 > 10.
    sim = scene(tiny_world, {"arrival_min": 0.0, "node": "A", "due_min": 100.0, "size": 11})
    policy = make_heuristic("random")
    policy.reset(0)
    assert {policy.act(sim) for _ in range(20)} == {REJECT}
    sim = scene(tiny_world, {"arrival_min": 0.0, "node": "A", "due_min": 100.0, "size": 9}, capacity=10)
    # van 0 holds order 0 (size 1) until B: 1 + 9 fits, so both vans are candidates
    policy.reset(1)
    assert {policy.act(sim) for _ in range(40)} == {0, 1}


def test_regret_defers_a_relaxed_order_and_commits_an_urgent_one(tiny_world):
    policy = make_heuristic("regret")  # defers when regret < 4 and slack >= 45 min
    relaxed = scene(tiny_world, {"arrival_min": 0.0, "node": "A", "due_min": 300.0})
    # regret = 9 - 3 = 6 >= 4: assign to the cheapest van
    assert policy.act(relaxed) == 0
    tied = Simulator(
        tiny_world(n_vehicles=2),
        seed=0,
        generator=fixed_orders({"arrival_min": 0.0, "node": "A", "due_min": 300.0}),
    )
    tied.advance()
    assert policy.act(tied) == DEFER  # two idle vans: regret 0, hours of slack
    urgent = Simulator(
        tiny_world(n_vehicles=2),
        seed=0,
        generator=fixed_orders({"arrival_min": 0.0, "node": "A", "due_min": 20.0}),
    )
    urgent.advance()
    assert policy.act(urgent) == 0  # slack 17 min < 45: no waiting


def test_regret_decides_a_tick_batch_highest_regret_first(tiny_world):
    orders = fixed_orders(
        {"arrival_min": 0.0, "node": "B", "due_min": 300.0},
        {"arrival_min": 1.0, "node": "A", "due_min": 300.0},
    )
    sim = Simulator(tiny_world(n_vehicles=1), seed=0, generator=orders, debug=True)
    sim.advance()
    sim.defer()
    sim.advance()
    sim.defer()
    assert sim.advance().id == 0  # the tick at 15: both pending, the oldest (to B) presented first
    policy = make_heuristic("regret")
    decision = policy.act(sim)
    # One van: an order's regret is the rejection penalty minus its cost. A trip to A costs 9, to B 15,
    # so the order to A loses more by waiting: the policy switches to it.
    assert sim.current.id == 1 and decision == 0


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_every_heuristic_plays_a_day_holding_the_invariants(name):
    world = world_for(load_scenario("small"))
    sim = run_episode(Simulator(world, seed=3, debug=True), make_heuristic(name), seed=3)
    s = sim.summary()
    assert sim.done and s["delivered"] + s["rejected"] == s["orders"]


def test_insertion_is_never_worse_than_random_on_average():
    """A floor, as Gymnasium tests its heuristics: over fixed days, cheapest insertion costs less."""
    world = world_for(load_scenario("small"))
    costs = {}
    for name in ("random", "insertion"):
        costs[name] = np.mean(
            [
                run_episode(Simulator(world, seed), make_heuristic(name), seed).summary()["cost"]
                for seed in range(8)
            ]
        )
    assert costs["insertion"] < costs["random"]


def test_apply_rejects_unknown_decisions(tiny_world):
    sim = scene(tiny_world)
    with pytest.raises(ValueError, match="unknown decision -7"):
        apply(sim, -7)
