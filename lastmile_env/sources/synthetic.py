"""Synthetic road graphs (``graph.kind``: ``grid``, ``geometric``, ``clustered``), drawn from the layout seed.

Every street is two-way; speeds come from the road type (``graph.speed_kmh_by_highway``) and the graph is cut
to its largest strongly connected component (a no-op for these generators, which are connected).
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph
from scipy.spatial import Delaunay, KDTree, QhullError

from lastmile_env.config import GraphConfig
from lastmile_env.graph import MIN_LENGTH_M, GraphError, assign_speeds, largest_strongly_connected
from lastmile_env.network import Network, register

__all__ = ["clustered_city_graph", "grid_graph", "random_geometric_graph"]

KNN_NEIGHBOURS = 4  # each point links to its 4 nearest neighbours (plus the EMST)
MAX_DETOUR = 0.2  # road length = straight line * (1 + U(0, MAX_DETOUR))


def _road_network(graph: nx.DiGraph, cfg: GraphConfig) -> Network:
    assign_speeds(graph, cfg.speed_kmh_by_highway, cfg.default_speed_kmh)
    return Network(largest_strongly_connected(graph))


@register("grid")
def grid_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: grid``: :func:`grid_graph` of ``rows x cols`` at ``spacing_m``."""
    return _road_network(grid_graph(cfg.rows, cfg.cols, cfg.spacing_m, cfg.perturb, rng), cfg)


@register("geometric")
def geometric_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: geometric``: :func:`random_geometric_graph` of ``n_nodes`` in ``area_km``."""
    return _road_network(random_geometric_graph(cfg.n_nodes, cfg.area_km, rng), cfg)


@register("clustered")
def clustered_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: clustered``: :func:`clustered_city_graph` with ``n_centres`` centres."""
    return _road_network(clustered_city_graph(cfg.n_nodes, cfg.n_centres, cfg.area_km, rng), cfg)


def grid_graph(
    rows: int, cols: int, spacing_m: float, perturb: float, rng: np.random.Generator
) -> nx.DiGraph:
    """Manhattan grid of ``rows x cols`` intersections with two-way streets ``spacing_m`` apart.

    Node ``r * cols + c`` sits at ``(c, r) * spacing``. Each street segment is
    ``spacing_m * (1 + U(0, perturb))`` long (same in both directions) so that fastest paths are unique rather
    than tied. Streets on every 4th row and column are ``'primary'`` arterials, the rest ``'residential'``.
    """
    if rows < 1 or cols < 1:
        raise GraphError(f"grid needs at least 1 row and 1 column, got {rows} x {cols}")
    if not spacing_m > 0:
        raise GraphError(f"grid spacing_m must be > 0, got {spacing_m}")
    if not perturb >= 0:
        raise GraphError(f"grid perturb must be >= 0, got {perturb}")
    g = nx.DiGraph()
    spacing_km = spacing_m / 1000.0
    for r in range(rows):
        for c in range(cols):
            g.add_node(r * cols + c, x=c * spacing_km, y=r * spacing_km)
    # Horizontal segments (along row r) first, then vertical ones (along column c): a fixed draw order.
    segments = [(r * cols + c, r * cols + c + 1, r % 4 == 0) for r in range(rows) for c in range(cols - 1)]
    segments += [(r * cols + c, (r + 1) * cols + c, c % 4 == 0) for r in range(rows - 1) for c in range(cols)]
    stretch = 1.0 + rng.uniform(0.0, perturb, size=len(segments))
    for (u, v, arterial), s in zip(segments, stretch, strict=True):
        attrs = {"length_m": float(spacing_m * s), "highway": "primary" if arterial else "residential"}
        g.add_edge(u, v, **attrs)
        g.add_edge(v, u, **attrs)
    return g


def random_geometric_graph(n_nodes: int, area_km: float, rng: np.random.Generator) -> nx.DiGraph:
    """Points uniform in ``[0, area_km]^2``, each linked both ways to its 4 nearest neighbours.

    The Euclidean minimum spanning tree is added too, which makes the graph strongly connected (every street
    is two-way). Lengths are the straight line times ``1 + U(0, 0.2)`` (a small detour); all roads are
    ``'residential'``.
    """
    _check_point_args(n_nodes, area_km)
    xy_km = rng.uniform(0.0, area_km, size=(n_nodes, 2))
    return _proximity_graph(xy_km, rng, lambda u, v: "residential")


def clustered_city_graph(
    n_nodes: int, n_centres: int, area_km: float, rng: np.random.Generator
) -> nx.DiGraph:
    """A city of ``n_centres`` dense centres in sparse outskirts, linked like :func:`random_geometric_graph`.

    Centre points are uniform in the middle 70% of the square; 70% of the nodes are drawn around them
    (Gaussian, sigma 6% of ``area_km``, clipped to the square), the other 30% uniformly over the square. Edges
    between two nodes of the same centre are ``'residential'``; all others (between centres, through the
    outskirts) are the longer ``'primary'`` connecting roads.
    """
    _check_point_args(n_nodes, area_km)
    if n_centres < 1:
        raise GraphError(f"clustered graph needs n_centres >= 1, got {n_centres}")
    centres_km = rng.uniform(0.15 * area_km, 0.85 * area_km, size=(n_centres, 2))
    n_dense = round(0.7 * n_nodes)
    label = np.full(n_nodes, -1, dtype=np.int64)  # centre of each node, -1 for the outskirts
    label[:n_dense] = rng.integers(0, n_centres, size=n_dense)
    xy_km = np.empty((n_nodes, 2))
    xy_km[:n_dense] = centres_km[label[:n_dense]] + rng.normal(0.0, 0.06 * area_km, size=(n_dense, 2))
    xy_km[n_dense:] = rng.uniform(0.0, area_km, size=(n_nodes - n_dense, 2))
    np.clip(xy_km, 0.0, area_km, out=xy_km)

    def highway(u: int, v: int) -> str:
        return "residential" if label[u] >= 0 and label[u] == label[v] else "primary"

    return _proximity_graph(xy_km, rng, highway)


def _check_point_args(n_nodes: int, area_km: float) -> None:
    if n_nodes < 2:
        raise GraphError(f"graph needs n_nodes >= 2, got {n_nodes}")
    if not area_km > 0:
        raise GraphError(f"area_km must be > 0, got {area_km}")


def _proximity_graph(
    xy_km: np.ndarray, rng: np.random.Generator, highway: Callable[[int, int], str]
) -> nx.DiGraph:
    """Two-way streets between k nearest neighbours plus the Euclidean MST, on points ``xy_km`` (n, 2)."""
    n = len(xy_km)
    k = min(KNN_NEIGHBOURS, n - 1)
    _, nearest = KDTree(xy_km).query(xy_km, k=k + 1)  # column 0 is the point itself
    pairs = {(min(i, j), max(i, j)) for i, row in enumerate(nearest.tolist()) for j in row[1:] if i != j}
    pairs |= _euclidean_mst_pairs(xy_km)
    edges = sorted(pairs)  # a fixed order for the detour draws
    uv = np.array(edges, dtype=np.int64)
    straight_m = 1000.0 * np.linalg.norm(xy_km[uv[:, 0]] - xy_km[uv[:, 1]], axis=1)
    length_m = np.maximum(straight_m * (1.0 + rng.uniform(0.0, MAX_DETOUR, size=len(edges))), MIN_LENGTH_M)
    g = nx.DiGraph()
    for i, (x, y) in enumerate(xy_km.tolist()):
        g.add_node(i, x=x, y=y)
    for (u, v), length in zip(edges, length_m.tolist(), strict=True):
        attrs = {"length_m": length, "highway": highway(u, v)}
        g.add_edge(u, v, **attrs)
        g.add_edge(v, u, **attrs)
    return g


def _euclidean_mst_pairs(xy_km: np.ndarray) -> set[tuple[int, int]]:
    """Edges ``(i, j)``, ``i < j``, of the Euclidean minimum spanning tree (part of the Delaunay graph)."""
    n = len(xy_km)
    if n <= 3:
        candidates = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        try:
            tri = Delaunay(xy_km)
        except QhullError:  # degenerate input (e.g. collinear points): joggle it
            tri = Delaunay(xy_km, qhull_options="QJ")
        indptr, indices = tri.vertex_neighbor_vertices
        candidates = [(i, j) for i in range(n) for j in indices[indptr[i] : indptr[i + 1]].tolist() if i < j]
    uv = np.array(candidates, dtype=np.int64)
    # The +1e-12 km keeps coincident points connected (csgraph drops zero-weight entries).
    w = np.linalg.norm(xy_km[uv[:, 0]] - xy_km[uv[:, 1]], axis=1) + 1e-12
    mst = csgraph.minimum_spanning_tree(sp.csr_array((w, (uv[:, 0], uv[:, 1])), shape=(n, n))).tocoo()
    return {(min(i, j), max(i, j)) for i, j in zip(mst.row.tolist(), mst.col.tolist(), strict=True)}
