"""Episode replays: one simulated day written as a compact file, enough to redraw it without re-running it.

``record_episode(sim)`` reads a finished :class:`~lastmile_env.sim.simulator.Simulator` (its ``events``,
``legs`` / ``leg_stops`` and ``eta_log``, the orders' outcomes and the map the legs were driven on) into a
plain dict; ``save_record`` / ``load_record`` write and read it as gzip JSON (``*.replay.json.gz``, the
format is documented in ``docs/replay.md``). ``summary_from_record`` recomputes the episode's outcome from
the recorded legs and events alone (the round-trip proof), and :class:`Timeline` answers where every vehicle
and order is at any minute, for the animation (``replay_video``) and the interactive page (``replay_page``).
The simulator knows nothing of this module.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lastmile_env.jsonable import jsonable
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import StopKind

FORMAT = "lastmile-replay"
VERSION = 1
SUFFIX = ".replay.json.gz"

# Event kinds that end a stop (the leg's service is over at the event's time), by the kind of stop they end.
_STOP_EVENTS = {
    "pickup": StopKind.PICKUP,
    "delivery": StopKind.DELIVERY,
    "failed_attempt": StopKind.DELIVERY,  # customer absent: the parcel stays on board
    "returned": StopKind.DELIVERY,  # failed for good: unloaded back at the center
}

# What a recorded day's columns hold; load_record checks that each is present with one value per row.
_ORDER_COLUMNS = (
    "arrival_min", "center", "address", "size", "ready_min", "earliest_min", "due_min", "option", "is_return",
    "status", "vehicle", "decided_min", "promised_eta_min", "served_min", "pod_how", "attempts",
)  # fmt: skip
_LEG_COLUMNS = (
    "vehicle", "src", "dst", "depart_min", "arrive_min", "free_min", "km", "factor", "stop_order",
    "stop_kind", "outcome", "path",
)  # fmt: skip
_VEHICLE_COLUMNS = (
    "type_name",
    "mode_name",
    "home",
    "capacity",
    "cost_per_km",
    "cost_per_hour",
    "shift_end_min",
)
_EVENT_COLUMNS = ("time_min", "kind", "order", "vehicle")


class ReplayError(ValueError):
    """A record cannot be written or read (not a finished day, not a replay file, a broken file)."""


# ------------------------------------------------------------------------------------------------ recording
def record_episode(sim: Simulator, policy: str = "", seed: int | None = None) -> dict[str, Any]:
    """The finished day of ``sim`` as a replay record (a JSON-able dict; see ``docs/replay.md``)."""
    if not sim.done:
        raise ReplayError("the simulator's day is not finished: run it to the end before recording it")
    world = sim.world
    cfg = world.config
    graph_nodes: list[Hashable] = list(world.graph.nodes)
    node_index = {n: i for i, n in enumerate(graph_nodes)}
    node_xy = [[float(d["x"]), float(d["y"])] for _, d in world.graph.nodes(data=True)]
    roads = sorted(
        {
            (min(node_index[u], node_index[v]), max(node_index[u], node_index[v]))
            for u, v in world.graph.edges()
        }
    )
    key_nodes = [node_index[n] for n in world.matrix.nodes]

    free_min, outcome = _stop_ends(sim)
    paths: list[list[int]] = []
    path_ids: dict[tuple[int, int, int], int] = {}
    legs: dict[str, list[Any]] = {c: [] for c in _LEG_COLUMNS}
    first_door: dict[int, int] = {}  # order -> the address of its first delivery attempt
    for k, ((vid, src, dst, depart, arrive, factor), stop) in enumerate(
        zip(sim.legs, sim.leg_stops, strict=True)
    ):
        mode = sim.vehicles[vid].mode
        key = (mode, src, dst)
        if key not in path_ids:
            path_ids[key] = len(paths)
            paths.append([node_index[n] for n in world.path_nodes(src, dst, mode)])
        if stop is not None and stop.kind == StopKind.DELIVERY:
            first_door.setdefault(stop.order, dst)
        row = (
            vid, src, dst, depart, arrive, free_min[k], world.leg_km(src, dst, mode), factor,
            -1 if stop is None else stop.order, "" if stop is None else stop.kind.name.lower(), outcome[k],
            path_ids[key],
        )  # fmt: skip
        for column, value in zip(_LEG_COLUMNS, row, strict=True):
            legs[column].append(value)

    orders: dict[str, list[Any]] = {c: [] for c in _ORDER_COLUMNS}
    for o in sim.orders[: sim.n_arrived]:
        address = o.center if o.is_return else first_door.get(o.id, o.loc)
        row2 = (
            o.arrival_min, o.center, address, o.size, o.ready_min, o.earliest_min, o.due_min,
            o.option.name.lower(), o.is_return, o.status.name.lower(), o.vehicle, o.decided_min,
            o.promised_eta_min, o.served_min, o.pod_how, o.attempts,
        )  # fmt: skip
        for column, value in zip(_ORDER_COLUMNS, row2, strict=True):
            orders[column].append(value)

    vehicles = {
        "type_name": [v.type_name for v in sim.vehicles],
        "mode_name": [v.mode_name for v in sim.vehicles],
        "home": [v.home for v in sim.vehicles],
        "capacity": [v.capacity for v in sim.vehicles],
        "cost_per_km": [v.cost_per_km for v in sim.vehicles],
        "cost_per_hour": [v.cost_per_hour for v in sim.vehicles],
        "shift_end_min": [v.shift_end_min for v in sim.vehicles],
    }
    events = {
        "time_min": [e.time_min for e in sim.events],
        "kind": [e.kind for e in sim.events],
        "order": [e.order for e in sim.events],
        "vehicle": [e.vehicle for e in sim.events],
    }
    late_fixed, late_per_min = world.late_costs
    record = {
        "format": FORMAT,
        "version": VERSION,
        "scenario": cfg.name,
        "policy": policy,
        "seed": seed,
        "routing": sim.routing,
        "shift_start_hour": cfg.shift_start_hour,
        "end_min": max([sim.now, *legs["free_min"], *legs["arrive_min"]]),
        "costs": {
            "late_fixed": late_fixed,
            "late_per_min": late_per_min,
            "reject_penalty": cfg.costs.reject_penalty,
            "failed_penalty": cfg.attempts.failed_penalty,
        },
        "map": {
            "node_xy_km": node_xy,
            "roads": [list(r) for r in roads],
            "key_nodes": key_nodes,
            "n_centers": world.n_depots,
            "lonlat_projection": world.graph.graph.get("lonlat_projection"),
        },
        "vehicles": vehicles,
        "orders": orders,
        "legs": legs,
        "paths": paths,
        "events": events,
        "etas": {
            "time_min": [t for t, _, _ in sim.eta_log],
            "order": [i for _, i, _ in sim.eta_log],
            "eta_min": [e for _, _, e in sim.eta_log],
        },
        "summary": sim.summary(),
    }
    return record


def _stop_ends(sim: Simulator) -> tuple[list[float], list[str]]:
    """For each leg, when its stop's service ended and how (the event that ended it: pickup, delivery,
    failed_attempt or returned; ``home`` and its arrival for the way home).

    A vehicle's stops of one order and kind end in the order they were driven to, so the k-th leg of
    (vehicle, order, kind) ends with the k-th such event."""
    ends: dict[tuple[int, int, StopKind], list[tuple[float, str]]] = defaultdict(list)
    for e in sim.events:
        if e.kind in _STOP_EVENTS:
            ends[(e.vehicle, e.order, _STOP_EVENTS[e.kind])].append((e.time_min, e.kind))
    taken: dict[tuple[int, int, StopKind], int] = defaultdict(int)
    free_min: list[float] = []
    outcome: list[str] = []
    for leg, stop in zip(sim.legs, sim.leg_stops, strict=True):
        if stop is None:
            free_min.append(leg[4])
            outcome.append("home")
            continue
        key = (leg[0], stop.order, stop.kind)
        found = ends[key]
        if taken[key] >= len(found):
            raise ReplayError(f"leg {len(free_min)} to order {stop.order}'s stop has no event ending it")
        time_min, kind = found[taken[key]]
        taken[key] += 1
        free_min.append(time_min)
        outcome.append(kind)
    return free_min, outcome


# ----------------------------------------------------------------------------------------------- files
def save_record(record: dict[str, Any], path: str | Path) -> Path:
    """Write a record as gzip JSON (deterministic bytes: no timestamp in the gzip header)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(record, infinity="string"), separators=(",", ":"), allow_nan=False)
    out.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    return out


def _number(value: Any) -> float:
    """A recorded float back: ``null`` is nan, ``"inf"`` / ``"-inf"`` the infinities."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return float(value)
    return float(value)


def load_record(path: str | Path) -> dict[str, Any]:
    """Read and check a record written by ``save_record``; ReplayError names what is wrong."""
    source = Path(path)
    if not source.is_file():
        raise ReplayError(f"replay record not found: {source}")
    try:
        record = json.loads(gzip.decompress(source.read_bytes()))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReplayError(f"{source}: not a replay record (gzip JSON): {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ReplayError(f"{source}: not a replay record (no 'format': '{FORMAT}')")
    if record.get("version") != VERSION:
        raise ReplayError(f"{source}: replay format version {record.get('version')!r}, this reads {VERSION}")
    for table, columns in (
        ("orders", _ORDER_COLUMNS),
        ("legs", _LEG_COLUMNS),
        ("vehicles", _VEHICLE_COLUMNS),
        ("events", _EVENT_COLUMNS),
    ):
        data = record.get(table)
        if not isinstance(data, dict):
            raise ReplayError(f"{source}: the record has no '{table}' table")
        missing = [c for c in columns if not isinstance(data.get(c), list)]
        if missing:
            raise ReplayError(f"{source}: '{table}' lacks the column(s) {', '.join(missing)}")
        if len({len(data[c]) for c in columns}) > 1:
            raise ReplayError(f"{source}: the columns of '{table}' have different lengths")
    for key in ("map", "paths", "costs", "summary"):
        if key not in record:
            raise ReplayError(f"{source}: the record has no '{key}'")
    return record


# ------------------------------------------------------------------------------------------ round trip
def summary_from_record(record: dict[str, Any]) -> dict[str, float]:
    """The episode's outcome recomputed from the recorded legs and events alone: the counts (on time, late,
    rejected, failed, delivered), the cost by kind and the distance.

    Sums run in the simulator's order (per vehicle, leg by leg), so without routing-mode waits the numbers
    equal ``Simulator.summary()``'s to the last bit; a wait is charged in one piece here, in several there.
    """
    legs, events, orders, fleet = record["legs"], record["events"], record["orders"], record["vehicles"]
    costs = record["costs"]
    late_fixed, late_per_min = _number(costs["late_fixed"]), _number(costs["late_per_min"])
    n_vehicles = len(fleet["home"])
    dist_km = [0.0] * n_vehicles
    duty_min = [0.0] * n_vehicles
    waits: dict[int, list[float]] = defaultdict(list)  # routing mode: when each vehicle began to wait
    for t, kind, vid in zip(events["time_min"], events["kind"], events["vehicle"], strict=True):
        if kind == "wait":
            waits[vid].append(_number(t))
    next_wait = [0] * n_vehicles
    late_cost = 0.0
    for k, vid in enumerate(legs["vehicle"]):
        depart = _number(legs["depart_min"][k])
        # A wait is charged from the first wait after the last leg until the vehicle drives on.
        first = next_wait[vid]
        while next_wait[vid] < len(waits[vid]) and waits[vid][next_wait[vid]] <= depart:
            next_wait[vid] += 1
        if next_wait[vid] > first:
            duty_min[vid] += depart - waits[vid][first]
        dist_km[vid] += _number(legs["km"][k])
        duty_min[vid] += _number(legs["free_min"][k]) - depart
        # Lateness is charged as a leg to a customer starts; a failed attempt's is refunded, so only the
        # stop that served the customer counts (a return's collection, an order's delivery).
        o, outcome = legs["stop_order"][k], legs["outcome"][k]
        if outcome == ("pickup" if orders["is_return"][o] else "delivery"):
            begin, due = _number(orders["served_min"][o]), _number(orders["due_min"][o])
            late_cost += _late_cost(begin, due, late_fixed, late_per_min)
    distance = sum(km * _number(c) for km, c in zip(dist_km, fleet["cost_per_km"], strict=True))
    driver = sum(d * _number(c) / 60.0 for d, c in zip(duty_min, fleet["cost_per_hour"], strict=True))

    n_on_time = n_late = n_rejected = n_failed = 0
    reject_cost = failed_cost = 0.0
    reject_penalty, failed_penalty = _number(costs["reject_penalty"]), _number(costs["failed_penalty"])
    kinds_orders = list(zip(events["kind"], events["order"], strict=True))
    last_failure = {o: k for k, (kind, o) in enumerate(kinds_orders) if kind == "failed_attempt"}
    for k, (kind, o) in enumerate(kinds_orders):
        if kind == "delivery":
            if _number(orders["served_min"][o]) <= _number(orders["due_min"][o]) + 1e-9:
                n_on_time += 1
            else:
                n_late += 1
        elif kind == "reject":
            n_rejected += 1
            reject_cost += reject_penalty
        elif kind == "returned":
            n_failed += 1
        elif kind == "failed_attempt":
            lost = reject_penalty if last_failure[o] == k and orders["status"][o] == "failed" else 0.0
            failed_cost += failed_penalty + lost
    total = distance + driver + late_cost + reject_cost + failed_cost
    return {
        "delivered": n_on_time + n_late,
        "on_time": n_on_time,
        "late": n_late,
        "rejected": n_rejected,
        "failed": n_failed,
        "cost": total,
        "cost_distance": distance,
        "cost_driver_time": driver,
        "cost_lateness": late_cost,
        "cost_rejection": reject_cost,
        "cost_failures": failed_cost,
        "distance_km": sum(dist_km),
    }


def _late_cost(begin_min: float, due_min: float, late_fixed: float, late_per_min: float) -> float:
    """``kernels.late_cost`` in plain Python (the record is read without the compiled kernels)."""
    late = begin_min - due_min
    return 0.0 if late <= 1e-9 else late_fixed + late_per_min * late


# -------------------------------------------------------------------------------------------- timeline
# Order states drawn by the viewers, in drawing order (later on top).
ORDER_STATES = ("on_time", "late", "rejected", "failed", "assigned", "on_board", "pending")
MAX_PLAN_STOPS = 12  # a vehicle's plan as shown: its next stops until it is back home, at most this many
_EVENT_STATE = {"dispatch": "assigned", "reject": "rejected", "returned": "failed", "defer": "pending"}


@dataclass(frozen=True)
class VehicleAt:
    """A vehicle at one minute: where (km), what it does, and the stops it drives to next (as driven)."""

    xy_km: tuple[float, float]
    doing: str  # "idle", "driving to <stop>", "serving <stop>", "waiting", "heading home"
    next_stops: tuple[str, ...]  # its next stops (arrival time and stop) until it is back home


class Timeline:
    """A recorded day queried by the minute: where each vehicle is (moving along its leg's road path at
    the leg's average speed), what state each order is in, and the running counts and cost."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        m = record["map"]
        self.node_xy = np.asarray(m["node_xy_km"], dtype=float).reshape(-1, 2)
        self.key_xy = self.node_xy[np.asarray(m["key_nodes"], dtype=np.int64)]
        self.n_centers = int(m["n_centers"])
        self.end_min = _number(record["end_min"])
        self.start_hour = float(record["shift_start_hour"])
        fleet, legs, orders = record["vehicles"], record["legs"], record["orders"]
        self.n_vehicles = len(fleet["home"])
        self.n_orders = len(orders["arrival_min"])
        self.modes: list[str] = list(fleet["mode_name"])
        self.homes = [int(h) for h in fleet["home"]]
        paths = [self.node_xy[np.asarray(p, dtype=np.int64)] for p in record["paths"]]
        self._legs: list[list[int]] = [[] for _ in range(self.n_vehicles)]
        for k, vid in enumerate(legs["vehicle"]):
            self._legs[vid].append(k)
        self._departs = [[_number(legs["depart_min"][k]) for k in ks] for ks in self._legs]
        self._depart = [_number(t) for t in legs["depart_min"]]
        self._arrive = [_number(t) for t in legs["arrive_min"]]
        self._free = [_number(t) for t in legs["free_min"]]
        self._path: list[np.ndarray] = []
        self._cum: list[np.ndarray] = []  # cumulative length along each leg's path, 0..1
        for p in legs["path"]:
            xy = paths[p]
            seg = np.hypot(*np.diff(xy, axis=0).T) if len(xy) > 1 else np.zeros(0)
            cum = np.concatenate([[0.0], np.cumsum(seg)])
            self._path.append(xy)
            self._cum.append(cum / cum[-1] if cum[-1] > 0 else cum)
        # each order's state changes: (time, state), in the order they happened
        self._changes: list[list[tuple[float, str]]] = [
            [(_number(t), "pending")] for t in orders["arrival_min"]
        ]
        for t, kind, o in zip(
            record["events"]["time_min"], record["events"]["kind"], record["events"]["order"], strict=True
        ):
            state = _EVENT_STATE.get(kind)
            if kind == "pickup":
                state = "on_board"
            elif kind == "delivery":
                on_time = _number(orders["served_min"][o]) <= _number(orders["due_min"][o]) + 1e-9
                state = "on_time" if on_time else "late"
            if state is not None and o >= 0:
                self._changes[o].append((_number(t), state))
        self._change_times = [[t for t, _ in ch] for ch in self._changes]
        self.address_xy = self.key_xy[np.asarray(orders["address"], dtype=np.int64)].reshape(-1, 2)

    def clock(self, t_min: float) -> str:
        """Wall-clock HH:MM of a minute of the shift."""
        total = round(self.start_hour * 60.0 + t_min)
        return f"{(total // 60) % 24:02d}:{total % 60:02d}"

    def _leg_at(self, vid: int, t_min: float) -> int | None:
        """The vehicle's last leg that departed by ``t_min`` (None before its first)."""
        i = bisect_right(self._departs[vid], t_min) - 1
        return self._legs[vid][i] if i >= 0 else None

    def vehicle_xy(self, t_min: float) -> np.ndarray:
        """``(V, 2)`` km: each vehicle's position at ``t_min``."""
        out = np.empty((self.n_vehicles, 2))
        for vid in range(self.n_vehicles):
            out[vid] = self._position(vid, t_min)
        return out

    def _position(self, vid: int, t_min: float) -> np.ndarray:
        k = self._leg_at(vid, t_min)
        if k is None:
            return self.key_xy[self.homes[vid]]
        depart, arrive = self._depart[k], self._arrive[k]
        path, cum = self._path[k], self._cum[k]
        if t_min >= arrive or len(path) < 2 or arrive <= depart:
            return path[-1]
        share = (t_min - depart) / (arrive - depart)
        return np.array([np.interp(share, cum, path[:, 0]), np.interp(share, cum, path[:, 1])])

    def vehicle_at(self, vid: int, t_min: float) -> VehicleAt:
        """Where the vehicle is, what it does and where it drives next, at ``t_min``."""
        legs = self.record["legs"]
        k = self._leg_at(vid, t_min)
        xy = self._position(vid, t_min)
        if k is None:
            doing = "idle at its center"
        elif t_min < self._arrive[k]:
            doing = f"driving to {self._stop_name(k)}"
        elif t_min < self._free[k] and legs["stop_order"][k] >= 0:
            doing = f"serving {self._stop_name(k)}"
        else:
            doing = "idle" if legs["stop_order"][k] < 0 else f"done: {self._stop_name(k)}"
        upcoming: list[int] = []  # the legs still to drive until it is next back home
        for j in self._legs[vid]:
            if self._depart[j] > t_min or (j == k and t_min < self._arrive[j]):
                upcoming.append(j)
                if legs["stop_order"][j] < 0 or len(upcoming) == MAX_PLAN_STOPS:
                    break
        stops = tuple(f"{self.clock(self._arrive[j])} {self._stop_name(j)}" for j in upcoming)
        return VehicleAt((float(xy[0]), float(xy[1])), doing, stops)

    def route_xy(self, vid: int, t_min: float) -> np.ndarray:
        """``(n, 2)`` km: the road still ahead of the vehicle at ``t_min`` until it is next back home (the
        rest of its leg under way, then the legs it drove next); empty when it has none."""
        k = self._leg_at(vid, t_min)
        parts: list[np.ndarray] = []
        if k is not None and t_min < self._arrive[k]:
            share = (t_min - self._depart[k]) / (self._arrive[k] - self._depart[k])
            ahead = self._cum[k] > share
            parts += [self._position(vid, t_min)[None, :], self._path[k][ahead]]
            if self.record["legs"]["stop_order"][k] < 0:
                return np.concatenate(parts)
        for j in self._legs[vid]:
            if self._depart[j] > t_min:
                parts.append(self._path[j])
                if self.record["legs"]["stop_order"][j] < 0:
                    break
        return np.concatenate(parts) if parts else np.empty((0, 2))

    def _stop_name(self, k: int) -> str:
        legs = self.record["legs"]
        o = legs["stop_order"][k]
        return "home" if o < 0 else f"{legs['stop_kind'][k]} of order {o}"

    def order_states(self, t_min: float) -> list[str | None]:
        """Each order's state at ``t_min`` (one of ``ORDER_STATES``; None before it arrives)."""
        out: list[str | None] = []
        for times, changes in zip(self._change_times, self._changes, strict=True):
            i = bisect_right(times, t_min) - 1
            out.append(changes[i][1] if i >= 0 else None)
        return out

    def totals(self, t_min: float) -> dict[str, float]:
        """Running counts and the cost committed by ``t_min``, as the simulator commits it: a leg's distance
        and driver time when it starts, lateness when a leg to a customer starts, penalties when they fall."""
        rec = self.record
        legs, fleet, orders, costs = rec["legs"], rec["vehicles"], rec["orders"], rec["costs"]
        states = self.order_states(t_min)
        count = {s: sum(1 for x in states if x == s) for s in ORDER_STATES}
        cost = 0.0
        late_fixed, late_per_min = _number(costs["late_fixed"]), _number(costs["late_per_min"])
        for k, vid in enumerate(legs["vehicle"]):
            if self._depart[k] > t_min:
                continue
            cost += _number(legs["km"][k]) * _number(fleet["cost_per_km"][vid])
            cost += (self._free[k] - self._depart[k]) * _number(fleet["cost_per_hour"][vid]) / 60.0
            o, outcome = legs["stop_order"][k], legs["outcome"][k]
            if o >= 0 and outcome == ("pickup" if orders["is_return"][o] else "delivery"):
                cost += _late_cost(
                    _number(orders["served_min"][o]), _number(orders["due_min"][o]), late_fixed, late_per_min
                )
        events = rec["events"]
        kinds_orders = list(zip(events["kind"], events["order"], strict=True))
        last_failure = {o: k for k, (kind, o) in enumerate(kinds_orders) if kind == "failed_attempt"}
        for k, (t, (kind, o)) in enumerate(zip(events["time_min"], kinds_orders, strict=True)):
            if _number(t) > t_min:
                break
            if kind == "reject":
                cost += _number(costs["reject_penalty"])
            elif kind == "failed_attempt":
                cost += _number(costs["failed_penalty"])
                if (
                    last_failure[o] == k and orders["status"][o] == "failed"
                ):  # brought back: the order is lost
                    cost += _number(costs["reject_penalty"])
        settled = count["on_time"] + count["late"] + count["rejected"] + count["failed"]
        return {
            "arrived": sum(1 for x in states if x is not None),
            **count,
            "on_time_rate": count["on_time"] / settled if settled else math.nan,
            "cost": cost,
        }
