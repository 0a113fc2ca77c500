"""The EURO Meets NeurIPS 2022 VRP competition (ORTEC): its instances, its dynamic and static variants and
its rules, exactly as the competition's environment defines them (``data/euro2022/DYNAMIC_VARIANT.md``).

- ``read_instance``: a static VRPTW instance (VRPLIB text read with ``vrplib``: an asymmetric integer
  duration matrix in seconds, node 1 the depot, demands, service times, windows).
- ``sample_requests``: the dynamic variant's requests of one day from ``numpy.random.default_rng(
  instance_seed)``: in each epoch four draws of 100 customer indices (location, window, demand, service
  time), kept when a direct trip from the depot leaving at the epoch's planning start is feasible.
  ``static_requests``: the static variant (every customer, known at time 0).
- ``scenario`` / ``RequestStream``: the same day as a lastmile scenario in wave mode, so the simulator runs
  it (a wave per epoch, the parcels leaving one hour after it: the dispatch margin; travel charged exactly
  as the matrix gives it; an unlimited fleet: one vehicle for every request that can arrive).
- ``validate_day``: the competition's check of a day's routes (capacity, windows with waiting, back at the
  depot in time, each request dispatched once, no earlier than it arrived and no later than its last
  feasible epoch) and its objective, the total driving duration in seconds.
- ``solve_static`` / ``solve_hindsight``: PyVRP on the static instance, and on the day's requests with
  their release times (the competition's hindsight problem).

The instances are © ORTEC, CC BY-NC 4.0 (non-commercial use; ``data/euro2022/LICENSE-instances.txt``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyvrp
import vrplib

from lastmile_env.config import ScenarioConfig, load_scenario
from lastmile_env.sim.types import Order, ServiceOption
from lastmile_env.solver_budget import SolverBudget

EPOCH_S = 3600  # a wave per hour
MARGIN_S = (
    3600  # a route planned in an epoch leaves the depot one hour after the epoch starts, at the earliest
)
MAX_REQUESTS_PER_EPOCH = 100  # customer indices drawn per epoch (before the feasibility filter)
INVALID_EPOCH_COST = 10**9  # the competition's cost of an invalid answer, per remaining epoch
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "euro2022"
STATIC_BUDGET = SolverBudget(max_iterations=60_000)  # a whole day's VRPTW: the static and hindsight problems


class Euro2022Error(ValueError):
    """An instance, a configs file or a day's routes that break the competition's rules."""


@dataclass(frozen=True, eq=False)
class Instance:
    """A static VRPTW instance of the competition. Index 0 is the depot, 1..n the customers; times in
    seconds from the start of the day."""

    name: str
    duration_s: np.ndarray  # (n+1, n+1) int64, asymmetric driving durations
    coords: np.ndarray  # (n+1, 2) for drawing only
    demand: np.ndarray  # (n+1,) int64; 0 at the depot
    capacity: int
    service_s: np.ndarray  # (n+1,) int64
    window_s: np.ndarray  # (n+1, 2) int64; the depot's is the day

    @property
    def n_customers(self) -> int:
        return len(self.demand) - 1

    @property
    def day_end_s(self) -> int:
        return int(self.window_s[0, 1])

    @property
    def epochs(self) -> range:
        """The dynamic variant's epochs: from the earliest to the latest customer window start, less the
        margin, in whole hours."""
        starts = self.window_s[1:, 0]
        first = int(max((int(starts.min()) - MARGIN_S) // EPOCH_S, 0))
        last = int(max((int(starts.max()) - MARGIN_S) // EPOCH_S, 0))
        return range(first, last + 1)


def read_instance(path: str | Path) -> Instance:
    """Read a competition instance (VRPLIB text, EXPLICIT FULL_MATRIX durations, TYPE VRPTW)."""
    p = Path(path)
    if not p.is_file():
        raise Euro2022Error(f"{p}: instance file not found")
    try:
        raw: Mapping[str, Any] = vrplib.read_instance(str(p))
    except Exception as exc:  # vrplib raises RuntimeError / ValueError / IndexError on malformed text
        raise Euro2022Error(f"{p}: not a VRPLIB instance ({exc})") from None
    missing = [
        k for k in ("edge_weight", "demand", "time_window", "service_time", "capacity") if k not in raw
    ]
    if missing:
        kind = raw.get("type", "unknown type")
        raise Euro2022Error(f"{p}: not a VRPTW instance ({kind}): no {', '.join(missing)}")
    duration = np.asarray(raw["edge_weight"])
    n = len(raw["demand"])
    if duration.shape != (n, n):
        raise Euro2022Error(f"{p}: the edge weights are {duration.shape}, not an explicit {n}x{n} matrix")
    depots = np.asarray(raw.get("depot", [0])).ravel()
    if depots.tolist() != [0]:
        raise Euro2022Error(f"{p}: the competition has one depot, node 1; this file has {depots + 1}")
    arrays = {
        "duration": duration,
        "demand": np.asarray(raw["demand"]),
        "service time": np.asarray(raw["service_time"]),
        "time window": np.asarray(raw["time_window"]),
    }
    for name, values in arrays.items():
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)) or (values < 0).any():
            raise Euro2022Error(f"{p}: {name}s must be whole non-negative numbers (seconds, units)")
    window = arrays["time window"].astype(np.int64)
    if window.shape != (n, 2) or (window[:, 0] > window[:, 1]).any():
        raise Euro2022Error(f"{p}: every time window must be [earliest, latest] with earliest <= latest")
    coords = np.asarray(raw.get("node_coord", np.zeros((n, 2))), dtype=float)
    return Instance(
        name=str(raw.get("name", p.stem)),
        duration_s=duration.astype(np.int64),
        coords=coords,
        demand=arrays["demand"].astype(np.int64),
        capacity=int(raw["capacity"]),
        service_s=arrays["service time"].astype(np.int64),
        window_s=window,
    )


@dataclass(frozen=True, eq=False)
class Requests:
    """The requests of one day, in arrival order (request ``i`` is the competition's request ``i + 1``)."""

    customer: np.ndarray  # (R,) instance index of the location
    epoch: np.ndarray  # (R,) the epoch it arrived in
    window_s: np.ndarray  # (R, 2)
    service_s: np.ndarray  # (R,)
    demand: np.ndarray  # (R,)
    static: bool = False

    def __len__(self) -> int:
        return len(self.customer)

    @property
    def release_s(self) -> np.ndarray:
        """When a route may leave the depot with the request at the earliest: its epoch's planning start."""
        if self.static:
            return np.zeros(len(self), dtype=np.int64)
        return self.epoch * EPOCH_S + MARGIN_S


def sample_requests(inst: Instance, instance_seed: int) -> Requests:
    """The dynamic variant's day for ``instance_seed``: the competition's draws, in its order."""
    rng = np.random.default_rng(instance_seed)
    d, n = inst.duration_s, inst.n_customers
    parts: list[tuple[np.ndarray, ...]] = []
    for epoch in inst.epochs:
        planning_start = epoch * EPOCH_S + MARGIN_S
        loc, tw, dem, svc = (rng.integers(n, size=MAX_REQUESTS_PER_EPOCH) + 1 for _ in range(4))
        window = inst.window_s[tw]
        arrive = np.maximum(planning_start + d[0, loc], window[:, 0])
        back = arrive + inst.service_s[svc] + d[loc, 0]
        keep = (arrive <= window[:, 1]) & (back <= inst.day_end_s)
        k = int(keep.sum())
        parts.append(
            (loc[keep], np.full(k, epoch), window[keep], inst.service_s[svc[keep]], inst.demand[dem[keep]])
        )
    customer, epoch_of, window_s, service_s, demand = (
        np.concatenate(cols).astype(np.int64) for cols in zip(*parts, strict=True)
    )
    return Requests(customer, epoch_of, window_s, service_s, demand)


def static_requests(inst: Instance) -> Requests:
    """The static variant: every customer, known at the start of the day."""
    n = inst.n_customers
    return Requests(
        customer=np.arange(1, n + 1),
        epoch=np.zeros(n, dtype=np.int64),
        window_s=inst.window_s[1:].copy(),
        service_s=inst.service_s[1:].copy(),
        demand=inst.demand[1:].copy(),
        static=True,
    )


def must_dispatch(inst: Instance, requests: Requests, epoch: int, open_ids: Sequence[int]) -> np.ndarray:
    """The competition's must-dispatch rule for the open requests at ``epoch`` (in whole seconds): waiting
    one more epoch would miss the window or the depot's closing; in the last epoch every request."""
    ids = np.asarray(open_ids, dtype=np.int64)
    if requests.static or epoch >= inst.epochs[-1]:
        return np.ones(len(ids), dtype=bool)
    loc = requests.customer[ids]
    next_start = epoch * EPOCH_S + MARGIN_S + EPOCH_S
    arrive = np.maximum(next_start + inst.duration_s[0, loc], requests.window_s[ids, 0])
    back = arrive + requests.service_s[ids] + inst.duration_s[loc, 0]
    return np.asarray((arrive > requests.window_s[ids, 1]) | (back > inst.day_end_s))


def scenario(inst: Instance, path: str | Path, static: bool = False) -> ScenarioConfig:
    """The competition's day as a lastmile scenario in wave mode: the instance's matrix (seconds, charged as
    given: the cost is the driving duration), one wave per epoch with its dispatch margin, an unlimited
    fleet of the instance's capacity (as many vehicles as requests can arrive), no congestion, no
    loading time, hard windows (a late delivery cannot happen on a validated route)."""
    epochs = inst.epochs
    n_epochs = 1 if static else len(epochs)
    return load_scenario(
        {
            "name": f"euro2022-{inst.name}-{'static' if static else 'dynamic'}",
            "description": "EURO Meets NeurIPS 2022 dynamic VRPTW (ORTEC, CC BY-NC 4.0)",
            "shift_start_hour": 0.0,
            "graph": {"kind": "matrix", "path": str(path), "unit": "s"},
            "orders": {"pickup_service_min": 0.0, "last_arrival_min": max(epochs[-1] * 60.0, 1.0)},
            "fleet": {
                "size": inst.n_customers if static else MAX_REQUESTS_PER_EPOCH * n_epochs,
                "shift_end_min": inst.day_end_s / 60.0,
                "types": [
                    {"name": "vehicle", "capacity": inst.capacity, "cost_per_km": 1.0, "cost_per_hour": 0.0}
                ],
            },
            "costs": {"late_fixed": 0.0, "late_per_min": 0.0, "reject_penalty": float(INVALID_EPOCH_COST)},
            "dispatch": {
                "mode": "wave",
                "wave_min": EPOCH_S / 60.0,
                "wave_start_min": 0.0 if static else epochs[0] * EPOCH_S / 60.0,
                "wave_margin_min": 0.0 if static else MARGIN_S / 60.0,
            },
        }
    )


class RequestStream:
    """The day's requests as the simulator's orders (an ``OrderGenerator``; the draws are the
    competition's, from ``instance_seed``, so the episode seed does not change them). An order's place is
    its customer's key index (the depot is key 0, customer i key i)."""

    def __init__(self, requests: Requests) -> None:
        self.requests = requests

    def __call__(self, world: Any, rng: np.random.Generator) -> list[Order]:
        r = self.requests
        orders = []
        for i in range(len(r)):
            arrival = 0.0 if r.static else float(r.epoch[i] * EPOCH_S) / 60.0
            orders.append(
                Order(
                    id=i,
                    arrival_min=arrival,
                    center=0,
                    loc=int(r.customer[i]),
                    size=int(r.demand[i]),
                    ready_min=arrival,
                    service_min=float(r.service_s[i]) / 60.0,
                    option=ServiceOption.WINDOW,
                    earliest_min=float(r.window_s[i, 0]) / 60.0,
                    due_min=float(r.window_s[i, 1]) / 60.0,
                )
            )
        return orders


@dataclass(frozen=True)
class DayResult:
    """A validated day: each epoch's driving seconds and the problems found (none: valid)."""

    epoch_costs: dict[int, int]
    problems: tuple[str, ...]
    first_bad_epoch: int | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def cost(self) -> int:
        """The competition's score of the day: its driving seconds when valid; else the valid epochs'
        seconds plus ``INVALID_EPOCH_COST`` for each epoch from the first invalid one to the end (at least
        one), as the competition's environment counts a failed episode."""
        if self.first_bad_epoch is None:
            return sum(self.epoch_costs.values())
        last = max(self.epoch_costs, default=self.first_bad_epoch)
        before = sum(c for e, c in self.epoch_costs.items() if e < self.first_bad_epoch)
        return before + max(last - self.first_bad_epoch, 1) * INVALID_EPOCH_COST


def route_duration(inst: Instance, customers: Sequence[int]) -> int:
    """Driving seconds of a route from the depot through ``customers`` and back (waiting not counted)."""
    path = [0, *customers, 0]
    return int(sum(int(inst.duration_s[a, b]) for a, b in itertools.pairwise(path)))


def check_route(inst: Instance, requests: Requests, ids: Sequence[int], leave_s: int) -> list[str]:
    """The competition's checks of one route of requests ``ids`` leaving the depot at ``leave_s``."""
    problems = []
    load = int(requests.demand[list(ids)].sum())
    if load > inst.capacity:
        problems.append(f"route {list(ids)} carries {load} > capacity {inst.capacity}")
    t, prev = leave_s + int(inst.service_s[0]), 0
    for i in ids:
        loc = int(requests.customer[i])
        early, late = (int(x) for x in requests.window_s[i])
        t = max(t + int(inst.duration_s[prev, loc]), early)
        if t > late:
            problems.append(f"request {i} served at {t} s, after its window [{early}, {late}]")
        t += int(requests.service_s[i])
        prev = loc
    t += int(inst.duration_s[prev, 0])
    if t > inst.day_end_s:
        problems.append(f"route {list(ids)} back at the depot at {t} s, after it closes at {inst.day_end_s}")
    return problems


def validate_day(
    inst: Instance, requests: Requests, dispatched: Mapping[int, Sequence[Sequence[int]]]
) -> DayResult:
    """Check a day's routes as the competition does and total their driving duration.

    ``dispatched[epoch]`` lists the routes sent in that epoch (each a sequence of request indices in visiting
    order). A route leaves at its epoch's planning start (time 0 in the static variant); every request must
    be dispatched exactly once, not before it arrived, and by its last feasible epoch (must-dispatch)."""
    problems: list[str] = []
    epochs = [0] if requests.static else list(inst.epochs)
    unknown = sorted(set(dispatched) - set(epochs))
    if unknown:
        problems.append(f"routes given for epochs {unknown}, outside the day's {epochs[0]}..{epochs[-1]}")
        first_bad_outside: int | None = epochs[0]
    else:
        first_bad_outside = None
    sent_in = np.full(len(requests), -1, dtype=np.int64)
    costs: dict[int, int] = {}
    first_bad: int | None = None
    for epoch in epochs:
        found = len(problems)
        costs[epoch] = 0
        open_ids = [i for i in range(len(requests)) if requests.epoch[i] <= epoch and sent_in[i] < 0]
        leave_s = 0 if requests.static else epoch * EPOCH_S + MARGIN_S
        for route in dispatched.get(epoch, []):
            ids = [int(i) for i in route]
            if not ids:
                problems.append(f"epoch {epoch}: an empty route")
                continue
            bad = [i for i in ids if not 0 <= i < len(requests)]
            if bad:
                problems.append(f"epoch {epoch}: requests {bad} do not exist")
                continue
            early = [i for i in ids if requests.epoch[i] > epoch]
            again = [i for i in ids if sent_in[i] >= 0]
            if early:
                problems.append(f"epoch {epoch}: requests {early} had not arrived yet")
            if again:
                problems.append(f"epoch {epoch}: requests {again} were already dispatched")
            problems += [f"epoch {epoch}: {p}" for p in check_route(inst, requests, ids, leave_s)]
            sent_in[ids] = epoch
            costs[epoch] += route_duration(inst, [int(requests.customer[i]) for i in ids])
        must = must_dispatch(inst, requests, epoch, open_ids)
        late = [i for i, m in zip(open_ids, must, strict=True) if m and sent_in[i] < 0]
        if late:
            problems.append(f"epoch {epoch}: must-dispatch requests {late} were not dispatched")
        if len(problems) > found and first_bad is None:
            first_bad = epoch
    return DayResult(costs, tuple(problems), first_bad if first_bad_outside is None else first_bad_outside)


def _vrptw(inst: Instance, requests: Requests, release_s: np.ndarray) -> tuple[pyvrp.ProblemData, np.ndarray]:
    """PyVRP's VRPTW of the requests (release times given): one location per request, an unlimited fleet."""
    cust = np.concatenate([[0], requests.customer])
    locations = [pyvrp.Location(float(inst.coords[c, 0]), float(inst.coords[c, 1])) for c in cust]
    clients = [
        pyvrp.Client(
            location=j + 1,
            delivery=[int(requests.demand[j])],
            service_duration=int(requests.service_s[j]),
            tw_early=int(requests.window_s[j, 0]),
            tw_late=int(requests.window_s[j, 1]),
            release_time=int(release_s[j]),
        )
        for j in range(len(requests))
    ]
    depot = pyvrp.Depot(location=0, tw_early=int(inst.window_s[0, 0]), tw_late=inst.day_end_s)
    fleet = pyvrp.VehicleType(
        num_available=len(requests),
        capacity=[inst.capacity],
        tw_early=int(inst.window_s[0, 0]),
        tw_late=inst.day_end_s,
    )
    matrix = inst.duration_s[np.ix_(cust, cust)]
    return pyvrp.ProblemData(locations, clients, [depot], [fleet], [matrix], [matrix]), cust


def _solve(data: pyvrp.ProblemData, budget: SolverBudget, seed: int) -> list[list[int]]:
    best = pyvrp.solve(data, budget.criterion(), seed=seed, collect_stats=False, display=False).best
    if not best.is_feasible():
        raise Euro2022Error(f"PyVRP found no feasible solution within {budget.describe()}")
    return [[a.idx for a in r.schedule() if a.type == pyvrp.ActivityType.CLIENT] for r in best.routes()]


def solve_static(
    inst: Instance, budget: SolverBudget = STATIC_BUDGET, seed: int = 1
) -> tuple[int, list[list[int]]]:
    """The static variant by PyVRP: (cost in driving seconds, routes as request indices)."""
    requests = static_requests(inst)
    data, _ = _vrptw(inst, requests, requests.release_s)
    routes = _solve(data, budget, seed)
    return sum(route_duration(inst, [int(requests.customer[i]) for i in r]) for r in routes), routes


def solve_hindsight(
    inst: Instance, requests: Requests, budget: SolverBudget = STATIC_BUDGET, seed: int = 1
) -> tuple[int, list[list[int]]]:
    """The day's hindsight problem by PyVRP: every request known in advance, each route leaving no earlier
    than the release times of its requests. A heuristic solution: an estimate of the bound from above."""
    data, _ = _vrptw(inst, requests, requests.release_s)
    routes = _solve(data, budget, seed)
    return sum(route_duration(inst, [int(requests.customer[i]) for i in r]) for r in routes), routes


def dispatched_routes(sim: Any) -> dict[int, list[list[int]]]:
    """The routes a finished (or running) simulator of a competition day sent, by epoch, read from its
    event log: the orders dispatched to one vehicle at one wave, in visiting order (order ``i`` is request
    ``i``)."""
    routes: dict[tuple[int, int], list[int]] = {}
    for event in sim.events:
        if event.kind == "dispatch":
            routes.setdefault((round(event.time_min * 60) // EPOCH_S, event.vehicle), []).append(event.order)
    by_epoch: dict[int, list[list[int]]] = {}
    for (epoch, _), ids in routes.items():
        by_epoch.setdefault(epoch, []).append(ids)
    return by_epoch
