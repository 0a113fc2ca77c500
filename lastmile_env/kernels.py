"""Compiled (numba) kernels of the simulator's arithmetic: travel under congestion, a plan's schedule and
cost, and the cheapest-insertion search.

These are the single implementation: the simulator commits legs, prices plans and searches insertions
through them, so what is planned is exactly what is executed. Plans are passed as parallel arrays, one entry
per stop: ``loc`` (key index), ``open_min`` (parcel ready / window start), ``due_min`` (lateness is priced at
every stop by it: inf for pickups at a center, a return's window end at its collection), ``service_min``,
``load_delta`` (+size for a pickup, -size for a delivery).

Vehicle modes (van, cargo bike, drone): the travel arrays are stacked per mode, ``time_min`` / ``dist_km``
``(M, K, K)`` and ``mults`` ``(M, 24)`` (mode 0 is the road matrix vans use), and each vehicle's row names its
mode (``VEHICLE_*`` columns below), so every kernel reads the matrices of the vehicle's mode. A vehicle with
a battery (a drone: ``range_km`` finite or ``recharge_min`` > 0) flies at most ``range_km`` between two
visits of its home center (a sortie) and, arriving home after a flight, leaves again no earlier than
``recharge_min`` later (``stop_free``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _at(index: int) -> np.uintp:
    """``index`` as an unsigned integer: numba indexes an array by it without the check for a negative index
    (Python's wrap-around) that it makes for a signed one, three instructions a read. Only for an index
    known to be 0 or more (a position, a place); the float results are the same bits."""
    return np.uintp(index)


@njit(cache=True, inline="always")
def igl_arrival(mults: np.ndarray, shift_start_h: float, free_flow_min: float, depart_min: float) -> float:
    """Arrival of a leg of ``free_flow_min`` free-flow minutes leaving at ``depart_min`` (sim minutes).

    Ichoua-Gendreau-Laporte: speed is constant within each clock hour (travel time x ``mults[hour]``); a leg
    crossing an hour boundary continues at the next hour's speed. FIFO: leaving later never arrives earlier.
    Inlined where it is called (the insertion search's walks call it most): the same arithmetic, no call.
    """
    if free_flow_min <= 0.0:
        return depart_min
    clock_h = shift_start_h + depart_min / 60.0
    if 0.0 <= clock_h < 24.0:  # within the day: x % 24.0 is x itself, and its hour is 0..23
        hour = int(clock_h)
    else:  # (a tiny negative x % 24.0 is 24.0: its hour wraps to 0)
        clock_h %= 24.0
        hour = int(clock_h) % 24
    left_min = (hour + 1 - clock_h) * 60.0
    mult = mults[_at(hour)]
    need_min = free_flow_min * mult
    if need_min <= left_min:
        return depart_min + need_min
    t = depart_min + left_min
    work = free_flow_min - left_min / mult
    hour = (hour + 1) % 24
    if work < 60.0 / mults[hour]:  # done within the next hour (less than a day: 60 / mults[h] <= per_day)
        return t + work * mults[hour]
    per_day = 0.0
    for h in range(24):
        per_day += 60.0 / mults[h]
    if work >= per_day:  # whole days take exactly 24 h
        days = math.floor(work / per_day)
        t += days * 1440.0
        work -= days * per_day
    while work > 60.0 / mults[hour]:
        t += 60.0
        work -= 60.0 / mults[hour]
        hour = (hour + 1) % 24
    return t + work * mults[hour]


# Columns of a vehicle row (``sim.plan.vehicle_params``).
VEHICLE_COLUMNS = 12
MODE, RANGE_KM, RECHARGE_MIN, FLOWN_KM = 7, 8, 9, 11


@njit(cache=True)
def stop_free(arrive: float, begin: float, service: float, recharge: float, charging: bool) -> float:
    """When a vehicle is free after a stop: the service done, and (``charging``: a battery vehicle arrived
    home from a flight) its battery recharged ``recharge`` minutes after the arrival."""
    t = begin + service
    if charging and arrive + recharge > t:
        return arrive + recharge
    return t


@njit(cache=True)
def late_cost(begin_min: float, due_min: float, late_fixed: float, late_per_min: float) -> float:
    """Lateness penalty of a delivery starting at ``begin_min`` (0 when on time)."""
    late = begin_min - due_min
    if late <= 1e-9:
        return 0.0
    return late_fixed + late_per_min * late


@njit(cache=True, inline="always")
def _visit(
    arrive: float,
    dist: float,
    late: float,
    leg_km: float,
    open_min: float,
    due_min: float,
    service_min: float,
    late_fixed: float,
    late_per_min: float,
) -> tuple[float, float, float]:
    """A stop reached at ``arrive`` after a leg of ``leg_km``, served when it opens: ``(free time, km,
    lateness cost)`` after it, from the walk's ``dist`` and ``late`` before it (scalars only: numba passes
    no array to it, so nothing is reference-counted per stop)."""
    begin = arrive if arrive >= open_min else open_min
    return begin + service_min, dist + leg_km, late + late_cost(begin, due_min, late_fixed, late_per_min)


@njit(cache=True)
def plan_cost(dist_km: float, duty_min: float, per_km: float, per_hour: float, late_cost: float) -> float:
    """Cost of a plan: distance, driver time from its start to the return, lateness penalties."""
    return dist_km * per_km + duty_min * per_hour / 60.0 + late_cost


@njit(cache=True)
def plan_totals(
    dist_km: np.ndarray,
    last_node: int,
    home: int,
    start_min: float,
    end_min: float,
    loads: np.ndarray,
    cum_dist: np.ndarray,
    cum_late: np.ndarray,
    per_km: float,
    per_hour: float,
    capacity: float,
    shift_end_min: float,
) -> tuple[float, float, float, bool]:
    """``(cost, km, lateness cost, feasible)`` of a scheduled plan (``schedule``'s prefix arrays): its km
    include the return home from ``last_node``; feasible when the load never exceeds the capacity and the
    vehicle is back by its shift end."""
    k = cum_dist.shape[0] - 1
    dist = cum_dist[k] + dist_km[last_node, home]
    late = cum_late[k]
    feasible = loads.max() <= capacity and end_min <= shift_end_min + 1e-9
    return plan_cost(dist, end_min - start_min, per_km, per_hour, late), dist, late, feasible


@njit(cache=True)
def schedule(
    time_min: np.ndarray,
    dist_km: np.ndarray,
    mults: np.ndarray,
    shift_start_h: float,
    speed_factor: float,
    home: int,
    start_min: float,
    start_node: int,
    start_load: int,
    loc: np.ndarray,
    open_min: np.ndarray,
    due_min: np.ndarray,
    service_min: np.ndarray,
    load_delta: np.ndarray,
    late_fixed: float,
    late_per_min: float,
    range_km: float,
    recharge_min: float,
    start_flown_km: float,
    arrive: np.ndarray,
    begin: np.ndarray,
    free: np.ndarray,
    load: np.ndarray,
    cum_dist: np.ndarray,
    cum_late: np.ndarray,
) -> tuple[float, float, bool]:
    """Drive a plan from its start, serve every stop (waiting for its open time), return home, writing the
    schedule into the caller's arrays (a fleet search schedules a plan straight into its packed rows).

    ``time_min`` / ``dist_km`` / ``mults`` are the vehicle's mode's. Writes per stop ``arrive`` and ``begin``
    (service start; at least ``k`` long), and the state after ``m`` stops (``m = 0..k``, at least ``k + 1``
    long): ``free`` (time), ``load``, ``cum_dist``, ``cum_late``. Returns the return time, the service
    minutes, and whether every sortie (km flown between two visits of home, ``start_flown_km`` already flown
    at the start) is within ``range_km``. A battery vehicle (``recharge_min`` > 0) arriving home from a
    flight recharges there (``stop_free``).
    """
    k = loc.shape[0]
    t, node, ld, dist, late, service = start_min, start_node, start_load, 0.0, 0.0, 0.0
    free[0], load[0], cum_dist[0], cum_late[0] = t, ld, 0.0, 0.0
    battery = recharge_min > 0.0 or range_km < math.inf
    flown, in_range = start_flown_km, True
    for m in range(k):
        dst = loc[m]
        leg_km = dist_km[node, dst]
        dist += leg_km
        a = igl_arrival(mults, shift_start_h, time_min[node, dst] / speed_factor, t)
        b = a if a >= open_min[m] else open_min[m]
        if battery:
            flown += leg_km
            in_range = in_range and flown <= range_km + 1e-9
            charging = dst == home and leg_km > 0.0
            t = stop_free(a, b, service_min[m], recharge_min, charging)
            if dst == home:
                flown = 0.0
        else:
            t = b + service_min[m]
        service += service_min[m]
        late += late_cost(b, due_min[m], late_fixed, late_per_min)  # 0 for a stop without a due (inf)
        ld += load_delta[m]
        node = dst
        arrive[m], begin[m] = a, b
        free[m + 1], load[m + 1], cum_dist[m + 1], cum_late[m + 1] = t, ld, dist, late
    end = igl_arrival(mults, shift_start_h, time_min[node, home] / speed_factor, t)
    if battery:
        in_range = in_range and flown + dist_km[node, home] <= range_km + 1e-9
    return end, service, in_range


@njit(cache=True)
def evaluate(
    time_min: np.ndarray,
    dist_km: np.ndarray,
    mults: np.ndarray,
    shift_start_h: float,
    vehicle: np.ndarray,
    start_min: float,
    start_node: int,
    start_load: int,
    loc: np.ndarray,
    open_min: np.ndarray,
    due_min: np.ndarray,
    service_min: np.ndarray,
    load_delta: np.ndarray,
    late_fixed: float,
    late_per_min: float,
    arrive: np.ndarray,
    begin: np.ndarray,
    free: np.ndarray,
    loads: np.ndarray,
    cum_dist: np.ndarray,
    cum_late: np.ndarray,
) -> tuple[float, float, float, float, float, bool, bool]:
    """``schedule`` then ``plan_totals`` of a plan, in one call, the schedule written into the caller's arrays
    (``schedule``'s; ``free``, ``loads``, ``cum_dist`` and ``cum_late`` exactly ``k + 1`` long, as
    ``plan_totals`` reads them whole): returns the return time, the service minutes, cost, km, lateness
    cost, feasibility (capacity, shift end and, for a battery vehicle, range) and whether every sortie is
    within range (always true without a battery). The travel arrays are stacked per mode (``(M, K, K)``,
    ``(M, 24)``); ``vehicle`` = (speed factor, home, shift end, cost per km, cost per minute, capacity, cost
    per hour, mode, range km, recharge minutes, unused, km flown since its last charge at the start)."""
    home = int(vehicle[1])
    mode = int(vehicle[MODE])
    time_m, dist_m = time_min[mode], dist_km[mode]
    end, service, in_range = schedule(
        time_m, dist_m, mults[mode], shift_start_h, vehicle[0], home, start_min, start_node, start_load, loc,
        open_min, due_min, service_min, load_delta, late_fixed, late_per_min, vehicle[RANGE_KM],
        vehicle[RECHARGE_MIN], vehicle[FLOWN_KM], arrive, begin, free, loads, cum_dist, cum_late,
    )  # fmt: skip
    k = loc.shape[0]
    last = loc[k - 1] if k > 0 else start_node
    cost, dist, late, feasible = plan_totals(
        dist_m, last, home, start_min, end, loads, cum_dist, cum_late, vehicle[3], vehicle[6], vehicle[5],
        vehicle[2],
    )  # fmt: skip
    return end, service, cost, dist, late, feasible and in_range, in_range


@njit(cache=True)
def leg(
    time_modes: np.ndarray,
    dist_modes: np.ndarray,
    mults_modes: np.ndarray,
    shift_start_h: float,
    speed_factor: float,
    home: int,
    mode: int,
    range_km: float,
    recharge_min: float,
    start_min: float,
    start_node: int,
    dst: int,
    open_min: float,
    due_min: float,
    service_min: float,
    late_fixed: float,
    late_per_min: float,
) -> tuple[float, float, float, float, float]:
    """``(arrive, begin, free, lateness cost, km)`` of a one-stop plan's stop: exactly ``evaluate``'s
    ``arrive[0]``, ``begin[0]``, ``free[1]``, ``cum_late[1]`` and ``cum_dist[1]`` for that plan (the same
    arithmetic in the same order), without the return home, the totals and the arrays (the simulator's next
    leg). The vehicle is given by the columns ``evaluate`` reads of its row (speed factor, home, mode, range,
    recharge) as scalars: no row is built per leg."""
    leg_km = dist_modes[mode, start_node, dst]
    a = igl_arrival(
        mults_modes[mode], shift_start_h, time_modes[mode, start_node, dst] / speed_factor, start_min
    )
    b = a if a >= open_min else open_min
    if recharge_min > 0.0 or range_km < math.inf:
        t = stop_free(a, b, service_min, recharge_min, dst == home and leg_km > 0.0)
    else:
        t = b + service_min
    return a, b, t, 0.0 + late_cost(b, due_min, late_fixed, late_per_min), leg_km


@njit(cache=True, inline="always")
def _rest_floor_cut(
    ahead: float,
    rest_km: float,
    rest_late: float,
    dist: float,
    late: float,
    delivered: bool,
    to_dest: float,
    after: float,
    earliest: float,
    due: float,
    late_fixed: float,
    late_per_min: float,
    shift_end: float,
    old_end: float,
    start: float,
    per_km: float,
    per_min: float,
    target: float,
) -> bool:
    """The insertion search's in-walk bound after an old stop (``_search``): whether the pair is provably
    back after the shift end or not below ``target`` (the old cost plus the best found plus the tie).

    The rest of the route is the old one from here (``rest_km``, ``rest_late``: the old plan's km and
    lateness after the stop), with the new delivery still to come unless ``delivered`` (its km included in
    ``rest_km``; ``to_dest`` / ``after``: ``insertion_bounds``'s floor times to it and from it home, its
    open time ``earliest`` and due ``due``); no remaining stop gets earlier (FIFO), so their lateness and
    the return do not shrink; the return is no earlier than ``ahead``, the rest driven at the floor from
    the stop's arrival. Scalars only: it runs after every step of every walk."""
    if not delivered:  # the new delivery on the way
        served = ahead + to_dest
        served = served if served >= earliest else earliest
        rest_late += late_cost(served - BOUND_MARGIN_MIN, due, late_fixed, late_per_min)
        ahead = served + after
    if ahead > shift_end + 1e-9 + BOUND_MARGIN_MIN:  # back after the shift end even at the floor
        return True
    duty = (ahead if ahead > old_end else old_end) - start
    return (dist + rest_km) * per_km + duty * per_min + late + rest_late >= target


@njit(cache=True)
def _priced_battery(
    time_min: np.ndarray,
    dist_km: np.ndarray,
    mults: np.ndarray,
    shift_start_h: float,
    vehicle: np.ndarray,
    costs: np.ndarray,
    nodes: np.ndarray,
    open_min: np.ndarray,
    due_min: np.ndarray,
    service_min: np.ndarray,
    load_delta: np.ndarray,
    start_min: float,
    start_load: int,
    old: np.ndarray,
    new: np.ndarray,
    i: int,
    j: int,
) -> tuple[float, float, float]:
    """A pair's pricing for a battery vehicle (a drone), ``(cost increase, km increase, ETA)`` (cost inf
    if infeasible): the new plan scheduled whole by ``schedule``, whose
    range and recharge depend on every leg of a sortie (its plans are short: one parcel on board)."""
    k = nodes.shape[0] - 2
    loc = np.empty(k + 2, dtype=np.int64)
    o_min, d_min, s_min = np.empty(k + 2), np.empty(k + 2), np.empty(k + 2)
    delta = np.empty(k + 2, dtype=np.int64)
    size = int(new[2])
    n = 0
    for m in range(k + 1):
        if m == i:  # the new pickup
            loc[n], o_min[n], d_min[n], s_min[n], delta[n] = int(new[0]), new[3], new[8], new[6], size
            n += 1
        if m == j:  # the new delivery
            loc[n], o_min[n], d_min[n], s_min[n], delta[n] = int(new[1]), new[4], new[5], new[7], -size
            n += 1
        if m < k:
            loc[n], o_min[n], d_min[n], s_min[n], delta[n] = (
                nodes[m + 1],
                open_min[m],
                due_min[m],
                service_min[m],
                load_delta[m],
            )
            n += 1
    home = int(vehicle[1])
    arrive, begin, free = np.empty(k + 2), np.empty(k + 2), np.empty(k + 3)
    loads, cum_dist, cum_late = np.empty(k + 3, dtype=np.int64), np.empty(k + 3), np.empty(k + 3)
    end, _, in_range = schedule(
        time_min, dist_km, mults, shift_start_h, vehicle[0], home, start_min, nodes[0], start_load, loc,
        o_min, d_min, s_min, delta, costs[0], costs[1], vehicle[RANGE_KM], vehicle[RECHARGE_MIN],
        vehicle[FLOWN_KM], arrive, begin, free, loads, cum_dist, cum_late,
    )  # fmt: skip
    cost, dist, _, feasible = plan_totals(
        dist_km, loc[k + 1], home, start_min, end, loads, cum_dist, cum_late, vehicle[3], vehicle[6],
        vehicle[5], vehicle[2],
    )  # fmt: skip
    if not (feasible and in_range):
        return math.inf, math.nan, math.nan
    eta = begin[i] if new[8] < math.inf else begin[j + 1]  # a return: its collection
    return cost - old[0], dist - old[1], eta


# Rows of ``FleetPlans.row_ints``, the per-vehicle integers ``fleet_cheapest_insertion`` reads and writes.
ROW_INTS = 4
ROW_COUNTS, ROW_START_NODE, ROW_START_LOAD, ROW_N_STOPS = 0, 1, 2, 3
# rows of a fleet search's two result stacks (``sim.insertion.FleetInsertion``): ints ``(FOUND_INTS, V)``,
# floats ``(FOUND_FLOATS, V)``
FOUND_INTS, FOUND_FLOATS = 2, 4
FOUND_I, FOUND_J = 0, 1
FOUND_COST, FOUND_KM, FOUND_ETA, FOUND_END = 0, 1, 2, 3
# a fleet search's query (``FleetPlans.query``): (late fixed, late per minute), then from ``QUERY_ORDER`` the
# new order's ``ORDER_COLUMNS`` values as ``cheapest_insertion``'s ``new`` (``sim.insertion._order_values``)
QUERY_ORDER, ORDER_COLUMNS = 2, 9
WORK_ROWS = 9  # rows of the per-stop scratch that ``insertion_bounds`` fills (``_search`` reads some)
TIE_MARGIN = 1e-10  # far above a bound's rounding: a pair bounded above best - tie + this cannot beat it
BOUND_MARGIN_MIN = 1e-6  # the floor times' rounding is far below this: a lateness bound never jumps early


@njit(cache=True, inline="always")
def window_floor(mults: np.ndarray, shift_start_h: float, start_min: float, shift_end_min: float) -> float:
    """The lowest congestion multiplier of the clock hours from ``start_min`` to the shift end: every leg of a
    feasible plan from ``start_min`` is driven within them (the whole day's lowest past a day). Inlined into
    the search, which takes it once per vehicle (a call there cost more than its loop)."""
    first = math.floor(shift_start_h + start_min / 60.0)
    last = math.floor(shift_start_h + (shift_end_min + BOUND_MARGIN_MIN) / 60.0)
    if last - first >= 23:
        return mults.min()
    low, hour = math.inf, first % 24
    for _ in range(last - first + 1):
        m = mults[_at(hour)]
        low = m if m < low else low
        hour = hour + 1 if hour < 23 else 0
    return low


@njit(cache=True, inline="always")
def insertion_bounds(
    time_min: np.ndarray,
    dist_km: np.ndarray,
    mults: np.ndarray,
    shift_start_h: float,
    vehicle: np.ndarray,
    costs: np.ndarray,
    nodes: np.ndarray,
    open_min: np.ndarray,
    due_min: np.ndarray,
    service_min: np.ndarray,
    free: np.ndarray,
    loads: np.ndarray,
    cum_late: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    per_ff: float,
    lower: np.ndarray,
    pi: np.ndarray,
    pj: np.ndarray,
    work: np.ndarray,
) -> int:
    """A lower bound on the added cost of every pair ``(i, j)`` that keeps the capacity and is not provably
    back after the shift end, into ``lower``, ``pi``, ``pj`` (``(i, j)`` in lexicographic order); returns
    their number. ``time_min`` / ``dist_km`` / ``mults`` are the vehicle's mode's, ``per_ff`` the floor
    minutes per free-flow minute (``window_floor`` / speed factor), the other arguments as
    ``cheapest_insertion``'s. ``work`` (``(WORK_ROWS, >= k + 2)``) gets per old stop ``rest``, ``del_km``,
    ``to_dest`` and ``after`` (below) for ``_search``'s walks, and scratch.

    The bound: the added km exactly, plus the lateness and the driver time past the current return of the
    plan driven from the exact state before the new pickup at the lowest congestion of the hours left in
    the shift (``window_floor``: an infeasible plan ends later and is never chosen), serving every stop,
    waiting for the new stops and for the old ones up to the new delivery: the new stops' lateness, the
    lateness each old stop after the pickup gains (reached no earlier than that drive, waiting for its open
    time, without the new delivery's detour), and the return never earlier than the old one (FIFO).
    """
    k = nodes.shape[0] - 2
    room = vehicle[5] - new[2]
    per_km, per_min = vehicle[3], vehicle[4]
    late_fixed, late_per_min = costs[0], costs[1]
    old_end = old[2]
    latest = vehicle[2] + 1e-9 + BOUND_MARGIN_MIN  # a floor return later than this is past the shift end
    center, dest = _at(int(new[0])), _at(int(new[1]))  # places: matrix reads by _at
    # leg[p] / old_km[p]: the floor minutes and the km from old stop p (0: the start) to the next (k: home);
    # from_dest[p]: the km from the new delivery to that next stop; rest[p]: driving at the floor and
    # serving from the arrival at old stop p (1..k) to the arrival home. (Each matrix entry read once.)
    rest, del_km, to_dest, after = work[0], work[1], work[2], work[3]
    leave, leg, reach_leg, old_km, from_dest = work[4], work[5], work[6], work[7], work[8]
    for p in range(k + 1):
        q = _at(p)
        a, b = _at(nodes[q]), _at(nodes[_at(p + 1)])
        leg[q] = time_min[a, b] * per_ff
        old_km[q] = dist_km[a, b]
        from_dest[q] = dist_km[dest, b]
    rest[_at(k + 1)] = 0.0
    for p in range(k, 0, -1):
        q = _at(p)
        rest[q] = rest[_at(p + 1)] + service_min[_at(p - 1)] + leg[q]
    # per delivery position j: its added km (pickup elsewhere), the floor time from old stop j's arrival
    # (offset by rest) to the new delivery, and from the delivery's service start to the return home
    for j in range(k + 1):
        u = _at(j)
        c, e = _at(nodes[u]), _at(nodes[_at(j + 1)])
        del_km[u] = dist_km[c, dest] + from_dest[u] - old_km[u]
        reach_leg[u] = time_min[c, dest] * per_ff
        to_dest[u] = reach_leg[u] + (service_min[_at(j - 1)] - rest[u] if j > 0 else 0.0)
        after[u] = new[7] + time_min[dest, e] * per_ff + rest[_at(j + 1)]
    center_dest_km, center_dest_min = dist_km[center, dest], time_min[center, dest]
    n = 0
    for i in range(k + 1):
        o = _at(i)
        if loads[o] > room:
            continue
        a, b = _at(nodes[o]), _at(nodes[_at(i + 1)])
        # the new pickup: served no earlier than its floor arrival from the plan's exact state after i stops
        to_center_km = dist_km[a, center]
        picked = free[o] + time_min[a, center] * per_ff
        picked = picked if picked >= new[3] else new[3]
        pick_late = late_cost(picked - BOUND_MARGIN_MIN, new[8], late_fixed, late_per_min)
        left = picked + new[6]
        # the old stops after the pickup, driven at the floor and waiting for their open times: when each is
        # left at the earliest, and the lateness they gain over the old plan's (none can shrink: FIFO)
        t = left + time_min[center, b] * per_ff
        gained = 0.0
        for p in range(i + 1, k + 1):
            q, s = _at(p), _at(p - 1)
            begin = t if t >= open_min[s] else open_min[s]
            more = late_cost(begin - BOUND_MARGIN_MIN, due_min[s], late_fixed, late_per_min) - (
                cum_late[q] - cum_late[s]
            )
            gained += more if more > 0.0 else 0.0
            leave[q] = begin + service_min[s]
            t = leave[q] + leg[q]
        p_km = to_center_km + dist_km[center, b] - old_km[o]  # the pickup's added km (delivery elsewhere)
        for j in range(i, k + 1):
            u = _at(j)
            if j == i:
                add_km = to_center_km + center_dest_km + from_dest[o] - old_km[o]
                reach = left + center_dest_min * per_ff
            else:
                if loads[u] > room:
                    break
                add_km = p_km + del_km[u]
                reach = leave[u] + reach_leg[u]
            served = reach if reach >= new[4] else new[4]
            end = served + after[u]
            if end > latest:  # back after the shift end even so: infeasible
                continue
            at = _at(n)
            lower[at] = (
                add_km * per_km
                + pick_late
                + gained
                + late_cost(served - BOUND_MARGIN_MIN, new[5], late_fixed, late_per_min)
                + (end - old_end if end > old_end else 0.0) * per_min
            )
            pi[at], pj[at] = i, j
            n += 1
    return n


@njit(cache=True)
def _sift_down(heap: np.ndarray, size: int, pos: int, key: np.ndarray) -> None:
    """Restore the min-heap ``heap[:size]`` of indices ordered by ``(key[index], index)`` below ``pos``."""
    item = heap[_at(pos)]
    item_key = key[_at(item)]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        top = heap[_at(child)]
        top_key = key[_at(top)]
        if child + 1 < size:
            right = heap[_at(child + 1)]
            right_key = key[_at(right)]
            if right_key < top_key or (right_key == top_key and right < top):
                child, top, top_key = child + 1, right, right_key
        if not (top_key < item_key or (top_key == item_key and top < item)):
            break
        heap[_at(pos)] = top
        pos = child
    heap[_at(pos)] = item


@njit(cache=True, inline="always")
def _search(
    time_modes: np.ndarray,
    dist_modes: np.ndarray,
    mults_modes: np.ndarray,
    shift_start_h: float,
    vehicle: np.ndarray,
    costs: np.ndarray,
    nodes: np.ndarray,
    open_min: np.ndarray,
    due_min: np.ndarray,
    service_min: np.ndarray,
    load_delta: np.ndarray,
    free: np.ndarray,
    loads: np.ndarray,
    cum_dist: np.ndarray,
    cum_late: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    tie: float,
    lower: np.ndarray,
    pi: np.ndarray,
    pj: np.ndarray,
    heap: np.ndarray,
    work: np.ndarray,
    walks: np.ndarray,
    reached: np.ndarray,
) -> tuple[int, int, float, float, float]:
    """``cheapest_insertion`` with its scratch arrays given (``insertion_bounds``'s, ``heap``, at least
    the plan's number of pairs long, ``walks`` ``(4, >= k + 1, >= k + 1)`` and ``reached``), so that a
    fleet's search allocates them once. Inlined, with ``insertion_bounds``, into the fleet's loop over its
    vehicles: no call per vehicle passing some twenty arrays.

    A pair ``(i, j)`` is priced by resuming from the old plan's state after ``i`` stops and ending early
    once the new schedule rejoins the old one (an old stop served when it was before: everything after is
    unchanged), or once ``_rest_floor_cut`` proves it back after the shift end or not below the best found
    (plus the tie). The walk from the new pickup to the new delivery does not depend on ``j``: pairs with
    the same ``i`` share it. ``walks[:, i, m]`` holds the state (free time, km, lateness cost, and at
    ``m = i`` the pickup's service start) after the pickup and ``m - i`` more old stops, valid up to
    ``m = reached[i]`` (``-1``: nothing walked yet for this ``i``); a pair reads what an earlier one walked
    and walks (and records) only the rest: the same values by the same arithmetic as walking it again.
    The plan's length is ``nodes``'s; the stop and prefix arrays may be longer (a fleet's packed rows).
    """
    mode = int(vehicle[MODE])
    time_min, dist_km, mults = time_modes[mode], dist_modes[mode], mults_modes[mode]
    battery = vehicle[RECHARGE_MIN] > 0.0 or vehicle[RANGE_KM] < math.inf
    speed, shift_end, per_km, per_min = vehicle[0], vehicle[2], vehicle[3], vehicle[4]
    late_fixed, late_per_min = costs[0], costs[1]
    old_cost, old_dist, old_end, old_late = old[0], old[1], old[2], old[3]
    # places (matrix indices) as _at's unsigned integers, like the positions the walks index by
    center, dest, home = _at(int(new[0])), _at(int(new[1])), _at(int(vehicle[1]))
    k = nodes.shape[0] - 2
    start = free[0]
    per_ff = window_floor(mults, shift_start_h, free[0], vehicle[2]) / vehicle[0]
    n = insertion_bounds(
        time_min, dist_km, mults, shift_start_h, vehicle, costs, nodes, open_min, due_min, service_min, free,
        loads, cum_late, old, new, per_ff, lower, pi, pj, work,
    )  # fmt: skip
    # Pairs are priced in the order of a stable sort by bound, as far as needed: the lowest first, then the
    # pairs its cost does not rule out from a heap by (bound, index).
    reached[: nodes.shape[0] - 1] = -1
    best_i, best_j, best, best_km, best_eta = -1, -1, math.inf, math.nan, math.nan
    c, lowest = 0, lower[0]
    for r in range(1, n):
        if lower[_at(r)] < lowest:
            c, lowest = r, lower[_at(r)]
    size = -1  # the heap is built after the first pricing
    while n > 0:
        if size >= 0:
            if size == 0 or lower[heap[0]] > best + tie:
                break
            c = heap[0]
            size -= 1
            heap[0] = heap[size]
            _sift_down(heap, size, 0, lower)
            later = pi[c] > best_i or (pi[c] == best_i and pj[c] > best_j)
            if later and lower[c] >= best - tie + TIE_MARGIN:
                continue  # it could at best tie the best found, and comes later: it cannot be chosen
        if battery:
            delta, km, eta = _priced_battery(
                time_min, dist_km, mults, shift_start_h, vehicle, costs, nodes, open_min, due_min,
                service_min, load_delta, free[0], loads[0], old, new, pi[c], pj[c],
            )  # fmt: skip
        else:  # (written out here, not called: a call per pair would reference-count its arrays)
            i, j = pi[c], pj[c]
            delta, km, eta = math.inf, math.nan, math.nan
            target = old_cost + (best + tie)
            # km the new delivery adds after old stop j (j > i): insertion_bounds' del_km
            delivery_km = work[1, j]
            if reached[i] < i:  # the new pickup (a return's collection at the customer has a due: new[8])
                node = _at(nodes[i])
                dist = cum_dist[i] + dist_km[node, center]
                a = igl_arrival(mults, shift_start_h, time_min[node, center] / speed, free[i])
                b = a if a >= new[3] else new[3]
                late = cum_late[i] + late_cost(b, new[8], late_fixed, late_per_min)
                walks[0, i, i], walks[1, i, i], walks[2, i, i], walks[3, i, i] = b + new[6], dist, late, b
                reached[i] = i
            t, dist, late = walks[0, i, i], walks[1, i, i], walks[2, i, i]
            node, m, cut = center, i, False
            ui = _at(i)
            while m < j:  # the old stops before the new delivery: walked once per i, then read
                if m < reached[ui]:
                    m += 1
                    um = _at(m)
                    t, dist, late = walks[0, ui, um], walks[1, ui, um], walks[2, ui, um]
                else:
                    um, dst = _at(m), _at(nodes[_at(m + 1)])
                    a = igl_arrival(mults, shift_start_h, time_min[node, dst] / speed, t)
                    t, dist, late = _visit(
                        a, dist, late, dist_km[node, dst], open_min[um], due_min[um], service_min[um],
                        late_fixed, late_per_min,
                    )  # fmt: skip
                    m += 1
                    um = _at(m)
                    walks[0, ui, um], walks[1, ui, um], walks[2, ui, um] = t, dist, late
                    reached[ui] = m
                node = _at(nodes[um])
                if _rest_floor_cut(
                    t - service_min[_at(m - 1)] + work[0, um], old_dist - cum_dist[um] + delivery_km,
                    old_late - cum_late[um], dist, late, False, work[2, j], work[3, j], new[4], new[5],
                    late_fixed, late_per_min, shift_end, old_end, start, per_km, per_min, target,
                ):  # fmt: skip
                    cut = True
                    break
            if not cut:  # the new delivery
                dist += dist_km[node, dest]
                a = igl_arrival(mults, shift_start_h, time_min[node, dest] / speed, t)
                b = a if a >= new[4] else new[4]
                late += late_cost(b, new[5], late_fixed, late_per_min)
                if new[8] == math.inf:
                    eta = b
                elif new[8] < math.inf:  # a return: the ETA is its collection's
                    eta = walks[3, i, i]
                t = b + new[7]
                node = dest
            end = math.inf
            while not cut:  # the old stops after it, until the new schedule rejoins the old one
                um = _at(m)
                if m > j and t <= free[um]:  # rejoined the old schedule after old stop m
                    dist += old_dist - cum_dist[um]
                    late += old_late - cum_late[um]
                    end = old_end
                    break
                if m == k:
                    dist += dist_km[node, home]
                    end = igl_arrival(mults, shift_start_h, time_min[node, home] / speed, t)
                    break
                dst = _at(nodes[_at(m + 1)])
                a = igl_arrival(mults, shift_start_h, time_min[node, dst] / speed, t)
                t, dist, late = _visit(
                    a, dist, late, dist_km[node, dst], open_min[um], due_min[um], service_min[um], late_fixed,
                    late_per_min,
                )  # fmt: skip
                node = dst
                m += 1
                um = _at(m)
                if _rest_floor_cut(
                    t - service_min[_at(m - 1)] + work[0, um], old_dist - cum_dist[um] + 0.0,
                    old_late - cum_late[um], dist, late, True, 0.0, 0.0, new[4], new[5], late_fixed,
                    late_per_min, shift_end, old_end, start, per_km, per_min, target,
                ):  # fmt: skip
                    cut = True
            if not cut and end <= shift_end + 1e-9:
                delta = dist * per_km + (end - start) * per_min + late - old_cost
                km = dist - old_dist
        if delta != math.inf:
            i, j = pi[c], pj[c]
            earlier = i < best_i or (i == best_i and j < best_j)
            if delta < best - tie or (delta <= best + tie and earlier):
                best_i, best_j, best, best_km, best_eta = i, j, delta, km, eta
        if size < 0:
            size = 0
            for r in range(n):
                if r != c and lower[_at(r)] <= best + tie:
                    heap[_at(size)] = r
                    size += 1
            for r in range(size // 2 - 1, -1, -1):
                _sift_down(heap, size, r, lower)
    return best_i, best_j, best, best_km, best_eta


@njit(cache=True)
def cheapest_insertion(
    time_modes: np.ndarray,
    dist_modes: np.ndarray,
    mults_modes: np.ndarray,
    shift_start_h: float,
    vehicle: np.ndarray,
    costs: np.ndarray,
    nodes: np.ndarray,
    open_min: np.ndarray,
    due_min: np.ndarray,
    service_min: np.ndarray,
    load_delta: np.ndarray,
    free: np.ndarray,
    loads: np.ndarray,
    cum_dist: np.ndarray,
    cum_late: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    tie: float,
) -> tuple[int, int, float, float, float]:
    """Exact cheapest feasible insertion of a new order into a plan: ``(i, j, cost increase, km increase,
    ETA)`` with the pickup after ``i`` and the delivery after ``j`` old stops; ``i = -1`` when no
    insertion is feasible.

    The travel arrays are stacked per mode; ``nodes`` is ``[start, stop locs..., home]``; ``vehicle`` =
    (speed factor, home, shift end, cost per km, cost per minute, capacity, ...: ``evaluate``); ``costs``
    = (late fixed, late per min); ``old`` = (cost, km, return time, lateness cost, service minutes) of the
    plan; ``new`` = (pickup place, delivery place, size, ready,
    earliest, due, pickup service, delivery service, pickup due): a delivery's pickup is at its center with
    due inf, a return's pickup is the collection at the customer (due its window end) and its delivery the
    drop at the center (due inf); the ETA is the service start of the stop with the due. Branch and bound:
    pairs are priced in order of a lower bound on their added cost (``insertion_bounds``: km, lateness and
    driver time of the plan driven at the lowest congestion left in the shift), and the search stops once
    the bound exceeds the best found. Like the pricing's own early exit, the bound takes it that no old stop
    is reached earlier once an order is inserted before it (FIFO travel over a travel-time matrix that
    keeps the triangle inequality, as shortest paths do). Ties (within ``tie``) go to the earliest
    positions, whatever order the pairs are priced in (a pair after the best found whose bound is not below
    it by ``tie`` is not priced: it cannot win). A battery vehicle's pairs are priced by
    ``_priced_battery`` (recharges only add time: the bound holds).
    """
    k = nodes.shape[0] - 2
    n_pairs = (k + 1) * (k + 2) // 2
    return _search(
        time_modes, dist_modes, mults_modes, shift_start_h, vehicle, costs, nodes, open_min, due_min,
        service_min, load_delta, free, loads, cum_dist, cum_late, old, new, tie, np.empty(n_pairs),
        np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs, dtype=np.int64),
        np.empty(n_pairs, dtype=np.int64), np.empty((WORK_ROWS, k + 2)), np.empty((4, k + 1, k + 1)),
        np.empty(k + 1, dtype=np.int64),
    )  # fmt: skip


@njit(cache=True, inline="always")
def schedule_row(
    time_modes: np.ndarray,
    dist_modes: np.ndarray,
    mults_modes: np.ndarray,
    shift_start_h: float,
    vehicles: np.ndarray,
    costs: np.ndarray,
    v: int,
    k: int,
    nodes: np.ndarray,
    stop_times: np.ndarray,
    load_delta: np.ndarray,
    start_min: np.ndarray,
    start_load: np.ndarray,
    prefix: np.ndarray,
    loads: np.ndarray,
    summary: np.ndarray,
    feasible: np.ndarray,
    arrive: np.ndarray,
    begin: np.ndarray,
) -> None:
    """Schedule row ``v`` of a fleet's packed plans (``fleet_cheapest_insertion``'s arrays): its ``k`` stops
    from its start (``start_min[v]``, ``nodes[v, 0]``, ``start_load[v]``) by ``evaluate``, straight into the
    row's ``prefix`` and ``loads``, with its ``summary`` (cost, km, return time, lateness cost, service
    minutes) and ``feasible``; the stops' arrival and service start times into ``arrive`` and ``begin``.
    The one way a row is scheduled: the search's dirty rows and ``insert_into_row``."""
    end, service, cost, dist, late, ok, _ = evaluate(
        time_modes, dist_modes, mults_modes, shift_start_h, vehicles[v], start_min[v], nodes[v, 0],
        start_load[v], nodes[v, 1 : k + 1], stop_times[0, v, :k], stop_times[1, v, :k], stop_times[2, v, :k],
        load_delta[v, :k], costs[0], costs[1], arrive, begin, prefix[0, v, : k + 1], loads[v, : k + 1],
        prefix[1, v, : k + 1], prefix[2, v, : k + 1],
    )  # fmt: skip
    summary[v, 0], summary[v, 1], summary[v, 2], summary[v, 3], summary[v, 4] = cost, dist, end, late, service
    feasible[v] = ok


@njit(cache=True)
def fleet_cheapest_insertion(
    time_min: np.ndarray,
    dist_km: np.ndarray,
    mults: np.ndarray,
    shift_start_h: float,
    vehicles: np.ndarray,
    query: np.ndarray,
    row_ints: np.ndarray,
    nodes: np.ndarray,
    stop_times: np.ndarray,
    load_delta: np.ndarray,
    state: np.ndarray,
    now: float,
    start_min: np.ndarray,
    flags: np.ndarray,
    prefix: np.ndarray,
    loads: np.ndarray,
    summary: np.ndarray,
    tie: float,
    found_ints: np.ndarray,
    found_floats: np.ndarray,
) -> int:
    """``cheapest_insertion`` of one new order into every vehicle's plan, in one call.

    Plans are packed one row per vehicle (``sim.plan.FleetPlans``), the arrays that always travel together
    stacked (a numba call costs about a thousand instructions per array argument): ``row_ints`` = (``counts``,
    ``start_node``, ``start_load``, ``n_stops``) ``(ROW_INTS, V)``; ``stop_times`` = (``open_min``,
    ``due_min``, ``service_min``) ``(3, V, capacity)``; ``prefix`` = (``free``, ``cum_dist``, ``cum_late``)
    ``(3, V, capacity + 1)``; ``flags`` = (``dirty``, ``feasible``) ``(2, V)``; ``query`` = the late costs
    (``cheapest_insertion``'s ``costs``), then from ``QUERY_ORDER`` the new order (its ``new``). ``counts[v]``
    stops, ``nodes[v, 1 : k + 1]`` their locations, the other stop arrays as in ``schedule``; ``vehicles[v]``
    its row (``evaluate``); the travel arrays are stacked per mode. The schedule of each plan is kept in
    ``prefix`` and ``loads`` (rows as ``schedule``'s prefix arrays), ``summary`` (cost, km, return time,
    lateness cost, service minutes: ``plan_totals``) and ``feasible``. First the rows are brought up to date:
    a row longer than its vehicle's planned stops (``state``'s ``PLANNED``) drops as many first stops (its
    vehicle left for them: ``shift_row``; ``FleetPlans.sync`` rebuilds any other row whose stops differ), and
    every plan's start is computed from the fleet's gathered ``state`` at ``now`` (``fleet_starts``); rows
    flagged ``dirty`` (their stops or their start ``(start_min, start_node, start_load)[v]`` changed) are then
    scheduled again, and the flags cleared. Then each feasible plan is searched exactly as
    ``cheapest_insertion`` does. Writes per vehicle ``i`` (-1 when the plan is infeasible or no insertion is)
    and ``j`` into ``found_ints`` (rows ``FOUND_I``, ``FOUND_J``), its cost increase, km increase, delivery
    ETA and the current plan's return time into ``found_floats`` (rows ``FOUND_COST`` ... ``FOUND_END``),
    every entry written (the caller's fresh arrays, as a new array returned costs numba some 4k instructions
    to box), and returns the number of idle vehicles.
    """
    counts, start_node = row_ints[ROW_COUNTS], row_ints[ROW_START_NODE]
    start_load, n_stops = row_ints[ROW_START_LOAD], row_ints[ROW_N_STOPS]
    open_min, due_min, service_min = stop_times[0], stop_times[1], stop_times[2]
    free, cum_dist, cum_late = prefix[0], prefix[1], prefix[2]
    dirty, feasible = flags[0], flags[1]
    costs, new = query[:QUERY_ORDER], query[QUERY_ORDER:]
    for v in range(counts.shape[0]):
        for _ in range(counts[v] - int(state[v, PLANNED])):
            shift_row(v, counts, nodes, open_min, due_min, service_min, load_delta, dirty)
    n_idle = fleet_starts(state, now, start_min, start_node, start_load, n_stops, dirty)
    n = counts.shape[0]
    longest = counts.max() if n > 0 else 0
    n_pairs = (longest + 1) * (longest + 2) // 2
    n_work, n_walks = WORK_ROWS * (longest + 2), 4 * (longest + 1) * (longest + 1)
    floats = np.empty(n_pairs + n_work + n_walks)  # the scratch in two allocations
    ints = np.empty(3 * n_pairs + longest + 1, dtype=np.int64)
    lower, work = floats[:n_pairs], floats[n_pairs : n_pairs + n_work].reshape((WORK_ROWS, longest + 2))
    walks = floats[n_pairs + n_work :].reshape((4, longest + 1, longest + 1))
    pi, pj, heap = ints[:n_pairs], ints[n_pairs : 2 * n_pairs], ints[2 * n_pairs : 3 * n_pairs]
    reached = ints[3 * n_pairs :]
    out_i, out_j = found_ints[FOUND_I], found_ints[FOUND_J]
    out_delta, out_km = found_floats[FOUND_COST], found_floats[FOUND_KM]
    out_eta, out_end = found_floats[FOUND_ETA], found_floats[FOUND_END]
    for v in range(n):
        out_i[v], out_j[v], out_delta[v], out_km[v], out_eta[v] = -1, -1, math.inf, math.nan, math.nan
        k = counts[v]
        row = nodes[v, : k + 2]
        if dirty[v]:
            row[0], row[k + 1] = start_node[v], int(vehicles[v, 1])
            sink = work[0]  # the per-stop arrival and service times, not kept: into the scratch
            schedule_row(
                time_min, dist_km, mults, shift_start_h, vehicles, costs, v, k, nodes, stop_times, load_delta,
                start_min, start_load, prefix, loads, summary, feasible, sink, sink,
            )  # fmt: skip
            dirty[v] = False
        out_end[v] = summary[v, 2]
        if not feasible[v]:
            continue
        # the stop and prefix rows whole: the search reads the plan's length from ``row`` and only indexes the
        # others within it (a row is a cheaper view than a slice of it)
        i, j, delta, km, eta = _search(
            time_min, dist_km, mults, shift_start_h, vehicles[v], costs, row, open_min[v], due_min[v],
            service_min[v], load_delta[v], free[v], loads[v], cum_dist[v], cum_late[v], summary[v], new, tie,
            lower, pi, pj, heap, work, walks, reached,
        )  # fmt: skip
        out_i[v], out_j[v], out_delta[v], out_km[v], out_eta[v] = i, j, delta, km, eta
    return n_idle


@njit(cache=True)
def insert_into_row(
    time_modes: np.ndarray,
    dist_modes: np.ndarray,
    mults_modes: np.ndarray,
    shift_start_h: float,
    vehicles: np.ndarray,
    costs: np.ndarray,
    v: int,
    row_ints: np.ndarray,
    nodes: np.ndarray,
    stop_times: np.ndarray,
    load_delta: np.ndarray,
    start_min: np.ndarray,
    prefix: np.ndarray,
    loads: np.ndarray,
    summary: np.ndarray,
    flags: np.ndarray,
    i: int,
    j: int,
    new_stops: np.ndarray,
    served: int,
) -> tuple[float, float]:
    """Insert two stops into row ``v`` of a fleet's packed plans (``fleet_cheapest_insertion``'s arrays,
    stacked as there, scheduled and current), the pickup after ``i`` and the delivery after ``j`` old stops,
    and schedule the new plan into the row (``schedule_row``: it stays current). ``new_stops`` holds the
    pickup then the delivery, ``(loc, open, due, service, load change)`` each; the row needs room for two
    more stops.
    Returns the new plan's cost and the service start of its stop ``served``.

    The row's stop arrays are then those ``stop_arrays`` builds for the new plan's stops and its schedule
    is ``evaluate``'s for them (bit for bit: the same values, the same arithmetic): this is
    ``Simulator.assign``'s commit of a searched insertion without pricing the plan again in Python.
    """
    counts, start_load = row_ints[ROW_COUNTS], row_ints[ROW_START_LOAD]
    open_min, due_min, service_min = stop_times[0], stop_times[1], stop_times[2]
    pickup, delivery = new_stops[:5], new_stops[5:]
    k = counts[v]
    n = k + 2
    row_nodes = np.empty(n + 2, dtype=np.int64)
    o_min, d_min, s_min = np.empty(n), np.empty(n), np.empty(n)
    delta = np.empty(n, dtype=np.int64)
    row_nodes[0], row_nodes[n + 1] = nodes[v, 0], int(vehicles[v, 1])
    m = 0
    for old in range(k + 1):
        if old == i:
            row_nodes[m + 1], o_min[m], d_min[m], s_min[m] = int(pickup[0]), pickup[1], pickup[2], pickup[3]
            delta[m] = int(pickup[4])
            m += 1
        if old == j:
            row_nodes[m + 1], o_min[m], d_min[m] = int(delivery[0]), delivery[1], delivery[2]
            s_min[m], delta[m] = delivery[3], int(delivery[4])
            m += 1
        if old < k:
            row_nodes[m + 1], o_min[m], d_min[m] = nodes[v, old + 1], open_min[v, old], due_min[v, old]
            s_min[m], delta[m] = service_min[v, old], load_delta[v, old]
            m += 1
    nodes[v, : n + 2] = row_nodes
    open_min[v, :n], due_min[v, :n], service_min[v, :n], load_delta[v, :n] = o_min, d_min, s_min, delta
    counts[v] = n
    arrive, begin = np.empty(n), np.empty(n)
    schedule_row(
        time_modes, dist_modes, mults_modes, shift_start_h, vehicles, costs, v, n, nodes, stop_times,
        load_delta, start_min, start_load, prefix, loads, summary, flags[1], arrive, begin,
    )  # fmt: skip
    return summary[v, 0], begin[served]


@njit(cache=True)
def shift_row(
    v: int,
    counts: np.ndarray,
    nodes: np.ndarray,
    open_min: np.ndarray,
    due_min: np.ndarray,
    service_min: np.ndarray,
    load_delta: np.ndarray,
    dirty: np.ndarray,
) -> None:
    """Drop the first stop of row ``v`` of a fleet's packed plans (its vehicle left for it): the stops move
    up one place, and the row is flagged to be scheduled again (which writes its start and home nodes)."""
    k = counts[v] - 1
    for m in range(k):
        nodes[v, m + 1] = nodes[v, m + 2]
        open_min[v, m], due_min[v, m] = open_min[v, m + 1], due_min[v, m + 1]
        service_min[v, m], load_delta[v, m] = service_min[v, m + 1], load_delta[v, m + 1]
    counts[v] = k
    dirty[v] = True


@njit(cache=True)
def vehicle_features(
    out: np.ndarray,
    xy_km: np.ndarray,
    scales: np.ndarray,
    time_modes: np.ndarray,
    now: float,
    start_min: np.ndarray,
    start_node: np.ndarray,
    start_load: np.ndarray,
    n_stops: np.ndarray,
    fixed: np.ndarray,
    plan_end_min: np.ndarray,
    center: int,
    due_min: float,
    pickup_after: np.ndarray,
    delta_cost: np.ndarray,
    delta_dist_km: np.ndarray,
    eta_min: np.ndarray,
) -> None:
    """The dispatch observation's vehicle rows (``observations.VEHICLE_FEATURES``, before clipping) into
    ``out`` (zeros); ``center < 0`` when no order is pending (the order's columns stay 0). ``scales`` is
    (x min, y min, x span, y span, largest capacity, reject penalty, clip) and ``fixed`` the fleet's
    (capacity, home, mode) rows (``observations.DispatchObservation``). ``time_modes`` is the stacked
    free-flow minutes ``(M, K, K)``: the minutes to the order's center are read from the vehicle's mode's."""
    for v in range(out.shape[0]):
        node, capacity = start_node[v], fixed[0, v]
        out[v, 0] = (xy_km[node, 0] - scales[0]) / scales[2]
        out[v, 1] = (xy_km[node, 1] - scales[1]) / scales[3]
        out[v, 2] = (start_min[v] - now) / 60.0
        out[v, 3] = start_load[v] / capacity
        out[v, 4] = n_stops[v] / 10.0
        out[v, 5] = (plan_end_min[v] - now) / 60.0
        out[v, 12] = capacity / scales[4]
        if center < 0:
            continue
        out[v, 11] = time_modes[fixed[2, v], node, center] / 60.0
        out[v, 13] = 1.0 if fixed[1, v] == center else 0.0
        if pickup_after[v] >= 0:
            out[v, 6] = 1.0
            out[v, 7] = delta_cost[v] / scales[5]
            out[v, 8] = delta_dist_km[v] / 10.0
            out[v, 9] = (eta_min[v] - now) / 60.0
            out[v, 10] = 1.0 if eta_min[v] <= due_min + 1e-9 else 0.0  # Insertion.on_time


@njit(cache=True)
def _clip(values: np.ndarray, bound: float) -> None:
    """Clip a float32 array to ``[-bound, bound]`` in place, to the values of
    ``np.minimum(np.maximum(values, -bound), bound)`` (nan stays nan)."""
    flat = values.reshape(-1)
    for m in range(flat.shape[0]):
        if flat[m] < -bound:
            flat[m] = -bound
        elif flat[m] > bound:
            flat[m] = bound


@njit(cache=True)
def dispatch_features(
    order_out: np.ndarray,
    vehicle_out: np.ndarray,
    global_out: np.ndarray,
    mask: np.ndarray,
    xy_km: np.ndarray,
    scales: np.ndarray,
    time_modes: np.ndarray,
    fixed: np.ndarray,
    start_min: np.ndarray,
    start_node: np.ndarray,
    start_load: np.ndarray,
    n_stops: np.ndarray,
    found_ints: np.ndarray,
    found_floats: np.ndarray,
    now: float,
    center: int,
    loc: int,
    size: int,
    ready_min: float,
    due_min: float,
    earliest_min: float,
    is_window: bool,
    arrival_min: float,
    n_open: int,
    n_on_time: int,
    n_settled: int,
    n_rejected: int,
    n_arrived: int,
    n_waiting: int,
    n_idle: int,
    reject: int,
    defer: bool,
) -> None:
    """The whole dispatch observation (``observations.ORDER_FEATURES``, ``VEHICLE_FEATURES``,
    ``GLOBAL_FEATURES``) into its float32 arrays (zeros), each clipped to ``[-clip, clip]`` (``scales[6]``),
    and its action mask into ``mask`` (``action_mask``), in one call; ``vehicle_out`` may have more rows than
    the fleet (padded slots: they stay zero). ``scales`` is ``vehicle_features``'s, then the shift end and the
    day's expected orders; ``fixed`` is ``vehicle_features``'s; ``found_ints`` / ``found_floats`` are the
    fleet search's result stacks (``fleet_cheapest_insertion``; with no order pending, every ``i`` -1 and
    the plans' return times).

    The pending order's fields (``center`` to ``arrival_min``) are read only when an order is pending
    (``center >= 0``). The per-step values come as scalars, not packed into an array: a scalar argument
    costs the call less than a Python-built array. The counts: orders accepted and open, on time, settled,
    rejected, arrived, waiting besides the current one (deferred or in a tick batch), idle vehicles. Every
    feature is computed in float64, then stored as float32."""
    n_vehicles = start_min.shape[0]
    pickup_after = found_ints[FOUND_I]
    vehicle_features(
        vehicle_out[:n_vehicles], xy_km, scales, time_modes, now, start_min, start_node, start_load, n_stops,
        fixed, found_floats[FOUND_END], center, due_min, pickup_after, found_floats[FOUND_COST],
        found_floats[FOUND_KM], found_floats[FOUND_ETA],
    )  # fmt: skip
    if center >= 0:
        opens = earliest_min - now
        order_out[0] = size / scales[4]
        order_out[1] = (ready_min - now) / 60.0
        order_out[2] = (due_min - now) / 60.0
        order_out[3] = (opens if opens > 0.0 else 0.0) / 60.0  # max(0.0, opens)
        order_out[4] = 1.0 if is_window else 0.0
        order_out[5] = (xy_km[loc, 0] - scales[0]) / scales[2]
        order_out[6] = (xy_km[loc, 1] - scales[1]) / scales[3]
        order_out[7] = time_modes[0, center, loc] / 60.0  # mode 0: the vans' road matrix
        order_out[8] = (now - arrival_min) / 60.0
    global_out[0] = now / scales[7]
    global_out[1] = n_open / (5.0 * n_vehicles)
    global_out[2] = n_on_time / n_settled if n_settled != 0 else 1.0
    global_out[3] = n_rejected / (n_arrived if n_arrived > 1 else 1)
    global_out[4] = n_idle / n_vehicles
    global_out[5] = n_arrived / scales[8]
    global_out[6] = n_waiting / n_vehicles
    clip = scales[6]
    _clip(order_out, clip)
    _clip(vehicle_out, clip)
    _clip(global_out, clip)
    action_mask(mask, reject, pickup_after, defer)


# Columns of a fleet's gathered state (``sim.plan.gather_state``), one float64 row per vehicle: when and
# where it is free, its load then, its planned stops, whether it is idle (1.0) (small integers: exact).
STATE_COLUMNS = 5
FREE_MIN, NODE, FREE_LOAD, PLANNED, IDLE = 0, 1, 2, 3, 4


@njit(cache=True)
def fleet_starts(
    state: np.ndarray,
    now: float,
    start_min: np.ndarray,
    start_node: np.ndarray,
    start_load: np.ndarray,
    n_stops: np.ndarray,
    dirty: np.ndarray,
) -> int:
    """Every vehicle's plan start from its gathered ``state`` row (``STATE_COLUMNS``): ``start_min`` is
    ``max(free_min, now)`` (``Simulator.plan_start``); a row whose start changed is flagged ``dirty``.
    Written in place; returns the number of idle vehicles."""
    n_idle = 0
    for v in range(state.shape[0]):
        free_min, node, load = state[v, FREE_MIN], int(state[v, NODE]), int(state[v, FREE_LOAD])
        planned = int(state[v, PLANNED])
        t = free_min if free_min >= now else now
        if t != start_min[v] or node != start_node[v] or load != start_load[v]:
            dirty[v] = True
        start_min[v], start_node[v], start_load[v], n_stops[v] = t, node, load, planned
        if state[v, IDLE] != 0.0:
            n_idle += 1
    return n_idle


# ------------------------------------------------------------------------------ the step's action mask


@njit(cache=True)
def action_mask(mask: np.ndarray, reject: int, pickup_after: np.ndarray, defer: bool) -> None:
    """The dispatch action mask into ``mask`` (int8 zeros): vehicle ``v`` where ``pickup_after[v] >= 0`` (it
    can take the order), ``reject`` always, and ``reject + 1`` (defer) when ``defer``."""
    for v in range(pickup_after.shape[0]):
        if pickup_after[v] >= 0:
            mask[v] = 1
    mask[reject] = 1
    if defer:
        mask[reject + 1] = 1
