"""The simulator's travel as PyVRP sees it, shared by ``reopt`` and the hindsight bound.

PyVRP's travel is static integer matrices, one per routing profile; the simulator's is per vehicle mode
(``World.time_modes`` / ``dist_modes``), under hourly congestion (``World.mode_mults``), times the vehicle's
speed factor and, for a drone, bounded by its battery. Here:

- units: distances in metres, times in seconds, costs in 1e-5 of ours, parcel sizes x 1000 (so PyVRP's
  penalties for excess load and lateness bite at our cost scale);
- a vehicle's profile is its mode's matrix with the mode's congestion averaged over the remaining shift
  (``mean_congestion``), divided by its speed factor (``profile_matrices``);
- a battery vehicle gets its recharge time on every edge out of its home center (after a landing) and,
  with a finite range, only the edges that keep every sortie within range (``sortie_edges``).

A van-only fleet gets exactly the numbers the models had before vehicle modes existed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from lastmile_env.sim.types import Order, Vehicle
from lastmile_env.sim.world import World

DIST_SCALE = 1000.0  # PyVRP distance unit: metres
TIME_SCALE = 60.0  # PyVRP time unit: seconds
COST_SCALE = 1e5  # PyVRP cost unit: 1e-5 of ours, so unit costs per metre and per second are integers
LOAD_SCALE = 1000  # parcel size unit in PyVRP, so its penalty per unit of excess load (<= 1e5) is felt


def door(order: Order) -> int:
    """Where the customer is served: the delivery address, or the address a return is collected at."""
    return order.center if order.is_return else order.loc


def mean_congestion(world: World, start_min: float, end_min: float, mode: int = 0) -> float:
    """Time-average of the hourly congestion multiplier of ``mode`` over ``[start_min, end_min]`` (sim
    minutes)."""
    mults, h0 = world.mode_mults[mode], world.config.shift_start_hour
    if end_min <= start_min:
        return float(mults[int(h0 + start_min / 60.0) % 24])
    total, t = 0.0, start_min
    while t < end_min - 1e-9:
        clock_h = h0 + t / 60.0
        step = min(end_min, t + (math.floor(clock_h) + 1 - clock_h) * 60.0) - t
        total += step * float(mults[int(clock_h) % 24])
        t += step
    return total / (end_min - start_min)


def mode_congestion(world: World, start_min: float, end_min: float) -> list[float]:
    """``mean_congestion`` of every mode of the world, by mode index."""
    return [mean_congestion(world, start_min, end_min, m) for m in range(len(world.mode_names))]


def drive_min(world: World, congestion: list[float], vehicle: Vehicle, src: int, dst: int) -> float:
    """The vehicle's travel minutes between key nodes at its mode's averaged congestion."""
    return float(world.time_modes[vehicle.mode, src, dst]) / vehicle.speed_factor * congestion[vehicle.mode]


def fastest_min(
    world: World, congestion: list[float], vehicles: Iterable[Vehicle], src: int, dst: int
) -> float:
    """The fewest travel minutes any of the vehicles needs between key nodes (inf without vehicles)."""
    kinds = {(v.mode, v.speed_factor): v for v in vehicles}
    return min((drive_min(world, congestion, v, src, dst) for v in kinds.values()), default=math.inf)


def profile_matrices(
    world: World,
    keys: np.ndarray,
    vehicle: Vehicle,
    congestion: list[float],
    is_center: np.ndarray,
    start: int | None = None,
    start_flown_km: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vehicle's ``(metres, seconds, allowed)`` between locations at the key nodes ``keys``: whole
    numbers as floats (the caller forbids more edges, then casts), and the edges its battery allows.

    A battery vehicle lands home from a flight and recharges before it leaves again: the recharge is added
    to every edge out of a location at its home center except its ``start`` (a vehicle's start time already
    includes a recharge under way). With a finite range only ``sortie_edges`` are allowed."""
    ix = np.ix_(keys, keys)
    metres = np.rint(world.dist_modes[vehicle.mode][ix] * DIST_SCALE)
    per_min = congestion[vehicle.mode] / vehicle.speed_factor * TIME_SCALE
    seconds = np.rint(world.time_modes[vehicle.mode][ix] * per_min)
    allowed = np.ones(metres.shape, dtype=bool)
    if vehicle.recharge_min > 0:
        landed = keys == vehicle.home
        if start is not None:
            landed[start] = False
        seconds[np.ix_(landed, keys != vehicle.home)] += round(vehicle.recharge_min * TIME_SCALE)
    if vehicle.range_km < math.inf:
        allowed = sortie_edges(world, keys, vehicle, is_center, start, start_flown_km)
    return metres, seconds, allowed


def sortie_edges(
    world: World,
    keys: np.ndarray,
    vehicle: Vehicle,
    is_center: np.ndarray,
    start: int | None = None,
    start_flown_km: float = 0.0,
) -> np.ndarray:
    """The edges (between locations at the key nodes ``keys``) a battery vehicle may fly so that every
    sortie is within its range, as each sortie is ``home -> [one other center ->] one stop -> home``:

    - from its home center (any location there): to a location it can fly to and straight back from;
    - from another center (``is_center``: where a sortie's parcels are picked up or a return is dropped):
      home, or a stop within range of ``home -> center -> stop -> home``;
    - from a stop (not a center): home only;
    - from its ``start`` location (``start_flown_km`` flown since the last charge): home, or a location it
      can reach and fly home from.

    Exact for a one-parcel drone; for a bigger one it allows one address per sortie, which restricts the
    model only (the simulator prices every proposal in any case)."""
    km = world.dist_modes[vehicle.mode][np.ix_(keys, keys)]
    is_home = keys == vehicle.home
    if not is_home.any():
        raise ValueError(f"vehicle {vehicle.id}'s home center is not among the locations")
    h = int(np.argmax(is_home))
    out, back, reach = km[h], km[:, h], vehicle.range_km + 1e-9
    ok = np.zeros(km.shape, dtype=bool)
    ok[is_home] = out + back <= reach
    for c in np.flatnonzero(is_center & ~is_home):
        ok[c] = (out[c] + km[c] + back <= reach) & ~is_center
    if start is not None:
        ok[start] = start_flown_km + km[start] + back <= reach
    ok[:, is_home] = True
    np.fill_diagonal(ok, True)
    return ok
