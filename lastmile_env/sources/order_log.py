"""Replay a recorded order stream (a CSV order log) on a scenario's map, as recorded or resampled.

``OrderLog.from_csv`` parses and validates a log once against a :class:`World`: addresses are snapped to the
world's address key nodes (by node id, or by latitude/longitude on real maps) and every bad row is reported
with its line and column. ``OrderLogGenerator`` turns a log into an ``OrderGenerator`` that replays the day
(``resample="none"``) or draws orders with replacement (``"bootstrap"``, seeded, ``volume`` times as many).
The schema is documented in ``docs/order_log.md``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from lastmile_env.config import ConfigError
from lastmile_env.generators import DUE_MARGIN_MIN
from lastmile_env.sim.types import Order, ServiceOption
from lastmile_env.sim.world import World

__all__ = [
    "COLUMNS",
    "LoggedOrder",
    "OrderLog",
    "OrderLogError",
    "OrderLogGenerator",
    "Projection",
    "RowError",
    "write_order_log",
]

REQUIRED_COLUMNS = ("order_id", "created_at", "size")
OPTIONAL_COLUMNS = (
    "node",
    "latitude",
    "longitude",
    "deadline",
    "window_start",
    "window_end",
    "center",
    "ready_at",
    "service_min",
)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
ALIASES = {"id": "order_id", "node_id": "node", "lat": "latitude", "lon": "longitude", "lng": "longitude"}
MAX_ERRORS = 20  # row errors shown in an OrderLogError's message (all are kept in ``errors``)
MAX_SNAP_KM = 1.0  # default: coordinates farther than this from every address node are an error
HEADER_LINE = 1
Resample = Literal["none", "bootstrap"]
T = TypeVar("T")


@dataclass(frozen=True)
class RowError:
    """One problem with the log: the 1-based line of the file, the column and what is wrong."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column!r}: {self.message}"


class OrderLogError(ConfigError):
    """The order log is invalid; ``errors`` holds every problem found, the message the first few. A
    :class:`ConfigError`, so every CLI reports it as it reports any other bad scenario input (exit 2)."""

    def __init__(self, source: str, errors: Sequence[RowError], max_errors: int = MAX_ERRORS) -> None:
        self.source = source
        self.errors = list(errors)
        lines = [f"  {e}" for e in self.errors[:max_errors]]
        if len(self.errors) > max_errors:
            lines.append(f"  ... and {len(self.errors) - max_errors} more")
        super().__init__(f"{source}: invalid order log ({len(self.errors)} error(s)):\n" + "\n".join(lines))


@dataclass(frozen=True)
class Projection:
    """The equirectangular lon/lat -> planar km projection of a real map (as in ``graph.load_graph``)."""

    lon0: float
    lat0: float
    km_per_deg_lon: float
    km_per_deg_lat: float

    def to_xy_km(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.km_per_deg_lon, (lat - self.lat0) * self.km_per_deg_lat

    def to_lat_lon(self, x_km: float, y_km: float) -> tuple[float, float]:
        return self.lat0 + y_km / self.km_per_deg_lat, self.lon0 + x_km / self.km_per_deg_lon

    @classmethod
    def of_world(cls, world: World) -> Projection | None:
        """The projection ``graph.load_graph`` recorded on a real map; None for a synthetic graph."""
        recorded = world.graph.graph.get("lonlat_projection")
        if not isinstance(recorded, Mapping):
            return None
        return cls(**{k: float(recorded[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class LoggedOrder:
    """One validated row of the log, in simulator units (minutes since shift start, key indices)."""

    order_id: str
    line: int
    arrival_min: float
    center: int
    loc: int
    size: int
    ready_min: float
    service_min: float
    option: ServiceOption
    earliest_min: float
    due_min: float
    snap_km: float  # logged coordinates to the address node (0 when given by node id)

    def to_order(self, index: int) -> Order:
        """A fresh simulator order with id ``index`` (its position in the day)."""
        return Order(
            id=index,
            arrival_min=self.arrival_min,
            center=self.center,
            loc=self.loc,
            size=self.size,
            ready_min=self.ready_min,
            service_min=self.service_min,
            option=self.option,
            earliest_min=self.earliest_min,
            due_min=self.due_min,
        )


class _RowInvalid(Exception):
    """A cell cannot be used; collected as a RowError for its column."""


class _RowParser:
    """Parses the rows of one log against one world; collects errors instead of raising."""

    def __init__(
        self, world: World, shift_start: datetime | None, max_snap_km: float, has_coords: bool
    ) -> None:
        self.world = world
        self.shift_start = shift_start
        self.max_snap_km = max_snap_km

        cfg = world.config
        self.start_hour = cfg.shift_start_hour
        self.shift_end = cfg.fleet.shift_end_min
        self.latest_due = cfg.fleet.shift_end_min - DUE_MARGIN_MIN
        self.prep = 0.5 * (cfg.orders.prep_min.low + cfg.orders.prep_min.high)
        self.service = 0.5 * (cfg.orders.service_min.low + cfg.orders.service_min.high)
        self.key_of = {str(n): i for i, n in enumerate(world.matrix.nodes)}
        self.graph_nodes = {str(n) for n in world.graph.nodes}
        self.addr_xy = world.xy_km[world.addresses]
        self.projection = Projection.of_world(world) if has_coords else None
        self.errors: list[RowError] = []

    def parse(self, line: int, row: Mapping[str, str]) -> LoggedOrder | None:
        n_errors = len(self.errors)

        def cell(column: str) -> str:
            return (row.get(column) or "").strip()

        def field(column: str, parse: Callable[[str], T], default: T) -> T:
            text = cell(column)
            if not text:
                if column in REQUIRED_COLUMNS:
                    self.errors.append(RowError(line, column, "missing value"))
                return default
            try:
                return parse(text)
            except _RowInvalid as exc:
                self.errors.append(RowError(line, column, str(exc)))
                return default

        order_id = cell("order_id")
        if not order_id:
            self.errors.append(RowError(line, "order_id", "missing value"))
        day_start = self._day_start(cell("created_at"))

        def at(text: str) -> float:
            return self._time(text, day_start)

        arrival = field("created_at", at, math.nan)
        size = field("size", _positive_int, 0)
        loc, snap_km = self._address(line, cell("node"), cell("latitude"), cell("longitude"))
        center = field("center", self._center, -1)
        ready = field("ready_at", at, math.nan)
        service = field("service_min", _non_negative, self.service)
        deadline = field("deadline", at, math.nan)
        start = field("window_start", at, math.nan)
        end = field("window_end", at, math.nan)
        if len(self.errors) > n_errors:
            return None

        def fail(column: str, message: str) -> None:
            self.errors.append(RowError(line, column, message))

        if arrival < 0:
            fail("created_at", f"{arrival:g} min is before the shift start")
        elif arrival > self.shift_end:
            fail("created_at", f"{arrival:g} min is after the fleet's shift end ({self.shift_end:g} min)")
        if math.isnan(ready):
            ready = arrival + self.prep
        elif ready < arrival:
            fail("ready_at", f"ready at {ready:g} min, before the order was created ({arrival:g} min)")
        has_window = not (math.isnan(start) and math.isnan(end))
        if has_window and not math.isnan(deadline):
            fail("deadline", "give a deadline or a window (window_start, window_end), not both")
        elif has_window:
            option = ServiceOption.WINDOW
            if math.isnan(start) or math.isnan(end):
                fail("window_start" if math.isnan(start) else "window_end", "a window needs both ends")
            elif end <= start:
                fail("window_end", f"window ends ({end:g} min) before it starts ({start:g} min)")
            elif end < arrival:
                fail(
                    "window_end", f"window ends ({end:g} min) before the order was created ({arrival:g} min)"
                )
            earliest, due = start, end
        else:
            option, earliest = ServiceOption.SAME_DAY, arrival
            if math.isnan(deadline):
                due = max(arrival, min(arrival + self.world.config.orders.deadline_min, self.latest_due))
            elif deadline < arrival:
                fail(
                    "deadline", f"deadline ({deadline:g} min) before the order was created ({arrival:g} min)"
                )
            else:
                due = deadline
        if len(self.errors) > n_errors:
            return None
        return LoggedOrder(
            order_id=order_id,
            line=line,
            arrival_min=arrival,
            center=int(self.world.nearest_depot[loc]) if center < 0 else center,
            loc=loc,
            size=size,
            ready_min=ready,
            service_min=service,
            option=option,
            earliest_min=earliest,
            due_min=due,
            snap_km=snap_km,
        )

    def _day_start(self, created: str) -> datetime | None:
        """The shift start the row's timestamps count from: ``shift_start``, else the created_at day's."""
        if self.shift_start is not None:
            return self.shift_start
        try:
            stamp = datetime.fromisoformat(created)
        except ValueError:
            return None
        return datetime.combine(stamp.date(), time(), tzinfo=stamp.tzinfo) + timedelta(hours=self.start_hour)

    def _time(self, text: str, day_start: datetime | None) -> float:
        try:
            return _finite(text)
        except _RowInvalid:
            pass
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise _RowInvalid(
                f"cannot parse {text!r}: expected minutes since the shift start or an ISO 8601 timestamp"
            ) from None
        if day_start is None:
            raise _RowInvalid(f"timestamp {text!r} needs shift_start (or a timestamp in created_at)")
        if (stamp.tzinfo is None) != (day_start.tzinfo is None):
            raise _RowInvalid(
                f"timestamp {text!r} and the shift start must both have a UTC offset or neither"
            )
        return (stamp - day_start).total_seconds() / 60.0

    def _key(self, node: str) -> int:
        key = self.key_of.get(node)
        if key is None and node in self.graph_nodes:
            raise _RowInvalid(f"node {node!r} is on the road graph but not an address node of the scenario")
        if key is None:
            raise _RowInvalid(f"node {node!r} is not on the map (after keeping its largest component)")
        return key

    def _center(self, node: str) -> int:
        key = self._key(node)
        if key >= self.world.n_depots:
            raise _RowInvalid(f"node {node!r} is not a fulfillment center")
        return key

    def _address(self, line: int, node: str, lat: str, lon: str) -> tuple[int, float]:
        if node:
            try:
                key = self._key(node)
            except _RowInvalid as exc:
                self.errors.append(RowError(line, "node", str(exc)))
                return 0, 0.0
            if key < self.world.n_depots:
                self.errors.append(
                    RowError(line, "node", f"node {node!r} is a fulfillment center, not an address")
                )
            return key, 0.0
        if not (lat or lon):
            self.errors.append(RowError(line, "node", "missing value (give node, or latitude and longitude)"))
            return 0, 0.0
        if self.projection is None:
            kind = self.world.config.graph.kind
            self.errors.append(
                RowError(line, "latitude", f"the {kind!r} map is synthetic: no coordinates, give node ids")
            )
            return 0, 0.0
        coords = []
        for column, text, limit in (("latitude", lat, 90.0), ("longitude", lon, 180.0)):
            try:
                value = _finite(text) if text else math.nan
            except _RowInvalid as exc:
                self.errors.append(RowError(line, column, str(exc)))
                return 0, 0.0
            if not abs(value) <= limit:
                self.errors.append(
                    RowError(line, column, "missing value" if not text else f"{value:g} is out of range")
                )
                return 0, 0.0
            coords.append(value)
        x, y = self.projection.to_xy_km(coords[0], coords[1])
        d2 = ((self.addr_xy - np.array([x, y])) ** 2).sum(axis=1)
        best = int(np.argmin(d2))
        snap_km = float(math.sqrt(d2[best]))
        if snap_km > self.max_snap_km:
            self.errors.append(
                RowError(
                    line,
                    "latitude",
                    f"{snap_km:.2f} km from the nearest address node (max {self.max_snap_km:g})",
                )
            )
        return int(self.world.addresses[best]), snap_km


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowInvalid(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _RowInvalid(f"{text!r} is not a finite number")
    return value


def _positive_int(text: str) -> int:
    value = _finite(text)
    if value != int(value) or value <= 0:
        raise _RowInvalid(f"{text!r} is not a positive integer")
    return int(value)


def _non_negative(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise _RowInvalid(f"{text!r} is negative")
    return value


def _header(fieldnames: Sequence[str] | None) -> tuple[list[str], list[RowError]]:
    """Canonical column names (aliases resolved, case and blanks ignored) and the header's errors."""
    if not fieldnames:
        return [], [RowError(HEADER_LINE, "order_id", "the log is empty (no header row)")]
    names = [ALIASES.get(n.strip().lower(), n.strip().lower()) for n in fieldnames]
    errors = [
        RowError(HEADER_LINE, raw, f"unknown column (valid: {', '.join(COLUMNS)})")
        for raw, name in zip(fieldnames, names, strict=True)
        if name not in COLUMNS
    ]
    errors += [
        RowError(HEADER_LINE, name, "duplicate column")
        for name in sorted(set(names))
        if names.count(name) > 1
    ]
    errors += [
        RowError(HEADER_LINE, name, "missing column") for name in REQUIRED_COLUMNS if name not in names
    ]
    if "node" not in names and not {"latitude", "longitude"} <= set(names):
        errors.append(RowError(HEADER_LINE, "node", "missing column (give node, or latitude and longitude)"))
    for a, b in (("window_start", "window_end"), ("window_end", "window_start")):
        if a in names and b not in names:
            errors.append(RowError(HEADER_LINE, b, f"missing column (needed with {a})"))
    return names, errors


@dataclass(frozen=True)
class OrderLog:
    """A validated order log on one world: its orders sorted by arrival (ties in file order)."""

    orders: tuple[LoggedOrder, ...]
    key_nodes: tuple[object, ...]  # the world's key nodes, to check a generator is used on the same map
    source: str = "<order log>"

    def __len__(self) -> int:
        return len(self.orders)

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        world: World,
        *,
        shift_start: datetime | None = None,
        max_snap_km: float = MAX_SNAP_KM,
        max_errors: int = MAX_ERRORS,
    ) -> OrderLog:
        """Parse and validate a CSV order log (schema: ``docs/order_log.md``).

        ``shift_start``: the moment timestamps count from; None: the scenario's ``shift_start_hour`` on the
        day of each row's ``created_at`` (so a multi-day log folds into one shift). Raises OrderLogError
        listing every bad row (line and column), the first ``max_errors`` in its message.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"order log not found: {path}")
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                return cls.from_lines(
                    f,
                    world,
                    shift_start=shift_start,
                    max_snap_km=max_snap_km,
                    max_errors=max_errors,
                    source=str(path),
                )
        except UnicodeDecodeError as exc:  # a binary file, or another encoding
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise OrderLogError(
                str(path), [RowError(line, "*", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
            ) from None

    @classmethod
    def from_lines(
        cls,
        lines: Iterable[str],
        world: World,
        *,
        shift_start: datetime | None = None,
        max_snap_km: float = MAX_SNAP_KM,
        max_errors: int = MAX_ERRORS,
        source: str = "<order log>",
    ) -> OrderLog:
        """:meth:`from_csv` on lines of CSV text (header first)."""
        reader = csv.reader(lines)
        header = next(reader, None)
        names, errors = _header(header)
        if errors:
            raise OrderLogError(source, errors, max_errors)
        parser = _RowParser(world, shift_start, max_snap_km, has_coords="latitude" in names)
        parsed: list[LoggedOrder] = []
        first_line: dict[str, int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                parser.errors.append(RowError(line, "*", f"expected {len(names)} fields, got {len(cells)}"))
                continue
            order = parser.parse(line, dict(zip(names, cells, strict=True)))
            if order is None:
                continue
            if order.order_id in first_line:
                parser.errors.append(
                    RowError(
                        line,
                        "order_id",
                        f"duplicate {order.order_id!r} (first on line {first_line[order.order_id]})",
                    )
                )
                continue
            first_line[order.order_id] = line
            parsed.append(order)
        if parser.errors:
            raise OrderLogError(source, parser.errors, max_errors)
        if not parsed:
            raise OrderLogError(
                source, [RowError(HEADER_LINE + 1, "order_id", "the log has no orders")], max_errors
            )
        parsed.sort(key=lambda o: o.arrival_min)  # stable: ties keep file order
        return cls(orders=tuple(parsed), key_nodes=tuple(world.matrix.nodes), source=source)

    def replay(self) -> list[Order]:
        """The logged day as simulator orders (ids 0.. in arrival order)."""
        return [o.to_order(i) for i, o in enumerate(self.orders)]


class OrderLogGenerator:
    """An ``OrderGenerator`` from an order log.

    ``resample="none"``: every episode replays the log exactly (the rng is not used; ``volume`` must be 1).
    ``"bootstrap"``: each episode draws ``max(1, round(volume * len(log)))`` orders with replacement from the
    log (uniformly, from the episode's rng), keeping each drawn order's times and address.
    """

    def __init__(self, log: OrderLog, resample: Resample = "none", volume: float = 1.0) -> None:
        if resample not in ("none", "bootstrap"):
            raise ValueError(f"resample must be 'none' or 'bootstrap', got {resample!r}")
        if not (math.isfinite(volume) and volume > 0):
            raise ValueError(f"volume must be a finite number > 0, got {volume!r}")
        if resample == "none" and volume != 1.0:
            raise ValueError(f"volume {volume!r} needs resample='bootstrap' (a replay has the log's orders)")
        self.log = log
        self.resample = resample
        self.volume = volume

    def __call__(self, world: World, rng: np.random.Generator) -> list[Order]:
        if tuple(world.matrix.nodes) != self.log.key_nodes:
            raise ValueError(
                f"{self.log.source}: the order log was validated on another world (key nodes differ)"
            )
        if self.resample == "none":
            return self.log.replay()
        n = len(self.log)
        picks = np.sort(rng.integers(0, n, size=max(1, round(self.volume * n))))
        return [self.log.orders[int(i)].to_order(k) for k, i in enumerate(picks)]


def write_order_log(
    path: str | Path,
    orders: Sequence[Order],
    world: World,
    *,
    coordinates: bool = False,
    shift_start: datetime | None = None,
    digits: int | None = None,
) -> Path:
    """Write simulator orders as a CSV order log (the inverse of :meth:`OrderLog.from_csv`).

    Addresses as node ids, or as latitude/longitude with ``coordinates`` (real maps only); times as minutes
    since the shift start, or ISO timestamps from ``shift_start``. ``digits`` rounds minutes (None: exact).
    """
    projection = Projection.of_world(world) if coordinates else None
    if coordinates and projection is None:
        raise ValueError("coordinates need a real map (a synthetic graph has no latitude/longitude)")

    def when(minutes: float) -> str:
        value = minutes if digits is None else round(minutes, digits)
        if shift_start is None:
            return repr(float(value))
        return (shift_start + timedelta(minutes=value)).isoformat(timespec="seconds" if digits else "auto")

    header = (
        ["order_id", "created_at", "latitude", "longitude"]
        if coordinates
        else ["order_id", "created_at", "node"]
    )
    header += ["size", "deadline", "window_start", "window_end", "center", "ready_at", "service_min"]
    path = Path(path)
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        for o in orders:
            if projection is not None:
                lat, lon = projection.to_lat_lon(*map(float, world.xy_km[o.loc]))
                where = [f"{lat:.7f}", f"{lon:.7f}"]
            else:
                where = [str(world.matrix.nodes[o.loc])]
            window = o.option == ServiceOption.WINDOW
            service = o.service_min if digits is None else round(o.service_min, digits)
            out.writerow(
                [f"o{o.id}", when(o.arrival_min), *where, o.size]
                + (["", when(o.earliest_min), when(o.due_min)] if window else [when(o.due_min), "", ""])
                + [str(world.matrix.nodes[o.center]), when(o.ready_min), repr(float(service))]
            )
    return path
