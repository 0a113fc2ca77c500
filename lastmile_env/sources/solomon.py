"""Solomon VRPTW instances (Solomon 1987): static benchmark with PyVRP and a dynamic order stream.

* Static: :func:`solve_static` solves an instance with PyVRP under the Solomon convention (Euclidean
  distances, travel time = distance, service times, hard time windows, capacity, at most the instance's
  fleet) and :func:`check_routes` verifies a solution in exact floating point. Costs compare with the
  best-known costs of ``data/solomon/solomon_bks.csv`` (:func:`load_bks`).
* Dynamic: :func:`build_solomon_world` turns an instance into a :class:`World` (its points in a plane,
  depot = key 0, customer ``i`` = key ``i``, one minute per distance unit) and :class:`SolomonOrderGenerator`
  reveals requests epoch by epoch as the EURO Meets NeurIPS 2022 dynamic VRPTW challenge did: each epoch
  draws locations, time windows, demands and service times independently from the instance's customers and
  drops the requests that cannot be served in time.

Run the static benchmark with ``python -m lastmile_env.sources.solomon --help``.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyvrp
import vrplib
from pyvrp.stop import MaxIterations, MaxRuntime, StoppingCriterion
from vrplib.parse.parse_utils import text2lines

from lastmile_env.config import (
    CostsConfig,
    DepotsConfig,
    FleetConfig,
    GraphConfig,
    OrdersConfig,
    ScenarioConfig,
    VehicleType,
)
from lastmile_env.network import Network, register
from lastmile_env.sim.types import Order, ServiceOption
from lastmile_env.sim.world import World, build_world
from lastmile_env.sources.plane import plane_network

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "solomon"
BKS_FILE = DATA_DIR / "solomon_bks.csv"
FAMILIES = ("C1", "C2", "R1", "R2", "RC1", "RC2")
SCALE = 1000  # PyVRP works in integers: 1/1000 of a distance (= time) unit
SPEED_KMH = 60.0  # one distance unit is a km, driven in one minute
EPS = 1e-6


class SolomonError(ValueError):
    """A Solomon instance or best-known-costs file is missing or malformed; the message names the file."""


@dataclass(frozen=True, eq=False)
class SolomonInstance:
    """A Solomon VRPTW instance. Index 0 is the depot, ``1..n`` the customers."""

    name: str
    n_vehicles: int
    capacity: int
    xy: np.ndarray  # (n + 1, 2)
    demand: np.ndarray  # (n + 1,) int, 0 at the depot
    time_window: np.ndarray  # (n + 1, 2) [ready, due]; the depot's is the horizon
    service_time: np.ndarray  # (n + 1,)
    path: Path | None = None  # the file it was read from

    @property
    def n_customers(self) -> int:
        return len(self.xy) - 1

    @property
    def horizon(self) -> float:
        """The depot's due time: every route must be back by then."""
        return float(self.time_window[0, 1])

    @property
    def family(self) -> str:
        """``C1``, ``C2``, ``R1``, ``R2``, ``RC1`` or ``RC2`` (letters and the series digit of the name)."""
        return family_of(self.name)

    def distances(self) -> np.ndarray:
        """(n + 1, n + 1) Euclidean distances (also the travel times)."""
        diff = self.xy[:, None, :] - self.xy[None, :, :]
        return np.asarray(np.sqrt((diff**2).sum(axis=-1)))


@dataclass(frozen=True)
class BestKnown:
    """Best-known costs of an instance: distance only (an upper bound from older heuristics, often with more
    vehicles) and, where known, fewest vehicles first; ``None`` where the file does not say."""

    cost_vehicles_first: float | None
    vehicles_vehicles_first: int | None
    cost_distance_only: float
    vehicles_distance_only: int | None


def available_instances() -> list[str]:
    """Names of the shipped instances (``C101`` ... ``RC208``)."""
    return sorted(p.stem for p in DATA_DIR.glob("*.txt"))


def _resolve(instance: str | Path) -> Path:
    path = Path(instance)
    if path.is_file():
        return path
    shipped = DATA_DIR / f"{str(instance).upper()}.txt"
    if shipped.is_file():
        return shipped
    raise SolomonError(
        f"Solomon instance not found: {instance} (neither a file nor a shipped name; "
        f"shipped: {', '.join(available_instances()) or 'none'})"
    )


def load_instance(instance: str | Path) -> SolomonInstance:
    """Read a Solomon-format file (a path, or a shipped name such as ``"C101"``) with vrplib and check it."""
    path = _resolve(instance)
    try:
        raw = vrplib.read_instance(path, instance_format="solomon", compute_edge_weights=False)
        n_vehicles, capacity = int(raw["vehicles"]), int(raw["capacity"])
        # vrplib parses the customer table as integers, turning a decimal (Gehring-Homberger variants,
        # converted logs) into -1: read the same rows again as floats.
        table = _solomon_table(path)
    except (RuntimeError, OSError, KeyError, ValueError, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise SolomonError(f"{path}: not a valid Solomon instance ({type(exc).__name__}: {exc})") from None
    xy, tw, service = table[:, 1:3], table[:, 4:6], table[:, 6]
    demand = np.rint(table[:, 3]).astype(np.int64)
    if not np.array_equal(demand, table[:, 3]):
        raise SolomonError(f"{path}: malformed Solomon instance: demands must be whole numbers")
    n = len(xy)
    problems = []
    if n < 2 or xy.shape != (n, 2):
        problems.append(f"needs a depot and at least one customer with x, y (got shape {xy.shape})")
    elif demand.shape != (n,) or tw.shape != (n, 2) or service.shape != (n,):
        problems.append("demand / time window / service columns do not match the customer count")
    else:
        if n_vehicles < 1 or capacity < 1:
            problems.append(f"vehicles ({n_vehicles}) and capacity ({capacity}) must be >= 1")
        if not (np.isfinite(xy).all() and np.isfinite(tw).all() and np.isfinite(service).all()):
            problems.append("non-finite values")
        if (demand < 0).any() or (demand > capacity).any():
            problems.append(f"demands must be in [0, capacity={capacity}]")
        if (tw[:, 1] < tw[:, 0]).any() or (service < 0).any():
            problems.append("time windows must have due >= ready and service times >= 0")
    if problems:
        raise SolomonError(f"{path}: malformed Solomon instance: {'; '.join(problems)}")
    name = str(raw.get("name") or path.stem).strip() or path.stem
    return SolomonInstance(name, n_vehicles, capacity, xy, demand, tw, service, path.resolve())


def _solomon_table(path: Path) -> np.ndarray:
    """The customer table of a Solomon-format file (the rows after the header vrplib checked), as floats."""
    lines = text2lines(path.read_text())[6:]
    rows = [line.split() for line in lines]
    bad = next((i for i, r in enumerate(rows) if len(r) != 7), None)
    if bad is not None:
        raise ValueError(f"customer row {bad + 1} has {len(rows[bad])} columns, expected 7: {lines[bad]!r}")
    return np.array(rows, dtype=float).reshape(len(rows), 7)


DISTANCE_COLUMN = "bks_cost_distance_only"


def load_bks(path: str | Path = BKS_FILE, distance_column: str = DISTANCE_COLUMN) -> dict[str, BestKnown]:
    """The best-known costs by instance name (upper-cased), from a CSV with an ``instance`` column and the
    distance-only cost in ``distance_column``; the shipped file's other columns (``bks_cost_vehicles_first``,
    ``bks_vehicles_vehicles_first``, ``bks_vehicles_distance_only``) are read where present and filled."""
    file = Path(path)
    if not file.is_file():
        raise SolomonError(f"best-known costs file not found: {file}")
    out: dict[str, BestKnown] = {}
    with file.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in ("instance", distance_column) if c not in columns]
        if missing:
            raise SolomonError(
                f"{file}: no column {' or '.join(map(repr, missing))} (columns: "
                f"{', '.join(columns) or 'none'}; name the distance-only cost column with "
                "--bks-distance-column)"
            )

        def optional(row: dict[str, str], column: str, kind: type) -> Any:
            text = (row.get(column) or "").strip()
            return kind(float(text)) if text else None

        for line, row in enumerate(reader, start=2):
            try:
                out[row["instance"].strip().upper()] = BestKnown(
                    optional(row, "bks_cost_vehicles_first", float),
                    optional(row, "bks_vehicles_vehicles_first", int),
                    float(row[distance_column]),
                    optional(row, "bks_vehicles_distance_only", int),
                )
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise SolomonError(f"{file}:{line}: malformed row ({type(exc).__name__}: {exc})") from None
    return out


# ------------------------------------------------------------------------------------------------------------
# Static
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticSolution:
    """Routes (customer indices, depot left out), their exact Euclidean distance and the solver's time."""

    instance: str
    routes: list[list[int]]
    distance: float
    feasible: bool  # by :func:`check_routes`, in floating point
    runtime_s: float
    n_customers: int = 0
    fleet: int = 0  # the instance's vehicles

    @property
    def n_vehicles(self) -> int:
        return len(self.routes)


def problem_data(inst: SolomonInstance) -> pyvrp.ProblemData:
    """The instance as PyVRP data, in units of ``1 / SCALE``: distances rounded, travel times rounded up
    (so a solution PyVRP finds feasible is feasible with exact times too)."""
    dist = inst.distances() * SCALE
    locations = [pyvrp.Location(float(x), float(y)) for x, y in inst.xy]
    tw = np.rint(inst.time_window * SCALE).astype(np.int64)
    clients = [
        pyvrp.Client(
            location=i,
            delivery=[int(inst.demand[i])],
            service_duration=round(inst.service_time[i] * SCALE),
            tw_early=int(tw[i, 0]),
            tw_late=int(tw[i, 1]),
        )
        for i in range(1, len(inst.xy))
    ]
    depot = pyvrp.Depot(location=0, tw_early=int(tw[0, 0]), tw_late=int(tw[0, 1]))
    vehicle = pyvrp.VehicleType(
        num_available=inst.n_vehicles, capacity=[inst.capacity], tw_early=int(tw[0, 0]), tw_late=int(tw[0, 1])
    )
    dist_mats: list[Any] = [np.rint(dist).astype(np.int64)]  # PyVRP's stubs type matrices as ndarray[int]
    time_mats: list[Any] = [np.ceil(dist - 1e-9).astype(np.int64)]
    return pyvrp.ProblemData(locations, clients, [depot], [vehicle], dist_mats, time_mats)


def route_distance(inst: SolomonInstance, routes: Sequence[Sequence[int]]) -> float:
    """Total Euclidean length of routes from and back to the depot."""
    d = inst.distances()
    return float(sum(d[a, b] for r in routes for a, b in zip([0, *r], [*r, 0], strict=True) if r))


def check_routes(inst: SolomonInstance, routes: Sequence[Sequence[int]]) -> list[str]:
    """Violations of a solution (empty when feasible): every customer exactly once, at most the fleet,
    capacity, service started within each window, back at the depot by its due time."""
    problems: list[str] = []
    d = inst.distances()
    seen = [c for r in routes for c in r]
    missing = sorted(set(range(1, inst.n_customers + 1)) - set(seen))
    if missing or len(seen) != len(set(seen)) or any(not 1 <= c <= inst.n_customers for c in seen):
        problems.append(f"customers must be visited exactly once (missing {missing[:5]}, {len(seen)} visits)")
    used = [r for r in routes if r]
    if len(used) > inst.n_vehicles:
        problems.append(f"{len(used)} routes for a fleet of {inst.n_vehicles}")
    for k, route in enumerate(used):
        if any(not 1 <= c <= inst.n_customers for c in route):
            continue
        load = int(inst.demand[list(route)].sum())
        if load > inst.capacity:
            problems.append(f"route {k}: load {load} > capacity {inst.capacity}")
        t, prev = float(inst.time_window[0, 0]), 0
        for c in route:
            t = max(t + d[prev, c], float(inst.time_window[c, 0]))
            if t > inst.time_window[c, 1] + EPS:
                problems.append(
                    f"route {k}: customer {c} served at {t:.3f} after its due {inst.time_window[c, 1]}"
                )
            t += float(inst.service_time[c])
            prev = c
        if t + d[prev, 0] > inst.horizon + EPS:
            problems.append(
                f"route {k}: back at {t + d[prev, 0]:.3f} after the depot closes at {inst.horizon}"
            )
    return problems


def solve_static(
    inst: SolomonInstance, time_limit_s: float = 5.0, seed: int = 0, max_iterations: int | None = None
) -> StaticSolution:
    """Solve with every customer known at time zero: PyVRP minimising distance with at most the instance's
    fleet, stopped after ``time_limit_s`` seconds (or ``max_iterations``, reproducible across machines)."""
    stop: StoppingCriterion = (
        MaxRuntime(time_limit_s) if max_iterations is None else MaxIterations(max_iterations)
    )
    tic = time.perf_counter()
    best = pyvrp.solve(problem_data(inst), stop, seed=seed, collect_stats=False, display=False).best
    runtime = time.perf_counter() - tic
    routes = [[int(a.idx) + 1 for a in r.schedule() if a.is_client()] for r in best.routes()]
    feasible = best.is_feasible() and not check_routes(inst, routes)
    distance = route_distance(inst, routes)
    return StaticSolution(inst.name, routes, distance, feasible, runtime, inst.n_customers, inst.n_vehicles)


# ------------------------------------------------------------------------------------------------------------
# Dynamic
# ------------------------------------------------------------------------------------------------------------


@register("solomon")
def solomon_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: solomon``: the instance's points in a plane, one km per distance unit at 60 km/h (so a
    leg takes its Euclidean distance in minutes), depot = node 0, customer ``i`` = node ``i``."""
    assert cfg.path is not None  # checked by the config
    inst = load_instance(cfg.path)
    return plane_network(inst.xy, SPEED_KMH, "euclidean", depots=(0,))


def scenario_config(
    inst: SolomonInstance,
    late_fixed: float = 100.0,
    late_per_min: float = 10.0,
    reject_penalty: float = 100.0,
) -> ScenarioConfig:
    """A scenario describing the instance's world: clock from 0, depot = node 0, the instance's fleet at one
    cost unit per distance unit and no driver-time cost, no loading time, no congestion.

    Its graph is the instance itself (``kind: solomon``, from the file it was read from), so ``build_world``
    / ``world_for`` build it.
    """
    horizon = inst.horizon
    return ScenarioConfig(
        name=f"solomon-{inst.name}",
        description=f"Solomon instance {inst.name} (complete Euclidean graph, 1 min per distance unit)",
        shift_start_hour=0.0,
        graph=GraphConfig(kind="solomon", path=inst.path or Path(inst.name)),
        depots=DepotsConfig(nodes=[0]),
        orders=OrdersConfig(last_arrival_min=horizon, n_hotspots=0, pickup_service_min=0.0),
        fleet=FleetConfig(
            size=inst.n_vehicles,
            types=[VehicleType(name="solomon", capacity=inst.capacity, cost_per_km=1.0, cost_per_hour=0.0)],
            shift_end_min=horizon,
        ),
        costs=CostsConfig(late_fixed=late_fixed, late_per_min=late_per_min, reject_penalty=reject_penalty),
    )


def build_solomon_world(inst: SolomonInstance, config: ScenarioConfig | None = None) -> World:
    """The instance as a simulator :class:`World` (``build_world`` of its scenario): key 0 the depot, key
    ``i`` customer ``i``; travel time in minutes and distance in km both equal the Euclidean distance."""
    return build_world(config or scenario_config(inst))


class SolomonOrderGenerator:
    """A dynamic order stream from a Solomon instance, as in the EURO Meets NeurIPS 2022 dynamic VRPTW.

    At each epoch start ``k * epoch_min`` (while before the depot closes), ``requests_per_epoch`` requests
    are drawn: location, time window, demand and service time each from an independently, uniformly drawn
    customer of the instance. A request is released for dispatch ``dispatch_margin_min`` after it is revealed
    (default: one epoch); it is dropped unless a vehicle leaving the depot then can start service by the
    window's due time and be back before the depot closes. Deterministic in the simulator's RNG.
    Use with the world of :func:`build_solomon_world` (location ``i`` is key ``i``).
    """

    def __init__(
        self,
        instance: SolomonInstance,
        epoch_min: float = 60.0,
        requests_per_epoch: int = 100,
        dispatch_margin_min: float | None = None,
    ) -> None:
        if not epoch_min > 0 or requests_per_epoch < 0:
            raise ValueError(
                f"epoch_min must be > 0 and requests_per_epoch >= 0, got {epoch_min}, {requests_per_epoch}"
            )
        margin = epoch_min if dispatch_margin_min is None else dispatch_margin_min
        if margin < 0:
            raise ValueError(f"dispatch_margin_min must be >= 0, got {margin}")
        self.instance = instance
        self.epoch_min = float(epoch_min)
        self.requests_per_epoch = int(requests_per_epoch)
        self.dispatch_margin_min = float(margin)

    @property
    def n_epochs(self) -> int:
        """Epochs whose start is before the depot closes."""
        return max(1, math.ceil(self.instance.horizon / self.epoch_min))

    def __call__(self, world: World, rng: np.random.Generator) -> list[Order]:
        inst = self.instance
        if world.matrix.time_min.shape[0] != len(inst.xy):
            raise ValueError(f"world has {world.matrix.time_min.shape[0]} key nodes, instance {len(inst.xy)}")
        travel = world.time_arr
        orders: list[Order] = []
        k = self.requests_per_epoch
        for epoch in range(self.n_epochs):
            arrival = epoch * self.epoch_min
            release = arrival + self.dispatch_margin_min
            loc, window, demand, service = (rng.integers(1, inst.n_customers + 1, size=k) for _ in range(4))
            for i in range(k):
                c = int(loc[i])
                early, due = (float(v) for v in inst.time_window[window[i]])
                reach = max(release + float(travel[0, c]), early)
                back = reach + float(inst.service_time[service[i]]) + float(travel[c, 0])
                if reach > due + EPS or back > inst.horizon + EPS:
                    continue  # cannot be served in time
                orders.append(
                    Order(
                        id=len(orders),
                        arrival_min=arrival,
                        center=0,
                        loc=c,
                        size=int(inst.demand[demand[i]]),
                        ready_min=release,
                        service_min=float(inst.service_time[service[i]]),
                        option=ServiceOption.WINDOW,
                        earliest_min=early,
                        due_min=due,
                    )
                )
        return orders


# ------------------------------------------------------------------------------------------------------------
# Static benchmark
# ------------------------------------------------------------------------------------------------------------


def _solve_file(args: tuple[str, float, int]) -> StaticSolution:
    instance, limit, seed = args
    return solve_static(load_instance(instance), limit, seed)


def gap_pct(cost: float, bks: float) -> float:
    """``100 * (cost - bks) / bks``."""
    return 100.0 * (cost - bks) / bks


def instance_class(solution: StaticSolution, sizes: int) -> str:
    """The class of an instance in a report: its family (``C1`` ... ``RC2``), with its customer count when the
    report mixes sizes (Gehring-Homberger: 200 to 1000 customers)."""
    family = family_of(solution.instance)
    return family if sizes <= 1 else f"{family} n={solution.n_customers}"


def static_report(
    solutions: Sequence[StaticSolution], bks: dict[str, BestKnown], command: str, limit: float
) -> str:
    """Markdown: per instance and per class, PyVRP distance against the best-known costs (those the file
    gives; an instance it does not list is shown without a gap and named in a note)."""
    fleets = sorted({s.fleet for s in solutions})
    fleet = f"{fleets[0]} vehicles" if len(fleets) == 1 else f"{fleets[0]} to {fleets[-1]} vehicles"
    sizes = len({s.n_customers for s in solutions})
    known = {s.instance: bks.get(s.instance.upper()) for s in solutions}
    missing = [name for name, b in known.items() if b is None]

    def gap(s: StaticSolution, which: str) -> float | None:
        b = known[s.instance]
        cost = None if b is None else getattr(b, which)
        return None if cost is None else gap_pct(s.distance, cost)

    def fmt(value: float | None, spec: str = "+.2f") -> str:
        return "–" if value is None else format(value, spec)

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    lines = [
        "# Solomon / Gehring-Homberger VRPTW, static: PyVRP vs best-known costs",
        "",
        f"Command: `{command}`",
        "",
        f"PyVRP {metadata.version('pyvrp')}, {limit:g} s per instance (wall clock); Euclidean "
        f"distances, time = distance, hard windows, capacity, at most the instance's fleet ({fleet}); "
        "objective: distance only. Distances are exact (floating point) Euclidean lengths of PyVRP's "
        "routes, each solution checked by `check_routes` (`feasible`). `gap_dist` is against the "
        "distance-only best-known cost (an upper bound from older heuristics, often with more vehicles), "
        "`gap_veh` against the fewest-vehicles-first best-known cost where the file gives one (more vehicles "
        "allow less distance, hence negative gaps there).",
    ]
    if missing:
        lines += ["", f"No best-known cost for {len(missing)} instance(s): {', '.join(missing)}."]
    classes = sorted({instance_class(s, sizes) for s in solutions}, key=lambda c: (c.split()[0], len(c), c))
    lines += [
        "",
        "## Per class (mean gap %)",
        "",
        "| class | n | mean gap_dist % | mean gap_veh % | mean vehicles | mean BKS veh (dist-only) |",
        "|---|---|---|---|---|---|",
    ]
    for cls in (*classes, "all"):
        sols = [s for s in solutions if cls == "all" or instance_class(s, sizes) == cls]
        bks_veh = mean(
            [
                float(b.vehicles_distance_only)
                if (b := known[s.instance]) and b.vehicles_distance_only
                else None
                for s in sols
            ]
        )
        lines.append(
            f"| {cls} | {len(sols)} | {fmt(mean([gap(s, 'cost_distance_only') for s in sols]))} "
            f"| {fmt(mean([gap(s, 'cost_vehicles_first') for s in sols]))} "
            f"| {np.mean([s.n_vehicles for s in sols]):.1f} | {fmt(bks_veh, '.1f')} |"
        )
    lines += [
        "",
        "## Per instance",
        "",
        "| instance | customers | PyVRP distance | vehicles | feasible | BKS dist-only (veh) | gap_dist % "
        "| BKS veh-first (veh) | gap_veh % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in solutions:
        b = known[s.instance]
        dist_only = "–" if b is None else f"{b.cost_distance_only:.2f} ({fmt(b.vehicles_distance_only, 'd')})"
        veh_first = (
            "–"
            if b is None or b.cost_vehicles_first is None
            else f"{b.cost_vehicles_first:.2f} ({fmt(b.vehicles_vehicles_first, 'd')})"
        )
        lines.append(
            f"| {s.instance} | {s.n_customers} | {s.distance:.2f} | {s.n_vehicles} | "
            f"{'yes' if s.feasible else 'NO'} | {dist_only} | {fmt(gap(s, 'cost_distance_only'))} | "
            f"{veh_first} | {fmt(gap(s, 'cost_vehicles_first'))} |"
        )
    return "\n".join(lines) + "\n"


def family_of(name: str) -> str:
    """The family of an instance name: its letters and series digit, upper-cased (``C1`` ... ``RC2``; a
    Gehring-Homberger ``rc2_4_1`` is ``RC2``); the name itself when it does not start that way."""
    match = re.match(r"([A-Za-z]+)(\d)", name)
    return f"{match.group(1)}{match.group(2)}".upper() if match else name


def main(argv: Sequence[str] | None = None) -> int:
    """Solve Solomon / Gehring-Homberger instances with PyVRP and write the comparison with best-known
    costs (the shipped ones, or a file of your own)."""
    from lastmile_env.cli_errors import run_cli

    return run_cli(_main, argv, "python -m lastmile_env.sources.solomon")


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lastmile_env.sources.solomon", description=main.__doc__)
    parser.add_argument(
        "instances",
        nargs="*",
        help="instance files (any path) or shipped names such as C101 (default: all shipped)",
    )
    parser.add_argument("--time-limit", type=float, default=10.0, help="PyVRP seconds per instance")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bks", type=Path, default=BKS_FILE, help="best-known costs CSV (an 'instance' column)"
    )
    parser.add_argument(
        "--bks-distance-column",
        default=DISTANCE_COLUMN,
        help=f"the --bks column with the distance-only best-known cost (default: {DISTANCE_COLUMN})",
    )
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default: print)")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    args = parser.parse_args(argv)
    if not args.time_limit > 0 or args.workers < 1:
        raise SolomonError("--time-limit must be > 0 and --workers >= 1")
    if args.out is not None and args.out.is_dir():
        raise SolomonError(f"--out {args.out}: is a folder; give the markdown file to write")
    names = list(args.instances) or available_instances()
    bks = load_bks(args.bks, args.bks_distance_column)
    for name in names:  # every file is read and checked before any solving starts
        load_instance(name)
    jobs = [(n, args.time_limit, args.seed) for n in names]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        solutions = list(pool.map(_solve_file, jobs))
    command = "python -m lastmile_env.sources.solomon " + " ".join(
        [
            *args.instances,
            f"--time-limit {args.time_limit:g}",
            f"--workers {args.workers}",
            f"--seed {args.seed}",
        ]
        + ([f"--bks {args.bks}"] if args.bks != BKS_FILE else [])
        + (
            [f"--bks-distance-column {args.bks_distance_column}"]
            if args.bks_distance_column != DISTANCE_COLUMN
            else []
        )
        + ([f"--out {args.out}"] if args.out else [])
    )
    report = static_report(solutions, bks, command, args.time_limit)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        with args.out.with_suffix(".csv").open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["instance", "distance", "vehicles", "feasible", "runtime_s", "routes"])
            for s in solutions:
                routes = " | ".join(" ".join(map(str, r)) for r in s.routes)
                out.writerow(
                    [s.instance, f"{s.distance:.4f}", s.n_vehicles, s.feasible, f"{s.runtime_s:.2f}", routes]
                )
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
