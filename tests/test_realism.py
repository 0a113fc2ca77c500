"""Realism options (docs/realism.md): travel-time noise and live ETAs; the `realistic` scenario."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import lastmile_env  # noqa: F401  (registers the ids)
from lastmile_env import load_scenario
from lastmile_env.config import ConfigError
from lastmile_env.generators import DUE_MARGIN_MIN, _weighted_slots
from lastmile_env.sim import (
    InvariantError,
    Order,
    OrderStatus,
    ServiceOption,
    Simulator,
    build_world,
    check_invariants,
    world_for,
)
from lastmile_env.sim.invariants import LegAudit
from lastmile_env.sim.world import World
from tests.conftest import fixed_orders

NOISY = {"travel.noise.kind": "lognormal", "travel.noise.sigma": 0.3, "travel.live_eta": True}
# A short `realistic` day (2 h of orders) so that debug-mode runs stay fast.
SHORT = {"orders.last_arrival_min": 120}


def with_options(world: World, overrides: dict) -> World:
    return build_world(load_scenario(world.config, overrides))


def random_day(sim: Simulator, seed: int) -> Simulator:
    """Play a day with a random feasible vehicle (reject when none) for dispatch, random valid stops for
    routing."""
    rng = np.random.default_rng(seed)
    while (decision := sim.next_decision()) is not None:
        if decision.order is not None:
            feasible = np.flatnonzero(sim.feasible_vehicles())
            sim.assign(int(rng.choice(feasible))) if feasible.size else sim.reject()
        else:
            valid = np.flatnonzero(sim.route_mask())
            sim.route(int(rng.choice(valid))) if valid.size else sim.wait()
    return sim


def lognormal_factors(seed: int, sigma: float, n: int) -> list[float]:
    """The first ``n`` leg factors of an episode seed: the simulator's noise stream, replayed."""
    _, noise_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(noise_seq)
    return [float(rng.lognormal(-0.5 * sigma * sigma, sigma)) for _ in range(n)]


# --------------------------------------------------------------------------------------- travel noise
def test_golden_noisy_legs_on_the_line(tiny_world):
    """One order D -> A (1 km, 2 min planned): each leg takes its planned time x its factor, in order."""
    world = with_options(tiny_world(), NOISY)
    one = fixed_orders({"arrival_min": 0.0, "node": "A", "due_min": 60.0})
    sim = Simulator(world, 7, generator=one, debug=True)
    sim.advance()
    sim.assign(0)
    assert sim.advance() is None
    f_pickup, f_deliver, f_home = lognormal_factors(7, 0.3, 3)
    assert [leg[5] for leg in sim.legs] == [f_pickup, f_deliver, f_home]
    order = sim.orders[0]
    # Pickup at D (a 0-minute leg), load 1 min -> 1; D->A planned 2 min -> 1 + 2 f; serve 2 min; back 2 f'.
    assert order.promised_eta_min == pytest.approx(3.0)
    assert order.delivered_min == pytest.approx(1.0 + 2.0 * f_deliver)
    back = 1.0 + 2.0 * f_deliver + 2.0 + 2.0 * f_home
    assert sim.vehicles[0].duty_min == pytest.approx(back)
    assert sim.cost().total == pytest.approx(2.0 + back)  # 2 km x 1 + duty minutes x 1
    assert sim.expected_cost == pytest.approx(sim.cost().total)
    # Live ETAs: the promise at dispatch, then the realized arrival once the van heads for A.
    assert sim.eta_log == [(0.0, 0, pytest.approx(3.0)), (1.0, 0, pytest.approx(order.delivered_min))]
    assert sim.summary()["eta_abs_error_min"] == pytest.approx(abs(2.0 * f_deliver - 2.0))


def test_noise_is_off_by_default_and_sigma_zero_changes_nothing():
    base = world_for(load_scenario("small"))
    assert base.config.travel.noise.kind == "none" and not base.config.travel.live_eta
    zero = with_options(base, {"travel.noise.kind": "lognormal", "travel.noise.sigma": 0.0})
    a, b = random_day(Simulator(base, 4), 1), random_day(Simulator(zero, 4), 1)
    assert a.summary() == b.summary()
    assert [leg[:5] for leg in a.legs] == [leg[:5] for leg in b.legs]
    assert {leg[5] for leg in a.legs} == {1.0}


def test_noise_changes_legs_not_orders_and_is_deterministic():
    base = world_for(load_scenario("small"))
    noisy = with_options(base, NOISY)
    quiet, loud, again = (random_day(Simulator(w, 9, debug=True), 2) for w in (base, noisy, noisy))
    key = [(o.arrival_min, o.loc, o.size, o.ready_min, o.due_min) for o in quiet.orders]
    assert key == [(o.arrival_min, o.loc, o.size, o.ready_min, o.due_min) for o in loud.orders]
    assert loud.summary() == again.summary() and loud.eta_log == again.eta_log
    factors = np.array([leg[5] for leg in loud.legs])
    assert (factors != 1.0).all() and 0.8 < factors.mean() < 1.2
    assert loud.summary()["cost"] != quiet.summary()["cost"]


def test_invariants_catch_a_leg_that_does_not_match_its_factor():
    sim = random_day(Simulator(with_options(world_for(load_scenario("small")), NOISY), 3), 3)
    check_invariants(sim)
    vid, src, dst, depart, arrive, factor = sim.legs[3]
    sim.legs[3] = (vid, src, dst, depart, arrive, factor * 1.1)
    with pytest.raises(InvariantError, match="arrived"):
        check_invariants(sim)


def test_a_leg_audit_checks_new_legs_and_starts_over_when_the_checked_ones_changed():
    sim = random_day(Simulator(with_options(world_for(load_scenario("small")), NOISY), 3), 3)
    audit = LegAudit()
    check_invariants(sim, audit)
    assert audit.checked == len(sim.legs) > 3 and audit.km == pytest.approx(
        sum(v.dist_km for v in sim.vehicles)
    )
    vid, src, dst, depart, arrive, factor = sim.legs[-1]
    sim.legs[-1] = (vid, src, dst, depart, arrive + 1.0, factor)  # the last checked leg changed: all again
    with pytest.raises(InvariantError, match="arrived"):
        check_invariants(sim, audit)
    sim.legs[-1] = (vid, src, dst, depart, arrive, factor)
    check_invariants(sim, LegAudit())
    audit = LegAudit()
    check_invariants(sim, audit)
    sim.legs.append((vid, dst, src, arrive, arrive, 1.0))  # a new leg that takes no time
    with pytest.raises(InvariantError, match="arrived"):
        check_invariants(sim, audit)


# ------------------------------------------------------------------------------------------ live ETAs
def test_live_etas_end_at_the_actual_delivery_and_errors_are_measured_30_min_ahead():
    sim = random_day(Simulator(with_options(world_for(load_scenario("small")), NOISY), 5, debug=True), 4)
    delivered = [o for o in sim.orders if o.status.name == "DELIVERED"]
    assert delivered
    for o in delivered:  # the last live ETA is set when the van leaves for the door: the actual time
        assert o.live_eta_min == o.delivered_min
    times = [t for t, _, _ in sim.eta_log]
    assert times == sorted(times)
    errors = sim.live_eta_errors()
    by_order: dict[int, list[tuple[float, float]]] = {}
    for t, oid, eta in sim.eta_log:
        by_order.setdefault(oid, []).append((t, eta))
    expected = []
    for o in sorted(delivered, key=lambda o: o.id):
        ahead = [eta for t, eta in by_order[o.id] if t <= o.delivered_min - 30.0]
        if ahead:
            expected.append(o.delivered_min - ahead[-1])
    assert errors == pytest.approx(expected) and len(errors) > 5
    assert sim.summary()["eta_live_abs_error_min"] == pytest.approx(np.mean(np.abs(expected)))


def test_without_live_eta_nothing_is_tracked():
    sim = random_day(Simulator(world_for(load_scenario("small")), 5), 4)
    assert sim.eta_log == [] and np.isnan(sim.summary()["eta_live_abs_error_min"])


# ------------------------------------------------------------------------------------ service options
def test_express_orders_come_from_the_same_draw_as_same_day_ones():
    """express_share turns some same-day customers into express ones; nothing else about the day moves."""
    base = world_for(load_scenario("default"))
    express = with_options(base, {"orders.express_share": 0.2, "orders.express_deadline_min": 90})
    before, after = Simulator(base, 6).orders, Simulator(express, 6).orders
    assert len(before) == len(after) > 300
    latest = base.config.fleet.shift_end_min - DUE_MARGIN_MIN
    n_express = 0
    for b, a in zip(before, after, strict=True):
        assert (a.arrival_min, a.loc, a.size, a.ready_min) == (b.arrival_min, b.loc, b.size, b.ready_min)
        if a.option == ServiceOption.EXPRESS:
            n_express += 1
            assert b.option == ServiceOption.SAME_DAY
            assert a.earliest_min == a.arrival_min
            assert a.due_min == max(a.arrival_min, min(a.arrival_min + 90.0, latest))
        else:
            assert (a.option, a.earliest_min, a.due_min) == (b.option, b.earliest_min, b.due_min)
    assert 0.12 < n_express / len(after) < 0.28
    with pytest.raises(ConfigError, match="express_share"):
        load_scenario("default", {"orders.window_share": 0.6, "orders.express_share": 0.5})


def test_golden_on_time_rate_and_revenue_per_option(tiny_world):
    """Same-day to A on time, express to B late, a window order rejected: rates and revenue by hand."""
    prices = {"orders.prices": {"same_day": 5.0, "window": 7.0, "express": 11.0}}
    world = with_options(tiny_world(), prices)
    three = fixed_orders(
        {"arrival_min": 0.0, "node": "A", "due_min": 60.0},
        {"arrival_min": 0.0, "node": "B", "due_min": 2.0, "option": ServiceOption.EXPRESS},
        {"arrival_min": 1.0, "node": "B", "due_min": 90.0, "option": ServiceOption.WINDOW},
    )
    sim = Simulator(world, 0, generator=three, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    sim.assign(0)
    sim.advance()
    sim.reject()
    assert sim.advance() is None
    assert [o.status for o in sim.orders] == [
        OrderStatus.DELIVERED,
        OrderStatus.DELIVERED,
        OrderStatus.REJECTED,
    ]
    assert sim.orders[0].on_time and not sim.orders[1].on_time
    s = sim.summary()
    assert (s["on_time_rate_same_day"], s["on_time_rate_express"], s["on_time_rate_window"]) == (
        1.0,
        0.0,
        0.0,
    )
    assert s["revenue"] == 16.0 and s["profit"] == pytest.approx(16.0 - s["cost"])
    plain = Simulator(
        tiny_world(), 0, generator=fixed_orders({"arrival_min": 0.0, "node": "A", "due_min": 9.0})
    )
    plain.advance()
    plain.assign(0)
    plain.advance()
    s = plain.summary()
    assert s["revenue"] == 0.0 and s["on_time_rate_same_day"] == 1.0
    assert np.isnan(s["on_time_rate_window"]) and np.isnan(s["on_time_rate_express"])


# ----------------------------------------------------------------------------------- delivery attempts
def attempts(absent_hours: dict[int, float], reject_penalty: float = 10.0, **extra) -> dict:
    hours = [absent_hours.get(h, 0.0) for h in range(24)]
    return {
        "attempts": {"absence_by_hour": hours, "failed_penalty": 5.0, **extra},
        "costs.reject_penalty": reject_penalty,
    }


def one_order_to_b(world: World, due: float = 60.0) -> Simulator:
    """One order to B (2 km from D), arriving at 0: loaded by 1, at B at 5 (the shift starts at 8:00)."""
    sim = Simulator(world, 0, generator=fixed_orders({"arrival_min": 0.0, "node": "B", "due_min": due}))
    sim.debug = True
    sim.advance()
    sim.assign(0)
    assert sim.advance() is None
    return sim


def test_golden_absent_customer_parcel_left_at_the_pickup_point(tiny_world):
    options = attempts({8: 1.0}, pickup_point_share=1.0, lockers={"count": 1, "capacity": 3})
    world = with_options(tiny_world(), options)
    a = world.matrix.index_of("A")
    assert world.lockers.tolist() == [a]  # of the addresses A and B, A comes first at the same distance
    sim = one_order_to_b(world)
    o = sim.orders[0]
    # At B at 5, absent; serve 2 -> 7; B->A 2 min -> 9, deliver there, 11; A->D -> 13.
    assert (o.status, o.attempts, o.locker, sim.locker_used.tolist()) == (OrderStatus.DELIVERED, 1, 0, [1])
    assert (o.pod_node, o.pod_min, o.pod_how, o.delivered_min) == (a, 9.0, "pickup_point", 9.0)
    cost = sim.cost()
    assert cost.failures == 5.0 and cost.lateness == 0.0
    assert cost.total == pytest.approx(4.0 + 13.0 + 5.0) == pytest.approx(sim.expected_cost)
    s = sim.summary()
    assert (s["delivered_door"], s["delivered_pickup_point"], s["failed"], s["failed_attempts"]) == (
        0,
        1,
        0,
        1,
    )
    assert [e.kind for e in sim.events if e.order == 0][-2:] == ["failed_attempt", "delivery"]


def test_golden_absent_twice_the_parcel_goes_back_and_the_order_fails(tiny_world):
    options = attempts({8: 1.0}, reject_penalty=100.0, pickup_point_share=0.0, redelivery_delay_min=30.0)
    sim = one_order_to_b(with_options(tiny_world(), options))
    o = sim.orders[0]
    # Absent at 5 (free 7). Redelivery from 35 (wait at B, serve till 37, home at 41: 2 km + 34 min = 36)
    # beats failing (B->D, unload: 2 km + 5 min = 7, + 100). Absent again: back B->D at 41, unload -> 42.
    assert (o.status, o.attempts, o.returning, o.loc) == (OrderStatus.FAILED, 2, True, 0)
    assert (o.pod_node, o.pod_min, o.pod_how) == (0, 41.0, "returned")
    assert sim.vehicles[0].load == 0 and sim.vehicles[0].duty_min == pytest.approx(42.0)
    assert sim.cost().failures == 5.0 + 5.0 + 100.0
    assert sim.cost().total == pytest.approx(4.0 + 42.0 + 110.0) == pytest.approx(sim.expected_cost)
    s = sim.summary()
    assert (s["delivered"], s["failed"], s["failed_attempts"], s["on_time_rate"]) == (0, 1, 2, 0.0)


def test_golden_a_redelivery_dearer_than_failing_is_not_made(tiny_world):
    """The same day with a rejection worth 10: failing at once (7 + 10) beats the redelivery (36)."""
    options = attempts({8: 1.0}, reject_penalty=10.0, pickup_point_share=0.0, redelivery_delay_min=30.0)
    sim = one_order_to_b(with_options(tiny_world(), options))
    o = sim.orders[0]
    assert (o.status, o.attempts, o.pod_min) == (OrderStatus.FAILED, 1, 11.0)  # B->D 7..11, unload -> 12
    assert sim.cost().total == pytest.approx(4.0 + 12.0 + 5.0 + 10.0) == pytest.approx(sim.expected_cost)


def test_golden_redelivery_in_another_hour_finds_the_customer(tiny_world):
    """Absent at 8:05 (p = 1 at 8 h), present from 9:00 (p = 0): redelivered at 9:05, 5 min late."""
    options = attempts({8: 1.0}, reject_penalty=100.0, pickup_point_share=0.0, redelivery_delay_min=60.0)
    world = with_options(tiny_world(), options)
    sim = one_order_to_b(world)
    o = sim.orders[0]
    assert (o.status, o.attempts, o.pod_how, o.delivered_min) == (OrderStatus.DELIVERED, 2, "door", 65.0)
    assert sim.cost().lateness == pytest.approx(2.0 + 5.0)  # charged once, at the actual delivery
    assert sim.cost().total == pytest.approx(4.0 + 71.0 + 5.0 + 7.0) == pytest.approx(sim.expected_cost)
    present = with_options(tiny_world(), attempts({9: 1.0}))
    o = one_order_to_b(present).orders[0]
    assert (o.status, o.attempts, o.pod_how, o.pod_node, o.delivered_min) == (
        OrderStatus.DELIVERED,
        1,
        "door",
        present.matrix.index_of("B"),
        5.0,
    )


def test_attempts_keep_days_paired_deterministic_and_consistent():
    base = world_for(load_scenario("small"))
    absent = with_options(base, attempts({h: 0.4 for h in range(24)}, lockers={"count": 3, "capacity": 2}))
    assert not base.lockers.size and absent.lockers.size == 3
    quiet, loud, again = (random_day(Simulator(w, 8, debug=True), 3) for w in (base, absent, absent))
    key = [(o.arrival_min, o.size, o.ready_min, o.due_min) for o in quiet.orders]
    assert key == [(o.arrival_min, o.size, o.ready_min, o.due_min) for o in loud.orders]
    assert loud.summary() == again.summary()
    s = loud.summary()
    assert s["failed_attempts"] > 5 and s["delivered_pickup_point"] > 0
    assert s["delivered_door"] + s["delivered_pickup_point"] == s["delivered"]
    assert s["delivered"] + s["failed"] + s["rejected"] == s["orders"]
    assert loud.locker_used.max() <= 2
    assert s["cost_failures"] == 5.0 * s["failed_attempts"] + 10.0 * s["failed"]
    with pytest.raises(ConfigError, match="absence_by_hour"):
        load_scenario("small", {"attempts.absence_by_hour": [0.5] * 23})


# -------------------------------------------------------------------------------------------- returns
def delivery_and_return(world: World, rng: np.random.Generator) -> list[Order]:
    """Order 0: a parcel for B (due 60). Order 1: a return handed over at A in [10, 40], back to D."""
    d, a, b = (world.matrix.index_of(n) for n in "DAB")
    common = {"arrival_min": 0.0, "size": 1, "service_min": 2.0}
    return [
        Order(id=0, center=d, loc=b, ready_min=0.0, option=ServiceOption.SAME_DAY, earliest_min=0.0,
              due_min=60.0, **common),
        Order(id=1, center=a, loc=d, ready_min=10.0, option=ServiceOption.WINDOW, earliest_min=10.0,
              due_min=40.0, is_return=True, **common),
    ]  # fmt: skip


def test_golden_return_shares_the_van_and_is_collected_in_its_window(tiny_world):
    """A van of capacity 1: the return can only be collected once the parcel for B is delivered."""
    sim = Simulator(tiny_world(capacity=1), 0, generator=delivery_and_return, debug=True)
    sim.advance()
    sim.assign(0)  # load at D 0..1, D->B 5, serve till 7, back home 11
    sim.advance()
    ins = sim.insertion(0)
    # B->A at 9, wait for 10, collect till 12; A->D 14, unload till 15 (home): 4 km + 15 min.
    assert (ins.pickup_after, ins.delivery_after) == (1, 1) and ins.eta_min == 10.0
    assert ins.delta_cost == pytest.approx(19.0 - 15.0)
    sim.assign(0)
    assert sim.advance() is None
    ret = sim.orders[1]
    assert (ret.status, ret.pickup_min, ret.delivered_min, ret.promised_eta_min) == (
        OrderStatus.DELIVERED,
        10.0,
        14.0,
        10.0,
    )
    assert ret.on_time and ret.eta_error_min == 0.0 and ret.late_min == 0.0
    assert sim.cost().total == pytest.approx(19.0) == pytest.approx(sim.expected_cost)
    s = sim.summary()
    assert (s["returns"], s["on_time_rate_return"], s["delivered"]) == (1, 1.0, 2)
    two = Simulator(tiny_world(capacity=2), 0, generator=delivery_and_return)
    two.advance()
    two.assign(0)
    two.advance()
    assert two.insertion(0).pickup_after == 1  # room for both: still after B, the cheapest way round


def test_returns_are_drawn_last_and_keep_every_invariant():
    base = world_for(load_scenario("small"))
    with_returns = with_options(base, {"orders.returns_share": 0.3})
    before, after = Simulator(base, 2).orders, Simulator(with_returns, 2).orders
    returns = [o for o in after if o.is_return]
    assert 0 < len(returns) < len(after)
    for b, a in zip(before, after, strict=True):
        assert (a.arrival_min, a.size) == (b.arrival_min, b.size)
        if a.is_return:
            assert (a.center, a.loc) == (b.loc, b.center) and a.option == ServiceOption.WINDOW
            assert (
                a.ready_min
                == a.earliest_min
                == pytest.approx(a.due_min - base.config.orders.window_width_min)
            )
        else:
            assert a == b
    for routing in (False, True):
        sim = random_day(Simulator(with_returns, 2, debug=True, routing=routing), 6)
        s = sim.summary()
        assert s["returns"] == len(returns) and sim.expected_cost == pytest.approx(sim.cost().total)
        collected = [o for o in sim.orders if o.is_return and o.status == OrderStatus.DELIVERED]
        assert collected and all(o.pickup_min <= o.delivered_min for o in collected)
        assert all(o.pickup_min >= o.ready_min for o in collected)


# ------------------------------------------------------------------------------ the realistic scenario
def test_realistic_loads_and_joins_the_suite():
    cfg = load_scenario("realistic")
    default = load_scenario("default")
    assert cfg.travel.noise.kind == "lognormal" and cfg.travel.live_eta
    assert cfg.orders.express_share > 0 and cfg.orders.prices.express > cfg.orders.prices.same_day > 0
    assert cfg.attempts.enabled and cfg.attempts.lockers.count > 0 and cfg.orders.returns_share > 0
    assert {t.mode for t in cfg.fleet.types} == {"van", "cargo_bike", "drone"}
    assert cfg.fleet.size == default.fleet.size and cfg.fleet.shift_end_min == default.fleet.shift_end_min
    options = {"express_share", "express_deadline_min", "prices", "returns_share"}
    for a, b in ((cfg, default), (cfg.orders, default.orders)):
        other = {"name", "description", "travel", "orders", "attempts", "fleet"} if a is cfg else options
        assert a.model_dump(exclude=other) == b.model_dump(exclude=other)
    for off in (default, load_scenario("small")):
        assert off.travel == type(off.travel)() and off.orders.express_share == 0
        assert off.orders.prices == type(off.orders.prices)()
        assert off.attempts == type(off.attempts)() and not off.attempts.enabled


def test_realistic_is_deterministic_and_paired_with_default():
    world = world_for(load_scenario("realistic", SHORT))
    a, b = (random_day(Simulator(world, 21), 5) for _ in range(2))
    assert a.summary() == b.summary() and a.events == b.events and a.legs == b.legs and a.eta_log == b.eta_log
    plain = Simulator(world_for(load_scenario("default", SHORT)), 21)
    assert [(o.arrival_min, o.loc, o.size) for o in plain.orders] == [
        (o.arrival_min, o.center if o.is_return else o.loc, o.size) for o in Simulator(world, 21).orders
    ]  # a return's customer is at its pickup place


@pytest.mark.parametrize("routing", [False, True])
def test_realistic_random_play_keeps_invariants(routing):
    world = world_for(load_scenario("realistic", SHORT))
    sim = random_day(Simulator(world, 11, debug=True, routing=routing), 12)
    check_invariants(sim)
    assert sim.done and sim.n_open == 0
    assert sim.expected_cost == pytest.approx(sim.cost().total)


def test_realistic_rewards_sum_to_minus_the_cost_and_check_env():
    env = gym.make("LastMile-Dispatch-v0", scenario="realistic", overrides=SHORT)
    gym_check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    total, done = 0.0, False
    while not done:
        mask = env.unwrapped.action_masks()
        _, r, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        total += r
        done = terminated or truncated
    assert total == pytest.approx(-env.unwrapped.sim.summary()["cost"], rel=1e-9)


def test_evaluate_reports_the_realism_metrics(tmp_path):
    from agents.evaluation import EPISODE_COLUMNS, evaluate

    result = evaluate(
        "realistic",
        ["nearest", "insertion"],
        episodes=2,
        seed=1,
        workers=1,
        hindsight_time_limit_s=0.2,
        overrides=SHORT,
        progress=False,
        route_map=False,
    )
    for row in result.rows:
        assert set(row) == set(EPISODE_COLUMNS)
        assert row["revenue"] > 0 and row["profit"] == pytest.approx(row["revenue"] - row["cost"])
        assert np.isfinite(row["eta_live_abs_error_min"]) and 0 <= row["on_time_rate_express"] <= 1
    text = result.markdown()
    assert "ETA error promised / live (min)" in text and "on-time by option (%)" in text and "profit" in text
    assert "attempts failed / pickup point / failed" in text
    assert "travel surprises and failed attempts that no policy can foresee" in text  # the bound's caveat
    assert sum(row["failed_attempts"] for row in result.rows) > 0
    header = next(line for line in text.splitlines() if line.startswith("| policy"))
    first = next(line for line in text.splitlines() if line.startswith("| `nearest`"))
    assert header.count("|") == first.count("|")


def test_evaluate_reports_returns_on_time():
    from agents.evaluation import evaluate

    result = evaluate(
        "small",
        ["insertion"],
        episodes=2,
        seed=0,
        workers=1,
        hindsight_time_limit_s=0.0,
        overrides={"orders.returns_share": 0.3},
        progress=False,
        route_map=False,
    )
    assert all(0 <= row["on_time_rate_return"] <= 1 for row in result.rows)
    assert "returns on time (%)" in result.markdown()


def test_append_insertion_prices_a_return_at_its_collection(tiny_world):
    from lastmile_env.sim import AppendInsertion

    sim = Simulator(tiny_world(), 0, generator=delivery_and_return, insertion=AppendInsertion(), debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    ins = sim.insertion(0)
    assert (ins.pickup_after, ins.delivery_after, ins.eta_min) == (1, 1, 10.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_slots_draw_what_one_choice_per_order_draws(seed):
    """The generator's address draw in one pass per weight row is ``rng.choice(p=...)`` once per order: the
    same indices, and the stream left in the same state (the draws after it unchanged)."""
    setup = np.random.default_rng(100 + seed)
    weights = setup.uniform(size=(4, 37)) ** 3
    weights[2, 5:] = 0.0  # a row with few addresses
    weights /= weights.sum(axis=1, keepdims=True)
    rows = setup.integers(0, 4, size=500)
    each, batch = np.random.default_rng(seed), np.random.default_rng(seed)
    expected = np.array([each.choice(37, p=weights[r]) for r in rows])
    got = _weighted_slots(weights, rows, batch)
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    assert each.random() == batch.random()
