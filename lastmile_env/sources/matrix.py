"""An explicit travel matrix (``graph.kind: matrix``): VRPLIB ``EXPLICIT`` edge weights, ``.npy`` or ``.csv``.

The matrix is charged exactly as given: entry ``[i, j]`` is the leg from node ``i`` to node ``j``, asymmetric
where the data is, with no shortest-path closure (ORTEC's EURO Meets NeurIPS 2022 matrices break the
triangle inequality on up to 21% of the pairs, and the competition charges the direct entry). Units:

* time: ``graph.unit`` says what one unit of the weights is (``s`` or ``min``; ORTEC: seconds); the simulator
  runs in minutes, so a leg takes ``weight / 60`` minutes for ``s``.
* distance (what ``cost_per_km`` charges): the weight itself, in the file's unit. For ORTEC a "km" of cost is
  a second of driving, so ``cost_per_km: 1, cost_per_hour: 0`` makes a day's cost the competition's objective
  (total driving duration in seconds).

Nodes: node ``i`` is row ``i`` of the matrix (VRPLIB node ``k`` is node ``k - 1``). The depot is the file's
``DEPOT_SECTION`` (ORTEC: node 0, the file's node 1) or row 0 of an ``.npy`` / ``.csv``; every other node is
an address (the file's customers). Node ``x``, ``y`` are the file's ``NODE_COORD_SECTION`` as given (for
drawing and the hotspot kernels, whose radius is then in those units); an ``.npy`` / ``.csv`` matrix has no
coordinates, so they are the classical multidimensional scaling of the symmetrised weights. No congestion
unless ``graph.congestion`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import vrplib

from lastmile_env.config import ConfigError, GraphConfig, resolve_graph_path
from lastmile_env.network import Network, register

__all__ = ["MatrixData", "MatrixError", "matrix_network", "read_matrix"]

MINUTES_PER_UNIT = {"s": 1.0 / 60.0, "min": 1.0}


class MatrixError(ValueError):
    """A matrix file is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class MatrixData:
    """A matrix file as read: ``weights`` (N, N) as given, node coordinates (N, 2), the depot rows, and (for
    a VRPLIB file) everything ``vrplib.read_instance`` read (demands, time windows, service times...)."""

    weights: np.ndarray
    xy: np.ndarray
    depots: tuple[int, ...]
    instance: dict[str, Any] = field(default_factory=dict)


def read_matrix(path: str | Path) -> MatrixData:
    """Read a VRPLIB file with ``EDGE_WEIGHT_TYPE: EXPLICIT`` (any ``EDGE_WEIGHT_FORMAT`` vrplib expands), an
    ``.npy`` array or a ``.csv`` of numbers (no header), and check the matrix: square, finite, >= 0, zero
    diagonal."""
    path = Path(path)
    if not path.is_file():
        raise MatrixError(f"matrix file not found: {path}")
    suffix = path.suffix.lower()
    instance: dict[str, Any] = {}
    xy: np.ndarray | None = None
    depots: tuple[int, ...] = (0,)
    try:
        if suffix == ".npy":
            weights = np.load(path, allow_pickle=False)
        elif suffix == ".csv":
            weights = np.loadtxt(path, delimiter=",", dtype=float, ndmin=2)
        else:
            instance = vrplib.read_instance(path, compute_edge_weights=False)
    except Exception as exc:  # numpy and vrplib raise assorted errors for a file they cannot parse
        raise MatrixError(f"{path}: cannot read a matrix ({type(exc).__name__}: {exc})") from None
    if instance:
        kind = str(instance.get("edge_weight_type", "")).upper()
        if kind != "EXPLICIT" or "edge_weight" not in instance:
            raise MatrixError(
                f"{path}: EDGE_WEIGHT_TYPE is {kind or 'missing'}, not EXPLICIT with an EDGE_WEIGHT_SECTION "
                "(for coordinates use graph kind 'plane')"
            )
        weights = instance["edge_weight"]
        if "node_coord" in instance:
            xy = np.asarray(instance["node_coord"], dtype=float)
        depots = tuple(int(d) for d in np.atleast_1d(instance.get("depot", [0]))) or (0,)
    weights = _checked(np.asarray(weights), path)
    n = len(weights)
    if xy is None:
        xy = _embedding(weights)
    elif xy.shape != (n, 2) or not np.isfinite(xy).all():
        raise MatrixError(f"{path}: NODE_COORD_SECTION has shape {xy.shape}, expected ({n}, 2) finite values")
    bad_depot = [d for d in depots if not 0 <= d < n]
    if bad_depot:
        raise MatrixError(f"{path}: depot {bad_depot[0] + 1} is not a node of the {n}-node matrix")
    return MatrixData(weights, xy, depots, instance)


def _checked(weights: np.ndarray, path: Path) -> np.ndarray:
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or len(weights) < 2:
        raise MatrixError(
            f"{path}: the matrix must be square with at least 2 nodes, got shape {weights.shape}"
        )
    if not np.issubdtype(weights.dtype, np.number) or np.issubdtype(weights.dtype, np.complexfloating):
        raise MatrixError(f"{path}: the matrix must hold real numbers, got {weights.dtype}")
    out = weights.astype(np.float64)
    bad = np.argwhere(~(np.isfinite(out) & (out >= 0)))
    if len(bad):
        i, j = bad[0]
        raise MatrixError(f"{path}: entry [{i}, {j}] must be finite and >= 0, got {out[i, j]!r}")
    diag = np.flatnonzero(np.diag(out) != 0)
    if diag.size:
        i = int(diag[0])
        raise MatrixError(
            f"{path}: the diagonal must be 0 (a node to itself), got {out[i, i]!r} at [{i}, {i}]"
        )
    return out


def _embedding(weights: np.ndarray) -> np.ndarray:
    """Plane coordinates whose distances approximate the symmetrised weights (classical MDS), for drawing."""
    d = 0.5 * (weights + weights.T)
    n = len(d)
    centre = np.eye(n) - 1.0 / n
    gram = -0.5 * centre @ (d**2) @ centre
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:2]
    xy = vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))
    flip = np.sign(xy[np.argmax(np.abs(xy), axis=0), [0, 1]])  # a fixed sign per axis (eigh's is arbitrary)
    return np.asarray(xy * np.where(flip == 0, 1.0, flip))


def matrix_network(data: MatrixData, unit: str) -> Network:
    """The matrix as a :class:`Network`: node ``i`` = row ``i`` at ``data.xy[i]``, time = weight in
    ``unit`` converted to minutes, distance = weight as given."""
    if unit not in MINUTES_PER_UNIT:
        raise MatrixError(f"unit must be one of {', '.join(MINUTES_PER_UNIT)}, got {unit!r}")
    graph = nx.DiGraph()
    for i, (x, y) in enumerate(data.xy.tolist()):
        graph.add_node(i, x=x, y=y)
    time_min = data.weights * MINUTES_PER_UNIT[unit]
    return Network(graph, time_min=time_min, dist_km=data.weights.copy(), depots=data.depots)


@register("matrix")
def explicit_matrix_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: matrix``: the matrix of ``graph.path``, its weights in ``graph.unit``."""
    assert cfg.path is not None and cfg.unit is not None  # checked by the config
    path = resolve_graph_path(cfg.path)
    if path is None:
        raise ConfigError(f"graph.path: matrix file not found: {cfg.path}")
    return matrix_network(read_matrix(path), cfg.unit)
