"""Wave mode (``dispatch.mode: wave``): the simulator's pool, must-dispatch and release, the PyVRP wave
router, wave policies in evaluation, and the when-to-dispatch env (LastMile-EpochDispatch-v0)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import pyvrp
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import lastmile_env  # noqa: F401  (registers the envs)
from agents.base import run_episode
from agents.evaluation import evaluate
from agents.heuristics.waves import WAVE_HEURISTICS, GreedyWave, LazyWave
from lastmile_env.config import ConfigError, load_scenario
from lastmile_env.sim import Simulator, world_for
from lastmile_env.sim.simulator import SimulationError
from lastmile_env.sim.types import DecisionKind, OrderStatus
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.wave_routing import dispatch_wave, solve_wave

WAVE = {"dispatch.mode": "wave", "dispatch.wave_min": 60}
FAST = SolverBudget(max_iterations=200)


def wave_sim(seed: int = 0, **overrides: object) -> Simulator:
    return Simulator(world_for(load_scenario("small", {**WAVE, **overrides})), seed, debug=True)


def test_orders_wait_in_the_pool_until_a_wave() -> None:
    sim = wave_sim()
    decision = sim.next_decision()
    assert decision is not None and decision.kind == DecisionKind.WAVE
    assert sim.now == 60.0  # the first wave after arrivals (wave_start 0 had none or they waited)
    assert sim.pool and all(o.status == OrderStatus.PENDING and o.arrival_min <= sim.now for o in sim.pool)
    with pytest.raises(SimulationError, match="release"):
        sim.next_decision()
    with pytest.raises(SimulationError, match="release"):
        sim.advance()


def test_release_commits_routes_and_the_rest_waits() -> None:
    sim = wave_sim()
    sim.next_decision()
    must = sim.must_dispatch()
    ids = [o.id for o in sim.pool]
    first = [i for i, m in zip(ids, must, strict=True) if m] or ids[:1]
    added = sim.release([(0, first)])
    assert added > 0
    assert all(sim.orders[i].status == OrderStatus.ASSIGNED and sim.orders[i].vehicle == 0 for i in first)
    assert [o.id for o in sim.pool] == [i for i in ids if i not in first]  # the rest waits, oldest first
    assert sim.vehicles[0].route or sim.vehicles[0].current is not None


def test_release_refuses_bad_answers_and_changes_nothing() -> None:
    sim = wave_sim()
    sim.next_decision()
    pool = [o.id for o in sim.pool]
    with pytest.raises(SimulationError, match="not in the wave's pool"):
        sim.release([(0, [10_000])])
    with pytest.raises(SimulationError, match="more than once"):
        sim.release([(0, pool[:1]), (1, pool[:1])])
    with pytest.raises(SimulationError, match="does not exist"):
        sim.release([(99, pool[:1])])
    cap = sim.vehicles[0].capacity
    heavy = [o.id for o in sim.pool]
    if sum(sim.orders[i].size for i in heavy) > cap:
        with pytest.raises(SimulationError, match="infeasible"):
            sim.release([(0, heavy)])
    assert [o.id for o in sim.pool] == pool and all(sim.orders[i].status == OrderStatus.PENDING for i in pool)


def test_the_last_wave_must_send_everything() -> None:
    sim = wave_sim()
    while sim.next_decision() is not None:
        if sim.now >= sim.last_wave_min:
            assert sim.must_dispatch().all()
            with pytest.raises(SimulationError, match="must be dispatched"):
                sim.release([])
        dispatch_wave(sim, [], FAST)  # lazy: only what must go
    assert sim.done and not sim.pool
    summary = sim.summary()
    assert summary["orders"] == len(sim.orders)


def test_a_pre_booked_day_is_planned_in_one_wave() -> None:
    sim = wave_sim(**{"orders.known_at_start": True})
    assert all(o.arrival_min == 0.0 for o in sim.orders)
    sim.next_decision()
    assert len(sim.pool) == len(sim.orders) and sim.must_dispatch().all()
    out = dispatch_wave(sim, [o.id for o in sim.pool], FAST)
    assert not out.rejected  # multi-trip routes: a van comes back to reload
    assert sim.next_decision() is None
    assert sim.summary()["on_time_rate"] > 0.95


def test_a_pre_booked_day_can_wait_for_later_waves() -> None:
    sim = Simulator(world_for(load_scenario("static_day")), 0)
    sim.next_decision()
    assert sim.now == 0.0 and sim.last_wave_min == 540.0
    must = sim.must_dispatch()
    assert not must.all()  # at 8:00 an order may wait for a later wave (the last one is at 17:00)
    with pytest.raises(ConfigError, match="last_wave_min"):
        load_scenario("small", {**WAVE, "dispatch.last_wave_min": 10.0})  # before the last arrival


def test_the_wave_router_uses_only_vehicles_back_at_the_center() -> None:
    sim = wave_sim(**{"orders.known_at_start": True, "fleet.size": 1})
    sim.next_decision()
    routes, unrouted = solve_wave(sim, [o.id for o in sim.pool], FAST)
    assert {v for v, _ in routes} == {0}
    assert sorted([i for _, ids in routes for i in ids] + unrouted) == sorted(o.id for o in sim.pool)


def test_wave_mode_is_refused_where_it_cannot_route() -> None:
    with pytest.raises(ConfigError, match="returns_share"):
        load_scenario("small", {**WAVE, "orders.returns_share": 0.2})
    with pytest.raises(ConfigError, match="battery"):
        load_scenario("realistic", {**WAVE, "orders.returns_share": 0.0})
    with pytest.raises(SimulationError, match="cannot be combined"):
        Simulator(world_for(load_scenario("small", WAVE)), 0, routing=True)


@pytest.mark.parametrize("name", list(WAVE_HEURISTICS))
def test_wave_policies_play_a_day_deterministically(name: str) -> None:
    world = world_for(load_scenario("small", WAVE))
    costs = []
    for _ in range(2):
        policy = WAVE_HEURISTICS[name](FAST)
        sim = run_episode(Simulator(world, 3, debug=True), policy, 3)
        assert sim.done and not sim.pool
        costs.append(sim.summary()["cost"])
    assert costs[0] == costs[1]


def test_a_dispatch_policy_and_a_wave_simulator_do_not_mix() -> None:
    sim = Simulator(world_for(load_scenario("small")), 0)
    with pytest.raises(ValueError, match="wave mode"):
        run_episode(sim, GreedyWave(FAST))


def test_evaluation_plays_wave_policies_in_wave_mode_on_the_same_days() -> None:
    result = evaluate(
        "small",
        ["insertion", "greedy", "wave:random"],
        episodes=2,
        workers=1,
        hindsight_time_limit_s=0,
        progress=False,
    )
    by = {r["policy"]: r for r in result.rows}
    assert set(by) == {"insertion", "greedy", "wave:random"}
    orders = {(r["policy"], r["seed"]): r["orders"] for r in result.rows}
    assert orders[("insertion", 0)] == orders[("greedy", 0)] == orders[("wave:random", 0)]


def test_evaluation_refuses_a_wave_policy_where_waves_cannot_run() -> None:
    from agents.evaluation import EvaluationError

    with pytest.raises(EvaluationError, match="cannot play"):
        evaluate(
            "realistic",
            ["greedy"],
            episodes=1,
            workers=1,
            reference="greedy",
            hindsight_time_limit_s=0,
            progress=False,
        )


def test_epoch_env_passes_the_checkers() -> None:
    env = gym.make("LastMile-EpochDispatch-v0", scenario="small", max_requests=64, solver_iterations=100)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped)


def test_epoch_env_rewards_sum_to_minus_the_cost_and_must_go_is_forced() -> None:
    env = gym.make(
        "LastMile-EpochDispatch-v0",
        scenario="small",
        overrides={"dispatch.wave_min": 60},
        max_requests=64,
        solver_iterations=100,
    )
    obs, _ = env.reset(seed=4)
    total, done = 0.0, False
    while not done:
        masks = env.unwrapped.action_masks().reshape(-1, 2)
        assert (masks[:, 0] == ~obs["must_dispatch"].astype(bool)).all()  # must-go rows cannot wait
        assert not masks[obs["request_mask"] == 0, 1].any()
        obs, reward, done, _, _ = env.step(np.zeros(64, dtype=np.int8))  # wait whenever allowed
        total += reward
    sim = env.unwrapped.sim
    assert sim.done and not sim.pool
    assert total == pytest.approx(-sim.cost().total, rel=1e-9, abs=1e-6)


def test_epoch_env_is_seeded() -> None:
    def day(seed: int) -> list[float]:
        env = gym.make("LastMile-EpochDispatch-v0", scenario="small", max_requests=64, solver_iterations=100)
        env.reset(seed=seed)
        rewards, done = [], False
        while not done:
            _, r, done, _, _ = env.step(np.ones(64, dtype=np.int8))
            rewards.append(r)
        return rewards

    assert day(1) == day(1)
    assert day(1) != day(2)


def test_lazy_sends_only_what_must_go() -> None:
    sim = wave_sim(seed=2)
    sim.next_decision()
    lazy = LazyWave(FAST).choose(sim)
    assert lazy == [o.id for o, m in zip(sim.pool, sim.must_dispatch(), strict=True) if m]


@pytest.mark.parametrize("env_id", ["LastMile-Dispatch-v0", "LastMile-Routing-v0"])
def test_the_order_and_routing_envs_play_a_wave_scenario_one_order_at_a_time(env_id):
    """static_day is a wave-mode scenario: the per-order envs play its day in order mode (as evaluate.py plays
    dispatch policies on it) instead of failing at reset; found by the invariant soak."""
    env = gym.make(env_id, scenario="static_day", debug=True, invalid_action="raise")
    assert env.unwrapped.config.dispatch.mode == "order"
    rng = np.random.default_rng(0)
    env.reset(seed=3)
    done, steps = False, 0
    while not done:
        action = int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))
        _, _, terminated, truncated, info = env.step(action)
        done, steps = terminated or truncated, steps + 1
    assert steps > 300 and info["orders"] > 300
    assert load_scenario("static_day").dispatch.mode == "wave"  # the scenario itself is unchanged


def test_the_wave_router_charges_the_wait_for_a_window_from_the_wave(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator puts a van on duty from the wave, so PyVRP's routes start at the wave: a one-order
    route to a window that opens long after the wave costs the driver's wait in PyVRP's model too, as it does
    when the simulator prices it (PyVRP's default, a route free to start later, charged no such wait)."""
    import lastmile_env.wave_routing as wave_routing

    sim = wave_sim(**{"orders.known_at_start": True})
    sim.next_decision()
    late = max(sim.pool, key=lambda o: o.earliest_min - max(o.ready_min, sim.now))
    assert late.earliest_min - max(late.ready_min, sim.now) > 60  # a window that opens an hour after the wave
    seen: list[pyvrp.ProblemData] = []
    solve = pyvrp.solve
    monkeypatch.setattr(
        wave_routing.pyvrp, "solve", lambda data, *a, **k: seen.append(data) or solve(data, *a, **k)
    )
    solve_wave(sim, [late.id], FAST)
    data = seen[-1]
    route = pyvrp.Route(data, [pyvrp.Activity(pyvrp.ActivityType.CLIENT, 0)], 0)  # the one client
    vid = next(v.id for v in sim.vehicles if v.home == late.center)
    plan = sim.price_trips([(vid, [late.id])])[vid][1]
    duty_min = plan.end_min - plan.frees_min[0]
    assert route.duration() / 60.0 >= late.earliest_min - sim.now  # the wait at the door is in the model
    assert route.duration() / 60.0 == pytest.approx(duty_min, abs=5.0)  # congestion is averaged in PyVRP


def test_a_slack_margin_makes_more_orders_urgent() -> None:
    sim = wave_sim()
    sim.next_decision()
    must, early = sim.must_dispatch(), sim.must_dispatch(60.0)
    assert not must.all()
    assert (early | must).tolist() == early.tolist()  # every must-go order is urgent with a margin
    assert early.sum() > must.sum()


def test_the_safety_margin_plans_due_times_early_where_they_can_be_met(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lastmile_env.wave_routing as wave_routing

    sim = wave_sim(**{"orders.known_at_start": True})
    sim.next_decision()
    ids = [o.id for o in sim.pool]
    seen: list[pyvrp.ProblemData] = []
    solve = pyvrp.solve
    monkeypatch.setattr(
        wave_routing.pyvrp, "solve", lambda data, *a, **k: seen.append(data) or solve(data, *a, **k)
    )
    solve_wave(sim, ids, FAST)
    solve_wave(sim, ids, FAST, safety_min=10.0)
    plain, safe = ([c.tw_late for c in data.clients()] for data in seen[-2:])
    earlier = [p - s for p, s in zip(plain, safe, strict=True)]
    assert max(earlier) == 600  # 10 min, in seconds, where the due time can still be met that early
    assert min(earlier) >= 0  # never later, and never before the order can be reached
    assert all(s >= c.tw_early for s, c in zip(safe, seen[-1].clients(), strict=True))
    with pytest.raises(ValueError, match="safety_min must be a finite number of minutes >= 0"):
        solve_wave(sim, ids, FAST, safety_min=-1.0)


def test_wave_policy_options_and_their_errors() -> None:
    from agents.evaluation import EvaluationError
    from agents.evaluation.policies import resolve_policy
    from agents.heuristics.waves import UrgentRoutesWave, make_wave_heuristic

    policy = make_wave_heuristic("urgent_routes:slack=20:safety=10:iterations=25")
    assert isinstance(policy, UrgentRoutesWave)
    assert (policy.slack_min, policy.safety_min, policy.budget.max_iterations) == (20.0, 10.0, 25)
    assert resolve_policy("wave:urgent_routes:slack=5")().name == "wave:urgent_routes:slack=5"
    bad = {
        "urgent_routes:slack=-1": "slack_min must be a finite number of minutes >= 0, got -1.0",
        "urgent_routes:safety=inf": "safety_min must be a finite number of minutes >= 0, got inf",
        "urgent_routes:iterations=0": "iterations must be at least 1",
        "urgent_routes:slack=soon": "slack must be a number",
        "greedy:slack=5": "bad option 'slack=5'",
    }
    for spec, message in bad.items():
        with pytest.raises(EvaluationError, match=message) as info:
            resolve_policy(spec)
        assert "\n" not in str(info.value)


def test_urgent_routes_with_margins_plays_a_day_deterministically() -> None:
    from agents.heuristics.waves import make_wave_heuristic

    world = world_for(load_scenario("small", WAVE))
    runs = []
    for _ in range(2):
        policy = make_wave_heuristic("urgent_routes:slack=20:safety=10:iterations=100")
        sim = run_episode(Simulator(world, 5, debug=True), policy, 5)
        assert sim.done and not sim.pool
        runs.append((sim.summary()["cost"], [(o.vehicle, o.delivered_min) for o in sim.orders]))
    assert runs[0] == runs[1]
