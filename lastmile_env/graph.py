"""Road graphs and the travel matrix between the nodes that matter.

A road graph is a :class:`networkx.DiGraph` whose nodes carry ``x``, ``y`` in kilometres on a planar
projection and whose edges carry ``length_m`` (> 0), ``speed_kmh`` (> 0, set by :func:`assign_speeds`) and
``highway`` (the road type, which picks the speed). Node ids are kept as given: ints for the generators,
strings or ints for maps. Where graphs come from (synthetic generators, OSM maps, VRPLIB matrices...) is
:mod:`lastmile_env.sources`' business; this module only works on them.

The simulator never routes on the graph itself: it reads free-flow times and distances from a
:class:`TravelMatrix` over the key nodes (depots + addresses) and scales the times with a
:class:`CongestionProfile`.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from lastmile_env import kernels

__all__ = [
    "CongestionProfile",
    "GraphError",
    "TravelMatrix",
    "assign_speeds",
    "build_travel_matrix",
    "default_cache_dir",
    "direct_travel_matrix",
    "graph_fingerprint",
    "largest_strongly_connected",
]

MIN_LENGTH_M = 0.1  # floor for degenerate zero-length map segments, so every edge takes positive time
_CHUNK_ELEMENTS = 4_000_000  # travel matrix: Dijkstra rows per batch so that a (batch, N) array stays ~32 MB
_JUMP_BLOCK_ELEMENTS = 262_144  # pointer-jumping rows per block so that the block stays in cache (~2 MB)
_CACHE_FORMAT = "lastmile-travel-matrix-v1"


class GraphError(ValueError):
    """A road graph, map file or travel-matrix request is invalid; the message names the file/node/edge."""


# ------------------------------------------------------------------------------------------------------------
# Graph utilities
# ------------------------------------------------------------------------------------------------------------


def assign_speeds(
    g: nx.DiGraph,
    speed_kmh_by_highway: Mapping[str, float],
    default_speed_kmh: float,
    use_maxspeed: bool = False,
) -> None:
    """Set ``speed_kmh`` on every edge: its map speed limit (``maxspeed_kmh``, set by the OSM reader) where
    it has one and ``use_maxspeed`` is on, else its ``highway`` type's speed (``default_speed_kmh`` if the
    type is not listed)."""
    bad = {hw: s for hw, s in speed_kmh_by_highway.items() if not (math.isfinite(s) and s > 0)}
    if bad or not (math.isfinite(default_speed_kmh) and default_speed_kmh > 0):
        raise GraphError(f"speeds must be finite and > 0 km/h, got {bad or {'default': default_speed_kmh}}")
    for _, _, data in g.edges(data=True):
        tagged = data.get("maxspeed_kmh") if use_maxspeed else None
        if tagged is not None and math.isfinite(tagged) and tagged > 0:
            data["speed_kmh"] = float(tagged)
        else:
            data["speed_kmh"] = float(speed_kmh_by_highway.get(data.get("highway", ""), default_speed_kmh))


def mode_graph(
    g: nx.DiGraph, speed_kmh_by_highway: Mapping[str, float], default_speed_kmh: float
) -> nx.DiGraph:
    """A copy of road graph ``g`` for another vehicle mode (a cargo bike): its own speed by road type, and
    without the edges of the road types at speed 0 (not allowed). Its travel matrix comes from
    ``build_travel_matrix`` as the vans' does (cached by content)."""
    banned = {hw for hw, s in speed_kmh_by_highway.items() if s == 0}
    out = nx.DiGraph()
    out.graph.update(g.graph)
    out.add_nodes_from(g.nodes(data=True))
    out.add_edges_from(
        (u, v, dict(d)) for u, v, d in g.edges(data=True) if d.get("highway", "") not in banned
    )
    assign_speeds(out, {hw: s for hw, s in speed_kmh_by_highway.items() if s > 0}, default_speed_kmh)
    return out


def euclidean_matrix(xy_km: np.ndarray, speed_kmh: float) -> tuple[np.ndarray, np.ndarray]:
    """Straight-line ``(minutes, km)`` between points ``xy_km`` (K, 2) at ``speed_kmh`` (a drone)."""
    km = np.sqrt(((xy_km[:, None, :] - xy_km[None, :, :]) ** 2).sum(axis=2))
    return km * (60.0 / speed_kmh), km


def largest_strongly_connected(g: nx.DiGraph) -> nx.DiGraph:
    """``g`` itself if strongly connected, else a copy of its largest strongly connected component (warns).

    Every key node must reach every other one for the travel matrix to be finite; dead ends and one-way traps
    of a map cut-out are dropped here, with a warning saying how many nodes went.
    """
    n = g.number_of_nodes()
    if n == 0:
        raise GraphError("the road graph is empty")
    if nx.is_strongly_connected(g):
        return g
    largest = max(nx.strongly_connected_components(g), key=len)
    warnings.warn(
        f"road graph is not strongly connected: kept its largest strongly connected component "
        f"({len(largest)} of {n} nodes), dropped {n - len(largest)} nodes",
        UserWarning,
        stacklevel=2,
    )
    return g.subgraph(largest).copy()


def _node_key(node: Hashable) -> tuple[str, str]:
    """Sort key of a node id that works across ints and strings (ties broken by the typed repr)."""
    return str(node), repr(node)


def graph_fingerprint(g: nx.DiGraph) -> str:
    """SHA-256 hex of the nodes (with x, y) and edges (with length_m, speed_kmh), in sorted order.

    Stable across runs and processes (no ``hash()``; floats by ``repr``), independent of insertion order; it
    keys the travel-matrix cache.
    """
    h = hashlib.sha256()
    for node in sorted(g.nodes, key=_node_key):
        data = g.nodes[node]
        h.update(f"n {node!r} {data.get('x')!r} {data.get('y')!r}\n".encode())
    for u, v in sorted(g.edges, key=lambda e: (_node_key(e[0]), _node_key(e[1]))):
        data = g.edges[u, v]
        h.update(f"e {u!r} {v!r} {data.get('length_m')!r} {data.get('speed_kmh')!r}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------------------
# Congestion
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CongestionProfile:
    """Travel-time multiplier by hour of day (24 values, >= 0.2 each), applied with the
    Ichoua-Gendreau-Laporte model: speed is piecewise constant per hour, so a leg that crosses an hour
    boundary is integrated across it. This keeps FIFO (leaving later never arrives earlier). The arithmetic
    is ``kernels.igl_arrival``, the one the simulator uses."""

    multipliers: tuple[float, ...]
    _mults: np.ndarray = field(init=False, repr=False, compare=False)  # the same, for the compiled kernel

    def __post_init__(self) -> None:
        values = tuple(float(m) for m in self.multipliers)
        if len(values) != 24:
            raise GraphError(f"congestion profile needs 24 hourly multipliers, got {len(values)}")
        bad = [(h, m) for h, m in enumerate(values) if not (math.isfinite(m) and m >= 0.2)]
        if bad:
            raise GraphError(f"congestion multipliers must be finite and >= 0.2, got (hour, value) {bad}")
        object.__setattr__(self, "multipliers", values)
        object.__setattr__(self, "_mults", np.array(values, dtype=np.float64))

    @classmethod
    def flat(cls) -> CongestionProfile:
        """No congestion: every multiplier is 1."""
        return cls((1.0,) * 24)

    def arrival_min(self, free_flow_min: float, depart_min: float, shift_start_hour: float) -> float:
        """Arrival (sim minutes) of a leg of ``free_flow_min`` free-flow minutes leaving at ``depart_min``.

        The sim clock counts minutes since the shift start, so sim time ``t`` is clock hour
        ``(shift_start_hour + t / 60) % 24``. ``w`` free-flow minutes at multiplier ``m`` take ``w * m``
        minutes; at an hour boundary the remaining free-flow work continues at the next hour's multiplier.
        """
        if free_flow_min < 0.0:
            raise ValueError(f"free_flow_min must be >= 0, got {free_flow_min}")
        return float(kernels.igl_arrival(self._mults, shift_start_hour, free_flow_min, depart_min))


# ------------------------------------------------------------------------------------------------------------
# Travel matrix
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TravelMatrix:
    """Shortest free-flow travel times and distances between the nodes that matter (depots + addresses).

    ``time_min[i, j]`` is the free-flow time (speed factor 1, multiplier 1) of the fastest path from key node
    ``nodes[i]`` to ``nodes[j]`` and ``dist_km[i, j]`` the length of that same path (not the shortest one).
    ``predecessors[i]`` is the csgraph shortest-path tree from key ``i`` over all graph nodes, indexed like
    ``graph_nodes``; :meth:`path` walks it. The arrays are read-only: a matrix is shared between simulators.
    """

    nodes: tuple[Hashable, ...]
    time_min: np.ndarray  # (K, K) float64
    dist_km: np.ndarray  # (K, K) float64
    predecessors: np.ndarray  # (K, N) int32, -9999 for the tree root and unreachable nodes
    graph_nodes: tuple[Hashable, ...]
    _index: dict[Hashable, int] = field(init=False, repr=False)
    _key_cols: np.ndarray = field(init=False, repr=False)  # (K,) csgraph index of each key node

    def __post_init__(self) -> None:
        k, n = len(self.nodes), len(self.graph_nodes)
        if self.time_min.shape != (k, k) or self.dist_km.shape != (k, k) or self.predecessors.shape != (k, n):
            raise GraphError(
                f"travel matrix shapes do not match {k} key / {n} graph nodes: time {self.time_min.shape}, "
                f"dist {self.dist_km.shape}, predecessors {self.predecessors.shape}"
            )
        index = {node: i for i, node in enumerate(self.nodes)}
        if len(index) != k:
            raise GraphError("travel matrix key nodes must be distinct")
        col = {node: j for j, node in enumerate(self.graph_nodes)}
        try:
            key_cols = np.array([col[node] for node in self.nodes], dtype=np.int64)
        except KeyError as exc:
            raise GraphError(f"key node {exc.args[0]!r} is not among the graph nodes") from exc
        for arr in (self.time_min, self.dist_km, self.predecessors, key_cols):
            arr.setflags(write=False)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_key_cols", key_cols)

    def __len__(self) -> int:
        return len(self.nodes)

    def index_of(self, node: Hashable) -> int:
        """Key index of graph node ``node``; :class:`GraphError` if it is not a key node."""
        try:
            return self._index[node]
        except (KeyError, TypeError):
            raise GraphError(f"node {node!r} is not a key node of the travel matrix") from None

    def path(self, i: int, j: int) -> list[Hashable]:
        """Graph node ids of the fastest path from key ``i`` to key ``j``, both ends included."""
        source, target = int(self._key_cols[i]), int(self._key_cols[j])
        tree = self.predecessors[i]
        walk = [target]
        while walk[-1] != source:
            prev = int(tree[walk[-1]])
            if prev < 0 or len(walk) > len(tree):
                raise GraphError(f"no path from {self.nodes[i]!r} to {self.nodes[j]!r} in the travel matrix")
            walk.append(prev)
        return [self.graph_nodes[c] for c in reversed(walk)]


def direct_travel_matrix(
    key_nodes: Sequence[Hashable], time_min: np.ndarray, dist_km: np.ndarray
) -> TravelMatrix:
    """A travel matrix taken as given (a VRPLIB matrix, points in a plane): every leg goes straight from one
    key node to the other at the given time and distance, with no shortest-path closure, so a matrix that
    breaks the triangle inequality is charged exactly as it is. :meth:`TravelMatrix.path` gives the two ends.
    """
    keys = tuple(key_nodes)
    k = len(keys)
    time_arr = np.array(time_min, dtype=np.float64)
    dist_arr = np.array(dist_km, dtype=np.float64)
    if time_arr.shape != (k, k) or dist_arr.shape != (k, k):
        raise GraphError(
            f"travel matrix shapes {time_arr.shape} / {dist_arr.shape} do not match {k} key nodes"
        )
    for name, arr in (("time", time_arr), ("distance", dist_arr)):
        bad = np.argwhere(~(np.isfinite(arr) & (arr >= 0)))
        if len(bad):
            i, j = bad[0]
            raise GraphError(
                f"{name} from key node {keys[i]!r} to {keys[j]!r} must be finite and >= 0, got {arr[i, j]!r}"
            )
    # Each key node's "tree" is a star: the predecessor of every other key node is the root itself.
    predecessors = np.repeat(np.arange(k, dtype=np.int32)[:, None], k, axis=1)
    np.fill_diagonal(predecessors, -9999)
    return TravelMatrix(keys, time_arr, dist_arr, predecessors, keys)


def default_cache_dir() -> Path:
    """Where travel matrices are cached: ``$LASTMILE_CACHE_DIR`` if set, else ``~/.cache/lastmile``."""
    env = os.environ.get("LASTMILE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lastmile"


def build_travel_matrix(
    g: nx.DiGraph, key_nodes: Sequence[Hashable], cache_dir: Path | None = None
) -> TravelMatrix:
    """Fastest free-flow paths between ``key_nodes`` of road graph ``g`` (edges need ``speed_kmh``).

    One Dijkstra per key node over a CSR of edge minutes (never all-pairs over the graph); the distance of
    each fastest path is summed up its predecessor tree by vectorised pointer jumping. Graph nodes are indexed
    in sorted order so that the result depends only on the graph's content. With ``cache_dir`` the result is
    stored as ``.npz``, keyed by the graph fingerprint and the key nodes; a corrupt cache file is recomputed.
    """
    keys = tuple(key_nodes)
    if not keys:
        raise GraphError("build_travel_matrix needs at least one key node")
    if len(set(keys)) != len(keys):
        dup = next(n for i, n in enumerate(keys) if n in keys[:i])
        raise GraphError(f"key node {dup!r} is listed twice")
    for node in keys:
        if node not in g:
            raise GraphError(f"key node {node!r} is not in the road graph")
    graph_nodes = tuple(sorted(g.nodes, key=_node_key))
    col = {node: j for j, node in enumerate(graph_nodes)}
    key_cols = np.array([col[node] for node in keys], dtype=np.int64)

    cache_file = None
    cache_key = ""
    if cache_dir is not None:
        key_text = "\n".join([_CACHE_FORMAT, graph_fingerprint(g), *(repr(n) for n in keys)])
        cache_key = hashlib.sha256(key_text.encode()).hexdigest()
        cache_file = Path(cache_dir) / f"travel_{cache_key}.npz"
        cached = _load_cached(cache_file, cache_key, len(keys), len(graph_nodes))
        if cached is not None:
            return TravelMatrix(keys, *cached, graph_nodes=graph_nodes)

    time_min, dist_km, predecessors = _fastest_paths(g, col, key_cols)
    bad = np.argwhere(~np.isfinite(time_min))
    if len(bad):
        i, j = bad[0]
        raise GraphError(
            f"no path from key node {keys[i]!r} to key node {keys[j]!r} ({len(bad)} unreachable pairs); "
            "reduce the graph with largest_strongly_connected first"
        )
    if cache_file is not None:
        _save_cached(cache_file, cache_key, time_min, dist_km, predecessors)
    return TravelMatrix(keys, time_min, dist_km, predecessors, graph_nodes)


def _edge_arrays(
    g: nx.DiGraph, col: Mapping[Hashable, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tail and head csgraph indices, ``length_m`` and ``speed_kmh`` of every edge, validated."""
    edges = list(g.edges(data=True))
    try:
        length_m = np.array([d["length_m"] for _, _, d in edges], dtype=np.float64)
        speed_kmh = np.array([d["speed_kmh"] for _, _, d in edges], dtype=np.float64)
    except KeyError as exc:
        u, v, _ = next(e for e in edges if exc.args[0] not in e[2])
        hint = " (call assign_speeds first)" if exc.args[0] == "speed_kmh" else ""
        raise GraphError(f"edge ({u!r}, {v!r}) has no {exc.args[0]!r}{hint}") from None
    ok = np.isfinite(length_m) & (length_m > 0) & np.isfinite(speed_kmh) & (speed_kmh > 0)
    if not ok.all():
        e = int(np.argmin(ok))
        u, v, _ = edges[e]
        raise GraphError(
            f"edge ({u!r}, {v!r}) needs finite length_m > 0 and speed_kmh > 0, "
            f"got {length_m[e]!r} m at {speed_kmh[e]!r} km/h"
        )
    tail = np.fromiter((col[u] for u, _, _ in edges), dtype=np.int64, count=len(edges))
    head = np.fromiter((col[v] for _, v, _ in edges), dtype=np.int64, count=len(edges))
    return tail, head, length_m, speed_kmh


def _fastest_paths(
    g: nx.DiGraph, col: Mapping[Hashable, int], key_cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dijkstra from each key node in batches: (K, K) minutes, (K, K) km and the (K, N) predecessor trees."""
    n, k = len(col), len(key_cols)
    tail, head, length_m, speed_kmh = _edge_arrays(g, col)
    edge_min = length_m * 0.06 / speed_kmh  # m -> km (/1000), h -> min (*60)
    minutes = sp.csr_array((edge_min, (tail, head)), shape=(n, n))
    km = sp.csr_array((length_m / 1000.0, (tail, head)), shape=(n, n))  # same sparsity pattern as ``minutes``
    time_min = np.empty((k, k))
    dist_km = np.empty((k, k))
    predecessors = np.empty((k, n), dtype=np.int32)
    batch = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, k, batch):
        rows = slice(start, min(start + batch, k))
        dist, pred = csgraph.dijkstra(
            minutes, directed=True, indices=key_cols[rows], return_predecessors=True
        )
        time_min[rows] = dist[:, key_cols]
        dist_km[rows] = _tree_distances(pred, km)[:, key_cols]
        predecessors[rows] = pred
    return time_min, dist_km, predecessors


def _tree_distances(pred: np.ndarray, edge_km: sp.csr_array) -> np.ndarray:
    """Distance from each tree's root to every node, summed along shortest-path trees ``pred`` (B, N).

    Pointer jumping: every node holds (pointer, km to pointer); one round adds the pointer's km and replaces
    the pointer by the pointer's pointer, doubling the covered depth, so ``log2(depth)`` vectorised rounds
    suffice. Roots and unreachable nodes point to themselves at 0 km. Rows go in cache-sized blocks (the
    gathers are ~3x faster when a block fits in L2/L3).
    """
    b, n = pred.shape
    node = np.broadcast_to(np.arange(n), (b, n))
    has_parent = pred >= 0
    ptr = np.where(has_parent, pred, node).astype(np.intp)
    dist = np.zeros((b, n))
    dist[has_parent] = edge_km[ptr[has_parent], node[has_parent]]
    rows = max(1, _JUMP_BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, b, rows):
        block_ptr, block_dist = ptr[start : start + rows], dist[start : start + rows]
        while True:
            next_ptr = np.take_along_axis(block_ptr, block_ptr, axis=1)
            if np.array_equal(next_ptr, block_ptr):
                break
            block_dist += np.take_along_axis(block_dist, block_ptr, axis=1)
            block_ptr = next_ptr
    return dist


def _load_cached(
    file: Path, cache_key: str, k: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The cached (time_min, dist_km, predecessors), or ``None`` if absent, stale or corrupt (warns)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            stored_key = str(data["key"])
            arrays = (data["time_min"], data["dist_km"], data["predecessors"])
        shapes_ok = arrays[0].shape == (k, k) and arrays[1].shape == (k, k) and arrays[2].shape == (k, n)
        if stored_key == cache_key and shapes_ok:
            return arrays[0].astype(np.float64), arrays[1].astype(np.float64), arrays[2].astype(np.int32)
        problem = "does not match this graph"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        problem = f"is unreadable ({type(exc).__name__}: {exc})"
    warnings.warn(f"travel-matrix cache {file} {problem}; recomputing", UserWarning, stacklevel=3)
    return None


def _save_cached(
    file: Path, cache_key: str, time_min: np.ndarray, dist_km: np.ndarray, predecessors: np.ndarray
) -> None:
    """Write the travel-matrix cache (see ``save_cache``)."""
    arrays = {
        "key": np.array(cache_key),
        "time_min": time_min,
        "dist_km": dist_km,
        "predecessors": predecessors,
    }
    save_cache(file, "travel-matrix cache", arrays)


def save_cache(file: Path, what: str, arrays: dict[str, np.ndarray]) -> None:
    """Write a cache of arrays atomically (temp file + ``os.replace``); failure only warns: a cache is
    optional. ``what`` names it in the warning."""
    tmp_name = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=file.parent, prefix=file.stem, suffix=".tmp", delete=False
        ) as tmp:
            tmp_name = tmp.name
            np.savez(tmp, allow_pickle=False, **cast(dict[str, Any], arrays))
        os.replace(tmp_name, file)
    except OSError as exc:
        warnings.warn(f"could not write {what} {file}: {exc}", UserWarning, stacklevel=4)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
