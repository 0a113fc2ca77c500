"""Frames of a simulator state: road graph, centers, vehicles with their planned routes, and the orders.

The static part (roads, centers, legend) is drawn once per :class:`Renderer` and kept as a saved background;
each frame restores it and draws only the dynamic artists on top (blitting on the Agg canvas), so the cost
of a frame does not grow with the number of roads.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import OrderStatus, Vehicle
from lastmile_env.sim.world import World

_DPI = 100
_EMPTY = np.empty((0, 2))
_MAX_CACHED_PATHS = 100_000

# Order markers, bottom to top: (label, status or "late"/"on_time", marker, colour, size in points^2).
_ORDER_STYLES: tuple[tuple[str, str, str, str, float], ...] = (
    ("delivered on time", "on_time", "o", "#2ca02c", 9.0),
    ("delivered late", "late", "o", "#9467bd", 9.0),
    ("rejected", "rejected", "x", "#7f7f7f", 22.0),
    ("assigned", "assigned", "o", "#ff7f0e", 22.0),
    ("on board", "on_board", "o", "#1f77b4", 22.0),
    ("pending", "pending", "o", "#d62728", 30.0),
)
_RING_SIZE = 150.0  # the ring around a pending order
# Vehicle markers by mode: (legend label, marker, size in points^2, route line style).
_MODE_STYLES: dict[str, tuple[str, str, float, str]] = {
    "van": ("van", "^", 110.0, "solid"),
    "cargo_bike": ("cargo bike", "D", 70.0, "solid"),
    "drone": ("drone (flies straight)", "*", 190.0, "dashed"),
}


def _vehicle_colours(n: int) -> np.ndarray:
    """One RGBA colour per vehicle from qualitative colormaps, avoiding the order-status hues first.

    tab10's cyan, pink, brown and olive, then tab20b dark shades before lighter ones; cycles past 24.
    """
    tab10, tab20b = colormaps["tab10"], colormaps["tab20b"]
    palette = [tab10(i) for i in (9, 6, 5, 8)]
    palette += [tab20b(4 * hue + shade) for shade in (0, 2, 1, 3) for hue in range(5)]
    return np.array([palette[i % len(palette)] for i in range(n)], dtype=float).reshape(n, 4)


def _clock(start_hour: float, now_min: float) -> str:
    """Wall-clock time HH:MM of a simulator time (minutes since a shift starting at ``start_hour``)."""
    total = round(start_hour * 60.0 + now_min)
    return f"{(total // 60) % 24:02d}:{total % 60:02d}"


def _legend_entries(scale: float, modes: Sequence[str]) -> tuple[list[Any], list[str]]:
    """Proxy handles and labels of the legend (one vehicle entry per mode of a mixed fleet); a tuple handle
    (pending: a dot in a ring) is overlaid."""
    grey = "#888888"
    handles: list[Any] = [Line2D([], [], ls="", marker="s", color="black", ms=8 * scale)]
    labels = ["center"]
    for mode in modes:
        label, marker, size, _ = _MODE_STYLES[mode]
        ms = 8 * scale * (size / _MODE_STYLES["van"][2]) ** 0.5
        handles.append(Line2D([], [], ls="", marker=marker, mfc=grey, mec="black", ms=ms))
        labels.append("vehicle" if list(modes) == ["van"] else label)
    handles.append(Line2D([], [], color=grey, lw=1.6 * scale))
    labels.append("planned route")
    for label, key, marker, colour, _ in reversed(_ORDER_STYLES):
        dot = Line2D([], [], ls="", marker=marker, color=colour, ms=5 * scale)
        if key == "pending":
            ring = Line2D([], [], ls="", marker="o", mfc="none", mec=colour, mew=1.2 * scale, ms=11 * scale)
            handles.append((ring, dot))
        else:
            handles.append(dot)
        labels.append(label)
    return handles, labels


@dataclass(frozen=True)
class Frame:
    """What one frame shows over the map: routes, orders by status, vehicles and the title line."""

    routes: Sequence[np.ndarray]  # (V,) each vehicle's remaining route as (n, 2) km points (n < 2: none)
    orders: Mapping[str, np.ndarray]  # status key of _ORDER_STYLES -> (n, 2) km; "pending" gets a ring
    vehicles_xy: np.ndarray  # (V, 2) km
    title: str


class MapCanvas:
    """A map drawn once (roads, centers, legend) and the frames drawn over it, as ``(H, W, 3)`` uint8 images
    of ``size_px = (W, H)`` pixels (matplotlib's Agg backend, no display needed).

    ``vehicle_modes`` gives each vehicle's mode (van, cargo_bike, drone): its marker and route style.
    """

    def __init__(
        self,
        road_segments: Sequence[np.ndarray],
        centers_xy: np.ndarray,
        vehicle_modes: Sequence[str],
        size_px: tuple[int, int] = (800, 800),
    ) -> None:
        self.size_px = (int(size_px[0]), int(size_px[1]))
        width, height = self.size_px
        scale = float(np.clip(min(width, height) / 800.0, 0.5, 2.0))
        self._modes = list(vehicle_modes)
        self._colours = _vehicle_colours(len(self._modes))
        # the fleet's modes, in the order of _MODE_STYLES, and which vehicles each one draws
        modes = [m for m in _MODE_STYLES if m in self._modes]
        self._by_mode = {m: [i for i, mode in enumerate(self._modes) if mode == m] for m in modes}

        self._fig: Figure | None = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        self._canvas: FigureCanvasAgg | None = FigureCanvasAgg(self._fig)
        fig = self._fig
        fig.patch.set_facecolor("white")
        ax = fig.add_axes((0.01, 0.075, 0.98, 0.87))
        ax.set_aspect("equal", adjustable="box")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#bbbbbb")
        self._ax = ax

        # Static layer: roads, centers, legend.
        roads = LineCollection(list(road_segments), colors="#d0d0d0", linewidths=0.6 * scale, zorder=1)
        ax.add_collection(roads)
        centers = np.asarray(centers_xy, dtype=float).reshape(-1, 2)
        ax.scatter(centers[:, 0], centers[:, 1], marker="s", s=260 * scale**2, c="black", zorder=2)
        points = np.concatenate(
            [centers, *(np.asarray(seg, dtype=float).reshape(-1, 2) for seg in road_segments)]
        )
        xs = points[:, 0] if len(points) else np.zeros(1)
        ys = points[:, 1] if len(points) else np.zeros(1)
        pad = 0.03 * max(float(np.ptp(xs)), float(np.ptp(ys)), 1e-3)
        ax.set_xlim(float(xs.min()) - pad, float(xs.max()) + pad)
        ax.set_ylim(float(ys.min()) - pad, float(ys.max()) + pad)
        ax.autoscale(False)

        # Dynamic layer, drawn per frame in this order: routes, orders, vehicles, title.
        self._routes = LineCollection([], linewidths=1.6 * scale, alpha=0.85, animated=True, zorder=3)
        ax.add_collection(self._routes)
        self._order_artists: dict[str, PathCollection] = {}
        for _, key, marker, colour, size in _ORDER_STYLES:
            self._order_artists[key] = ax.scatter(
                _EMPTY[:, 0],
                _EMPTY[:, 1],
                marker=marker,
                s=size * scale**2,
                c=colour,
                linewidths=1.2 * scale if marker == "x" else 0.0,
                animated=True,
                zorder=4,
            )
        self._ring = ax.scatter(
            _EMPTY[:, 0],
            _EMPTY[:, 1],
            marker="o",
            s=_RING_SIZE * scale**2,
            facecolors="none",
            edgecolors="#d62728",
            linewidths=1.2 * scale,
            animated=True,
            zorder=4,
        )
        self._vehicles = {
            mode: ax.scatter(
                _EMPTY[:, 0],
                _EMPTY[:, 1],
                marker=_MODE_STYLES[mode][1],
                s=_MODE_STYLES[mode][2] * scale**2,
                edgecolors="black",
                linewidths=0.7 * scale,
                animated=True,
                zorder=5,
            )
            for mode in modes
        }
        self._title: Text = fig.text(
            0.5, 0.975, "", ha="center", va="center", fontsize=11 * scale, family="monospace", animated=True
        )

        handles, labels = _legend_entries(scale, modes)
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=5,
            fontsize=8 * scale,
            frameon=False,
            handletextpad=0.3,
            columnspacing=1.0,
        )

        self._canvas.draw()
        self._background = self._canvas.copy_from_bbox(fig.bbox)

    # ------------------------------------------------------------------------------------------ frames
    def draw(self, frame: Frame) -> np.ndarray:
        """``frame`` over the map as an ``(H, W, 3)`` uint8 array."""
        if self._fig is None or self._canvas is None:
            raise RuntimeError("the renderer is closed")
        canvas, fig, ax = self._canvas, self._fig, self._ax

        keep = [i for i, seg in enumerate(frame.routes) if len(seg) >= 2]
        self._routes.set_segments([frame.routes[i] for i in keep])
        self._routes.set_color([tuple(c) for c in self._colours[keep]])
        styles: list[Any] = [_MODE_STYLES[self._modes[i]][3] for i in keep]
        self._routes.set_linestyle(styles or "solid")
        for _, key, _, _, _ in _ORDER_STYLES:
            xy = frame.orders.get(key)
            self._order_artists[key].set_offsets(xy if xy is not None and len(xy) else _EMPTY)
        pending = frame.orders.get("pending")
        self._ring.set_offsets(pending if pending is not None and len(pending) else _EMPTY)
        for mode, ids in self._by_mode.items():
            self._vehicles[mode].set_offsets(frame.vehicles_xy[ids] if ids else _EMPTY)
            self._vehicles[mode].set_facecolor([tuple(c) for c in self._colours[ids]])
        self._title.set_text(frame.title)

        canvas.restore_region(self._background)
        ax.draw_artist(self._routes)
        for _, key, _, _, _ in _ORDER_STYLES:
            ax.draw_artist(self._order_artists[key])
        ax.draw_artist(self._ring)
        for artist in self._vehicles.values():
            ax.draw_artist(artist)
        fig.draw_artist(self._title)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        """Release the figure (idempotent); the renderer cannot draw afterwards."""
        if self._fig is not None:
            self._fig.clear()
        self._fig = None
        self._canvas = None
        self._background = None


class Renderer:
    """Draws a simulator state: the ``MapCanvas`` of its ``world`` and each frame built from a simulator.

    One renderer serves every simulator of its ``world``; ``rgb_array`` returns an ``(H, W, 3)`` uint8 image
    of ``size_px = (W, H)`` pixels.
    """

    def __init__(self, world: World, size_px: tuple[int, int] = (800, 800)) -> None:
        self.world = world
        self._node_xy: dict[Hashable, tuple[float, float]] = {
            n: (float(d["x"]), float(d["y"])) for n, d in world.graph.nodes(data=True)
        }
        self._paths: dict[tuple[int, int, int], np.ndarray] = {}
        self.canvas = MapCanvas(
            self._edge_segments(),
            world.xy_km[: world.n_depots],
            [v.mode_name for v in world.vehicles],
            size_px,
        )
        self.size_px = self.canvas.size_px

    @property
    def _fig(self) -> Figure | None:
        return self.canvas._fig

    def rgb_array(self, sim: Simulator) -> np.ndarray:
        """The frame of ``sim``'s current state as an ``(H, W, 3)`` uint8 array."""
        if self._fig is None:
            raise RuntimeError("the renderer is closed")
        world = self.world
        groups: dict[str, list[int]] = {key: [] for _, key, _, _, _ in _ORDER_STYLES}
        for o in sim.orders[: sim.n_arrived]:
            status = o.status
            if status == OrderStatus.DELIVERED:
                groups["on_time" if o.on_time else "late"].append(o.loc)
            elif status == OrderStatus.PENDING:
                groups["pending"].append(o.loc)
            elif status == OrderStatus.ASSIGNED:
                groups["assigned"].append(o.loc)
            elif status == OrderStatus.ON_BOARD:
                groups["on_board"].append(o.loc)
            else:
                groups["rejected"].append(o.loc)
        cost = sim.cost().total
        delivered = sim.n_on_time + sim.n_late
        clock = _clock(world.config.shift_start_hour, sim.now)
        frame = Frame(
            routes=[self._route_xy(v) for v in sim.vehicles],
            orders={key: world.xy_km[locs] for key, locs in groups.items() if locs},
            vehicles_xy=world.xy_km[[v.node for v in sim.vehicles]].reshape(-1, 2),
            title=f"{clock}   orders {sim.n_arrived}   delivered {delivered}   "
            f"on time {sim.n_on_time}   rejected {sim.n_rejected}   cost {cost:,.1f}",
        )
        return self.canvas.draw(frame)

    def close(self) -> None:
        """Release the figure (idempotent); the renderer cannot draw afterwards."""
        self.canvas.close()
        self._paths.clear()

    # ----------------------------------------------------------------------------------------- helpers
    def _edge_segments(self) -> list[np.ndarray]:
        """One straight segment per road (both directions of a two-way street drawn once)."""
        seen: set[tuple[Hashable, Hashable]] = set()
        segments = []
        for u, v in self.world.graph.edges():
            if u == v or (v, u) in seen or (u, v) in seen:
                continue
            seen.add((u, v))
            segments.append(np.array([self._node_xy[u], self._node_xy[v]]))
        return segments

    def _path_xy(self, i: int, j: int, mode: int) -> np.ndarray:
        """Coordinates of a vehicle of ``mode``'s path between key indices ``i`` and ``j``: its fastest path
        on its roads, or a straight line for a drone (cached)."""
        xy = self._paths.get((mode, i, j))
        if xy is None:
            nodes: Sequence[Hashable] = self.world.path_nodes(i, j, mode)
            xy = np.array([self._node_xy[n] for n in nodes], dtype=float).reshape(-1, 2)
            if len(self._paths) >= _MAX_CACHED_PATHS:
                self._paths.clear()
            self._paths[(mode, i, j)] = xy
        return xy

    def _route_xy(self, v: Vehicle) -> np.ndarray:
        """The vehicle's remaining plan along its paths: its free node, its planned stops, then home.

        ``v.node`` is where the current stop (or the return home) ends, so the plan starts there.
        """
        keys = [v.node]
        if v.current is not None and v.current.loc != keys[-1]:
            keys.append(v.current.loc)
        for stop in v.route:
            if stop.loc != keys[-1]:
                keys.append(stop.loc)
        if keys[-1] != v.home:
            keys.append(v.home)
        if len(keys) < 2:
            return _EMPTY
        parts = [self._path_xy(a, b, v.mode) for a, b in pairwise(keys)]
        return np.concatenate(parts)
