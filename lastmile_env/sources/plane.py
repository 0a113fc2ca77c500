"""Points in a plane (``graph.kind: plane``): coordinate-only data with a driving speed.

For data that gives places as x, y rather than a road map or a matrix: Solomon and Gehring-Homberger VRPTW
files, VRPLIB files with a ``NODE_COORD_SECTION``, meal-delivery instances or route logs exported as a CSV
of ``x,y`` (optional ``depot`` column). The coordinates are in a stated unit (``graph.unit``: ``m`` or
``km``); the distance between two places is the ``graph.metric`` (``euclidean``, or ``manhattan`` for a
street grid) of their coordinates in km, and the time is that distance at ``graph.speed_kmh``. Every leg goes
straight (the matrix is used as computed, no road graph), so no file needs converting by hand.

Centers: the file's depot (a Solomon file's first customer row, a VRPLIB ``DEPOT_SECTION``, the CSV rows with
``depot`` 1) unless the scenario names ``depots.nodes`` or sets ``depots.count``; a CSV without a ``depot``
column gets ``depots.count`` centers placed like on any graph. Node ids are row indices from 0 (a VRPLIB node
``k`` is node ``k - 1``).
"""

from __future__ import annotations

import csv
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import vrplib

from lastmile_env.config import ConfigError, GraphConfig, resolve_graph_path
from lastmile_env.network import Network, register

__all__ = ["Points", "plane_matrix", "plane_network", "read_points"]

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}


class PointsError(ValueError):
    """A coordinate file is missing or malformed; the message names the file and the row."""


@dataclass(frozen=True, eq=False)
class Points:
    """Places read from a file: ``xy`` (N, 2) in the file's unit and the rows it marks as depots (if any)."""

    xy: np.ndarray
    depots: tuple[int, ...] | None


def plane_matrix(
    xy_km: np.ndarray, speed_kmh: float, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """``(minutes, km)`` between points ``xy_km`` (N, 2) by ``metric`` at ``speed_kmh``."""
    diff = xy_km[:, None, :] - xy_km[None, :, :]
    if metric == "euclidean":
        km = np.sqrt((diff**2).sum(axis=2))
    elif metric == "manhattan":
        km = np.abs(diff).sum(axis=2)
    else:
        raise ValueError(f"unknown metric {metric!r} (expected euclidean or manhattan)")
    return km * (60.0 / speed_kmh), km


def plane_network(
    xy_km: np.ndarray, speed_kmh: float, metric: str = "euclidean", depots: tuple[Hashable, ...] | None = None
) -> Network:
    """The places ``xy_km`` (node ``i`` at row ``i``, no road edges) with their exact plane matrix."""
    xy_km = np.asarray(xy_km, dtype=float)
    if xy_km.ndim != 2 or xy_km.shape[1] != 2 or len(xy_km) < 2:
        raise ValueError(f"a plane needs at least 2 points with x, y, got shape {xy_km.shape}")
    if not np.isfinite(xy_km).all():
        raise ValueError("plane coordinates must be finite")
    if not speed_kmh > 0:
        raise ValueError(f"speed_kmh must be > 0, got {speed_kmh}")
    graph = nx.DiGraph()
    for i, (x, y) in enumerate(xy_km.tolist()):
        graph.add_node(i, x=x, y=y)
    time_min, dist_km = plane_matrix(xy_km, speed_kmh, metric)
    return Network(graph, time_min=time_min, dist_km=dist_km, depots=depots)


def read_points(path: str | Path) -> Points:
    """Coordinates from a CSV (``x,y[,depot]``), a Solomon / Gehring-Homberger file or a VRPLIB file."""
    path = Path(path)
    if not path.is_file():
        raise PointsError(f"coordinate file not found: {path}")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    try:
        head = path.read_text(errors="replace")[:2000]
    except OSError as exc:
        raise PointsError(f"{path}: cannot read: {exc}") from None
    if "VEHICLE" in head and "CUSTOMER" in head:  # Solomon layout
        from lastmile_env.sources.solomon import load_instance  # the Solomon reader (checks the whole file)

        inst = load_instance(path)
        return Points(inst.xy, (0,))
    try:
        raw = vrplib.read_instance(path, compute_edge_weights=False)
    except Exception as exc:  # vrplib raises assorted errors for a file that is not VRPLIB
        raise PointsError(
            f"{path}: not a CSV, Solomon or VRPLIB file ({type(exc).__name__}: {exc})"
        ) from None
    if "node_coord" not in raw:
        raise PointsError(
            f"{path}: has no NODE_COORD_SECTION (for an explicit matrix use graph kind 'matrix')"
        )
    xy = np.asarray(raw["node_coord"], dtype=float)
    depots = tuple(int(d) for d in np.atleast_1d(raw.get("depot", [0])))
    return Points(xy, depots or (0,))


def _read_csv(path: Path) -> Points:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("x", "y") if c not in columns]
        if missing:
            raise PointsError(f"{path}: needs columns x and y (missing {', '.join(missing)}; has {columns})")
        xy: list[tuple[float, float]] = []
        depots: list[int] = []
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            try:
                xy.append((float(row["x"]), float(row["y"])))
            except ValueError:
                raise PointsError(
                    f"{path}:{line}: x, y must be numbers, got {row['x']!r}, {row['y']!r}"
                ) from None
            flag = row.get("depot", "").lower()
            if flag not in _TRUE | _FALSE:
                raise PointsError(f"{path}:{line}: depot must be 1/0 or true/false, got {row['depot']!r}")
            if flag in _TRUE:
                depots.append(len(xy) - 1)
    if "depot" in columns and not depots:
        raise PointsError(f"{path}: the depot column marks no row as a depot")
    return Points(np.array(xy, dtype=float).reshape(-1, 2), tuple(depots) if "depot" in columns else None)


@register("plane")
def points_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: plane``: the places of ``graph.path`` in ``graph.unit`` at ``graph.speed_kmh``."""
    assert (
        cfg.path is not None and cfg.unit is not None and cfg.speed_kmh is not None
    )  # checked by the config
    path = resolve_graph_path(cfg.path)
    if path is None:
        raise ConfigError(f"graph.path: coordinate file not found: {cfg.path}")
    points = read_points(path)
    km_per_unit = {"m": 0.001, "km": 1.0}[cfg.unit]
    return plane_network(points.xy * km_per_unit, cfg.speed_kmh, cfg.metric, points.depots)
