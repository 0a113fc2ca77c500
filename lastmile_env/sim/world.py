"""The static world of a scenario: road graph, travel matrix, centers, addresses, hotspots and fleet.

Built once per scenario from its ``layout_seed`` (the city does not change between episodes) and shared,
read-only, by every simulator, env, policy and server that runs the scenario.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.spatial import KDTree

from lastmile_env import graph as roads
from lastmile_env import kernels
from lastmile_env.config import BIKE_SPEED_KMH_BY_HIGHWAY, ConfigError, ScenarioConfig, VehicleType
from lastmile_env.network import Network, build_network
from lastmile_env.sim.types import Vehicle


@dataclass(frozen=True)
class VehicleSpec:
    """Fixed attributes of one vehicle of the fleet."""

    type_name: str
    capacity: int
    speed_factor: float
    cost_per_km: float
    cost_per_hour: float
    home: int  # key index of its center
    shift_end_min: float
    mode: int = 0  # index of its mode's matrices (``World.time_modes``); 0: the road matrix
    mode_name: str = "van"
    range_km: float = math.inf
    recharge_min: float = 0.0
    # Rosters (``fleet.roster``): where and when the vehicle starts; ``fleet.idle_at: last_drop``: it waits
    # where its last stop was instead of driving home.
    start_node: int | None = None  # key index; None: at home
    start_min: float = 0.0
    returns_home: bool = True

    def vehicle(self, vehicle_id: int, **state: Any) -> Vehicle:
        """A vehicle of this spec in the given state (``node``, ``free_min``, ``load``, ``route``...)."""
        return Vehicle(
            id=vehicle_id,
            type_name=self.type_name,
            capacity=self.capacity,
            speed_factor=self.speed_factor,
            cost_per_km=self.cost_per_km,
            cost_per_hour=self.cost_per_hour,
            home=self.home,
            shift_end_min=self.shift_end_min,
            mode=self.mode,
            mode_name=self.mode_name,
            range_km=self.range_km,
            recharge_min=self.recharge_min,
            returns_home=self.returns_home,
            **state,
        )


@dataclass(frozen=True, eq=False)
class World:
    """Everything about a scenario that does not change during or between its episodes.

    Key indices: ``0 .. n_depots-1`` are the centers, the rest are address nodes; ``matrix`` is over them.
    ``time_min`` / ``dist_km`` are the matrix as nested lists, for fast scalar look-ups in the hot loop.
    """

    config: ScenarioConfig
    graph: nx.DiGraph
    matrix: roads.TravelMatrix
    congestion: roads.CongestionProfile
    n_depots: int
    addresses: np.ndarray  # (A,) key indices of address nodes
    address_weights: np.ndarray  # (H+1, A) probability of each address: uniform row, then one row per hotspot
    nearest_depot: np.ndarray  # (K,) key index of the center nearest (by travel time) to each key node
    xy_km: np.ndarray  # (K, 2) planar coordinates of key nodes
    vehicles: tuple[VehicleSpec, ...]
    time_min: list[list[float]]
    dist_km: list[list[float]]
    time_arr: np.ndarray  # (K, K) the matrix's free-flow minutes, for the compiled kernels
    dist_arr: np.ndarray  # (K, K) km
    mults: np.ndarray  # (24,) congestion multipliers by clock hour
    late_costs: tuple[float, float]  # (late_fixed, late_per_min)
    lockers: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # (L,) key indices
    # Vehicle modes: one travel matrix per profile (mode 0 is the road matrix above, the vans'), stacked
    # for the kernels; a vehicle reads those of its ``mode``.
    time_modes: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))  # (M, K, K) minutes
    dist_modes: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))  # (M, K, K) km
    mode_mults: np.ndarray = field(default_factory=lambda: np.empty((0, 24)))  # (M, 24) congestion
    mode_names: tuple[str, ...] = ("van",)  # (M,) van | cargo_bike | drone
    # (M,) the road matrix each mode's paths come from (its fastest paths, e.g. to draw a route); None for a
    # mode that flies straight lines (drones)
    mode_paths: tuple[roads.TravelMatrix | None, ...] = ()

    @property
    def n_vehicles(self) -> int:
        return len(self.vehicles)

    @property
    def congestion_floor(self) -> float:
        """The lowest travel-time multiplier of the day: no leg is faster than free flow times this."""
        return min(self.congestion.multipliers)

    @property
    def max_capacity(self) -> int:
        return max(v.capacity for v in self.vehicles)

    def make_vehicles(self) -> list[Vehicle]:
        """The fleet at the start of the shift: every vehicle idle at its start node (its center unless a
        roster says otherwise), free from its shift start."""
        return [
            spec.vehicle(
                i, node=spec.home if spec.start_node is None else spec.start_node, free_min=spec.start_min
            )
            for i, spec in enumerate(self.vehicles)
        ]

    def travel_arrival_min(
        self, src: int, dst: int, depart_min: float, speed_factor: float, mode: int = 0
    ) -> float:
        """Arrival time of a leg between key nodes: free-flow matrix time of the vehicle's mode, vehicle
        speed, congestion."""
        if mode == 0:
            free_flow_min = self.time_min[src][dst] / speed_factor
            return float(
                kernels.igl_arrival(self.mults, self.config.shift_start_hour, free_flow_min, depart_min)
            )
        free_flow_min = float(self.time_modes[mode, src, dst]) / speed_factor
        mults = self.mode_mults[mode]
        return float(kernels.igl_arrival(mults, self.config.shift_start_hour, free_flow_min, depart_min))

    def path_nodes(self, src: int, dst: int, mode: int = 0) -> list[Hashable]:
        """Graph nodes of a vehicle of ``mode``'s path between key nodes: its fastest path on its roads, or
        the two ends for a mode that flies straight (a drone)."""
        paths = self.mode_paths[mode] if self.mode_paths else self.matrix
        if paths is None:
            return [self.matrix.nodes[src], self.matrix.nodes[dst]]
        return paths.path(src, dst)

    def leg_km(self, src: int, dst: int, mode: int = 0) -> float:
        """Length of a leg between key nodes for a vehicle of ``mode``."""
        return self.dist_km[src][dst] if mode == 0 else float(self.dist_modes[mode, src, dst])


def _resolve_node(graph: nx.DiGraph, node: int | str, field: str) -> int | str:
    """Match a configured node id to the graph's, which may be ints or strings (OSM ids)."""
    for candidate in (node, str(node)):
        if candidate in graph:
            return candidate
    if isinstance(node, str) and node.lstrip("-").isdigit() and int(node) in graph:
        return int(node)
    raise ConfigError(
        f"{field}: node {node!r} is not on the road graph (after keeping its largest component)"
    )


def _choose_depots(
    cfg: ScenarioConfig, graph: nx.DiGraph, nodes: list, xy: np.ndarray, named: tuple | None
) -> list:
    """The centers: the scenario's ``depots.nodes``, else the data's own (``named``, a VRPLIB depot) unless
    the scenario sets ``depots.count``, else ``count`` centers where the intersections cluster."""
    if cfg.depots.nodes is None and named is not None and cfg.depots.count is None:
        return list(named)
    if cfg.depots.nodes is not None:
        chosen = [_resolve_node(graph, n, f"depots.nodes[{i}]") for i, n in enumerate(cfg.depots.nodes)]
        if len(set(chosen)) != len(chosen):
            raise ConfigError(f"depots.nodes: duplicate node in {cfg.depots.nodes}")
        return chosen
    count = cfg.depots.count or 1
    if count > len(nodes) - 1:
        raise ConfigError(f"depots.count: {count} centers need a graph with more nodes")
    # Centers where the intersections cluster: k-means on the node coordinates (farthest-point start, so
    # deterministic), each center the intersection nearest its cluster's mean.
    first = int(np.argmin(((xy - xy.mean(axis=0)) ** 2).sum(axis=1)))
    seeds = [first]
    gap = ((xy - xy[first]) ** 2).sum(axis=1)
    while len(seeds) < count:
        seeds.append(int(np.argmax(gap)))
        gap = np.minimum(gap, ((xy - xy[seeds[-1]]) ** 2).sum(axis=1))
    means, _ = kmeans2(xy, xy[seeds], minit="matrix")
    picked: list[int] = []
    for mean in means:
        order = np.argsort(((xy - mean) ** 2).sum(axis=1))
        picked.append(int(next(i for i in order if i not in picked)))
    return [nodes[i] for i in picked]


def _travel_matrix(network: Network, key_nodes: list, cache_dir: Path) -> roads.TravelMatrix:
    """The key nodes' matrix: the network's own, taken as given, or fastest paths on its road graph."""
    if network.time_min is None or network.dist_km is None:
        return roads.build_travel_matrix(network.graph, key_nodes, cache_dir=cache_dir)
    row = {node: i for i, node in enumerate(network.graph.nodes)}
    idx = np.array([row[n] for n in key_nodes], dtype=np.int64)
    return roads.direct_travel_matrix(
        key_nodes, network.time_min[np.ix_(idx, idx)], network.dist_km[np.ix_(idx, idx)]
    )


def _profile(t: VehicleType) -> tuple:
    """What a vehicle type's travel matrix depends on (types with the same profile share one)."""
    congestion = t.mode == "van" if t.congestion is None else t.congestion
    if t.mode == "van":
        return ("van", congestion)
    if t.mode == "drone":
        return ("drone", congestion, t.speed_kmh)
    table = BIKE_SPEED_KMH_BY_HIGHWAY if t.speed_kmh_by_highway is None else t.speed_kmh_by_highway
    return ("cargo_bike", congestion, t.speed_kmh or 16.0, tuple(sorted(table.items())))


def _profiles(cfg: ScenarioConfig) -> list[tuple]:
    """The travel profiles of the fleet, the vans' road matrix with congestion first (mode 0)."""
    out: list[tuple] = [("van", True)]
    for t in cfg.fleet.types:
        if _profile(t) not in out:
            out.append(_profile(t))
    return out


def _mode_matrices(
    cfg: ScenarioConfig,
    graph: nx.DiGraph,
    key_nodes: list,
    matrix: roads.TravelMatrix,
    xy: np.ndarray,
    mults: np.ndarray,
    cache_dir: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], tuple[roads.TravelMatrix | None, ...]]:
    """``(time (M, K, K), km (M, K, K), congestion (M, 24), names, path matrices)``, one per profile
    (``_profiles``); a drone's path matrix is None (it flies straight)."""
    times, dists, rows, names = [], [], [], []
    paths: list[roads.TravelMatrix | None] = []
    for profile in _profiles(cfg):
        mode, congestion = profile[0], profile[1]
        if mode == "van":
            time_min, dist_km = matrix.time_min, matrix.dist_km
            paths.append(matrix)
        elif mode == "drone":
            time_min, dist_km = roads.euclidean_matrix(xy, profile[2])
            paths.append(None)
        else:
            if graph.number_of_edges() == 0:
                raise ConfigError(
                    f"fleet.types: cargo bikes need a road graph; graph kind {cfg.graph.kind!r} has none "
                    "(only a travel matrix)"
                )
            bikes = roads.mode_graph(graph, dict(profile[3]), profile[2])
            try:
                bike = roads.build_travel_matrix(bikes, key_nodes, cache_dir=cache_dir)
            except roads.GraphError as exc:
                raise ConfigError(f"fleet.types: cargo bikes cannot reach every address: {exc}") from None
            time_min, dist_km = bike.time_min, bike.dist_km
            paths.append(bike)
        times.append(time_min)
        dists.append(dist_km)
        rows.append(mults if congestion else np.ones(24))
        names.append(mode)
    return (
        np.ascontiguousarray(np.stack(times), dtype=np.float64),
        np.ascontiguousarray(np.stack(dists), dtype=np.float64),
        np.ascontiguousarray(np.stack(rows), dtype=np.float64),
        tuple(names),
        tuple(paths),
    )


def _fleet(
    cfg: ScenarioConfig, n_depots: int, graph: nx.DiGraph, matrix: roads.TravelMatrix
) -> tuple[VehicleSpec, ...]:
    """Vehicle types by largest-remainder shares; homes round-robin over the centers (or ``fleet.roster``)."""
    if cfg.fleet.roster is not None:
        return _roster(cfg, n_depots, graph, matrix)
    profiles = _profiles(cfg)
    types = cfg.fleet.types
    total = sum(t.share for t in types)
    exact = [cfg.fleet.size * t.share / total for t in types]
    counts = [math.floor(e) for e in exact]
    for i in sorted(range(len(types)), key=lambda i: exact[i] - counts[i], reverse=True)[
        : cfg.fleet.size - sum(counts)
    ]:
        counts[i] += 1
    specs: list[VehicleSpec] = []
    for t, count in zip(types, counts, strict=True):
        for _ in range(count):
            specs.append(_spec(cfg, t, profiles, home=len(specs) % n_depots))
    return tuple(specs)


def _spec(cfg: ScenarioConfig, t: VehicleType, profiles: list[tuple], home: int, **shift: Any) -> VehicleSpec:
    """A vehicle of type ``t`` based at center ``home``, on the scenario's shift unless ``shift`` (a roster
    entry's ``shift_end_min``, ``start_node``, ``start_min``) says otherwise."""
    return VehicleSpec(
        type_name=t.name,
        capacity=t.capacity,
        speed_factor=t.speed_factor,
        cost_per_km=t.cost_per_km,
        cost_per_hour=t.cost_per_hour,
        home=home,
        shift_end_min=shift.pop("shift_end_min", cfg.fleet.shift_end_min),
        mode=profiles.index(_profile(t)),
        mode_name=t.mode,
        range_km=math.inf if t.range_km is None else t.range_km,
        recharge_min=t.recharge_min,
        returns_home=cfg.fleet.idle_at == "home",
        **shift,
    )


def _roster(
    cfg: ScenarioConfig, n_depots: int, graph: nx.DiGraph, matrix: roads.TravelMatrix
) -> tuple[VehicleSpec, ...]:
    """One vehicle per roster entry: its type, shift and start node; its center as named, else the center
    nearest (by travel time) to its start node, else round-robin."""
    assert cfg.fleet.roster is not None
    profiles = _profiles(cfg)
    types = {t.name: t for t in reversed(cfg.fleet.types)}  # the first of a repeated name wins
    specs: list[VehicleSpec] = []
    for i, entry in enumerate(cfg.fleet.roster):
        t = cfg.fleet.types[0] if entry.type is None else types[entry.type]
        start = None
        if entry.start_node is not None:
            node = _resolve_node(graph, entry.start_node, f"fleet.roster[{i}].start_node")
            try:
                start = matrix.index_of(node)
            except roads.GraphError:
                raise ConfigError(
                    f"fleet.roster[{i}].start_node: node {entry.start_node!r} is neither a center nor an "
                    "address node (graph.n_addresses samples the addresses; choose one of them)"
                ) from None
        if entry.center is not None:
            node = _resolve_node(graph, entry.center, f"fleet.roster[{i}].center")
            home = matrix.index_of(node) if node in matrix.nodes[:n_depots] else -1
            if home < 0:
                raise ConfigError(f"fleet.roster[{i}].center: node {entry.center!r} is not a center")
        elif start is not None:
            home = int(np.argmin(matrix.time_min[start, :n_depots] + matrix.time_min[:n_depots, start]))
        else:
            home = i % n_depots
        end_min = cfg.fleet.shift_end_min if entry.end_min is None else entry.end_min
        specs.append(
            _spec(cfg, t, profiles, home, shift_end_min=end_min, start_node=start, start_min=entry.start_min)
        )
    return tuple(specs)


def _snap_addresses(cfg: ScenarioConfig, graph: nx.DiGraph, nodes: list, xy: np.ndarray, depots: set) -> list:
    """The intersections nearest to ``graph.address_coords`` (lat, lon), in order, without repeats."""
    projection = graph.graph.get("lonlat_projection")
    if projection is None:
        raise ConfigError(
            "graph.address_coords: needs a real map (latitude/longitude); this graph is synthetic"
        )
    assert cfg.graph.address_coords is not None
    lat_lon = np.array(cfg.graph.address_coords, dtype=float)
    points = np.column_stack(
        [
            (lat_lon[:, 1] - projection["lon0"]) * projection["km_per_deg_lon"],
            (lat_lon[:, 0] - projection["lat0"]) * projection["km_per_deg_lat"],
        ]
    )
    candidates = [i for i, n in enumerate(nodes) if n not in depots]
    dist_km, nearest = KDTree(xy[candidates]).query(points)
    far = np.flatnonzero(dist_km > cfg.graph.max_snap_km)
    if far.size:
        k = int(far[0])
        raise ConfigError(
            f"graph.address_coords[{k}]: {tuple(lat_lon[k])} is {dist_km[k]:.2f} km from the nearest "
            f"intersection (max_snap_km {cfg.graph.max_snap_km})"
        )
    return [nodes[candidates[i]] for i in dict.fromkeys(int(j) for j in nearest)]


def _choose_lockers(cfg: ScenarioConfig, xy: np.ndarray, addresses: np.ndarray) -> np.ndarray:
    """Pickup points spread over the city: farthest-point sampling of the address nodes, from the one nearest
    the addresses' centroid (deterministic in the layout)."""
    count = cfg.attempts.lockers.count
    if count > addresses.size:
        raise ConfigError(f"attempts.lockers.count: {count} is more than the {addresses.size} addresses")
    if count == 0:
        return np.empty(0, dtype=np.int64)
    pts = xy[addresses]
    picked = [int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))]
    gap = ((pts - pts[picked[0]]) ** 2).sum(axis=1)
    while len(picked) < count:
        picked.append(int(np.argmax(gap)))
        gap = np.minimum(gap, ((pts - pts[picked[-1]]) ** 2).sum(axis=1))
    return addresses[np.array(picked, dtype=np.int64)]


def build_world(cfg: ScenarioConfig, cache_dir: Path | None = None) -> World:
    """Build the world of a scenario (deterministic in ``cfg.layout_seed``)."""
    graph_seq, place_seq = np.random.SeedSequence(cfg.layout_seed).spawn(2)
    network = build_network(cfg, np.random.default_rng(graph_seq))
    graph = network.graph
    rng = np.random.default_rng(place_seq)
    nodes = list(graph.nodes)
    xy_all = np.array([[graph.nodes[n]["x"], graph.nodes[n]["y"]] for n in nodes], dtype=float)
    depots = _choose_depots(cfg, graph, nodes, xy_all, network.depots)
    depot_set = set(depots)
    others = [n for n in nodes if n not in depot_set]
    n_addr = cfg.graph.n_addresses
    if cfg.graph.address_coords is not None:
        others = _snap_addresses(cfg, graph, nodes, xy_all, depot_set)
    elif n_addr is not None:
        if n_addr > len(others):
            raise ConfigError(f"graph.n_addresses: {n_addr} is more than the {len(others)} non-center nodes")
        others = [others[i] for i in sorted(rng.choice(len(others), size=n_addr, replace=False))]
    key_nodes = depots + others
    matrix = _travel_matrix(network, key_nodes, cache_dir or roads.default_cache_dir())
    xy = np.array([[graph.nodes[n]["x"], graph.nodes[n]["y"]] for n in key_nodes], dtype=float)
    n_depots = len(depots)
    addresses = np.arange(n_depots, len(key_nodes))

    # Address distribution: a uniform row, then a Gaussian kernel around each hotspot.
    rows = [np.full(len(addresses), 1.0 / len(addresses))]
    n_hot = min(cfg.orders.n_hotspots, len(addresses))
    for centre in rng.choice(addresses, size=n_hot, replace=False):
        d2 = ((xy[addresses] - xy[centre]) ** 2).sum(axis=1)
        w = np.exp(-d2 / (2 * cfg.orders.hotspot_radius_km**2))
        rows.append(w / w.sum())
    nearest = np.argmin(matrix.time_min[:n_depots, :], axis=0)
    congestion = roads.CongestionProfile(tuple(cfg.graph.congestion))
    mults = np.array(congestion.multipliers, dtype=np.float64)
    time_modes, dist_modes, mode_mults, mode_names, mode_paths = _mode_matrices(
        cfg, graph, key_nodes, matrix, xy, mults, cache_dir or roads.default_cache_dir()
    )
    return World(
        config=cfg,
        graph=graph,
        matrix=matrix,
        congestion=congestion,
        n_depots=n_depots,
        addresses=addresses,
        address_weights=np.stack(rows),
        nearest_depot=nearest,
        xy_km=xy,
        vehicles=_fleet(cfg, n_depots, graph, matrix),
        time_min=matrix.time_min.tolist(),
        dist_km=matrix.dist_km.tolist(),
        time_arr=np.ascontiguousarray(matrix.time_min, dtype=np.float64),
        dist_arr=np.ascontiguousarray(matrix.dist_km, dtype=np.float64),
        mults=mults,
        late_costs=(cfg.costs.late_fixed, cfg.costs.late_per_min),
        lockers=_choose_lockers(cfg, xy, addresses),
        time_modes=time_modes,
        dist_modes=dist_modes,
        mode_mults=mode_mults,
        mode_names=mode_names,
        mode_paths=mode_paths,
    )


@functools.lru_cache(maxsize=16)
def _cached_world(cfg_json: str) -> World:
    return build_world(ScenarioConfig.model_validate_json(cfg_json))


def world_for(cfg: ScenarioConfig) -> World:
    """The shared world of a scenario, built once per process (and its matrix once per machine)."""
    return _cached_world(cfg.model_dump_json())
