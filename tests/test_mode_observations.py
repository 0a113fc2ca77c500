"""The observations read each vehicle's own mode's matrix: the dispatch observation's minutes to the order's
center (``to_center_h``) and the routing env's drive / center-to-door times (``drive_h``, ``slack_h``).
A van-only fleet reads the road matrix (``World.time_arr``), bit for bit as before modes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lastmile_env.config import load_scenario
from lastmile_env.observations import CLIP, VEHICLE_FEATURES, DispatchObservation
from lastmile_env.routing_env import STOP_FEATURES, RoutingObservation
from lastmile_env.sim import Simulator, World, build_world
from lastmile_env.sim.types import StopKind, Vehicle
from lastmile_env.sim.world import world_for
from tests.test_vehicle_modes import MIXED

TO_CENTER = VEHICLE_FEATURES.index("to_center_h")
DRIVE, SLACK = STOP_FEATURES.index("drive_h"), STOP_FEATURES.index("slack_h")


def feature(hours: float) -> np.float32:
    """A feature as the observation stores it: float32, clipped."""
    return np.clip(np.float32(hours), -CLIP, CLIP)


def mixed_world() -> World:
    world = build_world(load_scenario("small", MIXED))
    assert world.mode_names == ("van", "cargo_bike", "drone")
    assert [v.mode for v in world.vehicles] == [0, 0, 0, 1, 1, 2]
    return world


def dispatch_rows(world: World, seed: int) -> list[tuple[int, int, int, float]]:
    """Play a day at random (feasible vehicle or reject); at each decision check every vehicle's
    ``to_center_h`` against its own mode's matrix. Returns ``(vehicle, node, center, feature)`` seen."""
    obs = DispatchObservation(world)
    sim = Simulator(world, seed)
    rng = np.random.default_rng(seed)
    seen = []
    while (decision := sim.next_decision()) is not None:
        order = decision.order
        assert order is not None
        rows = obs.encode(sim)["vehicles"]
        for v in sim.vehicles:
            own = world.time_modes[v.mode, v.node, order.center] / 60.0
            assert rows[v.id, TO_CENTER] == feature(own)
            seen.append((v.id, v.node, order.center, float(rows[v.id, TO_CENTER])))
        feasible = np.flatnonzero(sim.feasible_vehicles())
        sim.assign(int(rng.choice(feasible))) if feasible.size else sim.reject()
    return seen


def routing_decisions(sim: Simulator, seed: int) -> Iterator[Vehicle]:
    """Play a routing-mode day at random (a feasible vehicle or reject, a valid stop or wait), yielding the
    vehicle of each routing decision before it is made."""
    rng = np.random.default_rng(seed)
    while (decision := sim.next_decision()) is not None:
        if decision.order is not None:
            feasible = np.flatnonzero(sim.feasible_vehicles())
            sim.assign(int(rng.choice(feasible))) if feasible.size else sim.reject()
            continue
        yield sim.vehicles[decision.vehicle]
        valid = np.flatnonzero(sim.route_mask())
        sim.route(int(rng.choice(valid))) if valid.size else sim.wait()


def test_dispatch_to_center_reads_the_vehicles_mode_matrix():
    world = mixed_world()
    differs = {0: 0, 1: 0, 2: 0}
    for seed in (0, 1, 2):
        for vid, node, center, value in dispatch_rows(world, seed):
            mode = world.vehicles[vid].mode
            van = feature(world.time_arr[node, center] / 60.0)
            if mode == 0:
                assert value == van  # vans: the road matrix
            elif value != van:
                differs[mode] += 1
    # a cargo bike and a drone away from the center see their own times, not the vans'
    assert differs[1] > 0 and differs[2] > 0


def test_routing_drive_times_read_the_vehicles_mode_matrix():
    overrides = dict(MIXED)
    overrides["fleet.types"] = [dict(t, speed_factor=1.25) if t["name"] == "bike" else t
                                for t in MIXED["fleet.types"]]  # fmt: skip
    world = build_world(load_scenario("small", overrides))
    obs = RoutingObservation(world)
    checked = {0: 0, 1: 0, 2: 0}
    differs = {0: 0, 1: 0, 2: 0}
    for seed in (0, 1):
        sim = Simulator(world, seed, routing=True)
        for v in routing_decisions(sim, seed):
            stops = obs.encode(sim, n_slots=len(v.route))["stops"]
            times, speed, now = world.time_modes[v.mode], v.speed_factor, sim.now
            for i, stop in enumerate(v.route):
                order = sim.orders[stop.order]
                drive_h = float(times[v.node, stop.loc]) / speed / 60.0
                pickup = stop.kind == StopKind.PICKUP
                to_door_h = float(times[order.center, order.loc]) / speed / 60.0 if pickup else 0.0
                due_h = (order.due_min - now) / 60.0
                assert stops[i, DRIVE] == feature(drive_h)
                assert stops[i, SLACK] == feature(due_h - drive_h - to_door_h)
                checked[v.mode] += 1
                van_h = world.time_arr[v.node, stop.loc] / speed / 60.0
                if v.mode == 0:
                    assert stops[i, DRIVE] == feature(van_h)
                elif stops[i, DRIVE] != feature(van_h):
                    differs[v.mode] += 1
    assert all(checked.values()), checked
    assert differs[1] > 0 and differs[2] > 0, differs


def test_van_only_observations_read_the_road_matrix():
    world = world_for(load_scenario("small"))
    assert world.mode_names == ("van",)
    seen = dispatch_rows(world, 3)
    assert any(value > 0.0 for *_, value in seen)  # vehicles away from the center
    for _, node, center, value in seen:
        assert value == feature(world.time_arr[node, center] / 60.0)
    obs = RoutingObservation(world)
    sim = Simulator(world, 3, routing=True)
    n = 0
    for v in routing_decisions(sim, 3):
        stops = obs.encode(sim, n_slots=len(v.route))["stops"]
        for i, stop in enumerate(v.route):
            # the nested-list road matrix, as the feature was computed before modes
            assert stops[i, DRIVE] == feature(world.time_min[v.node][stop.loc] / v.speed_factor / 60.0)
            n += 1
    assert n > 0
