"""Validated scenario configuration: YAML files under ``configs/scenario/`` and dotted overrides.

A scenario fixes the *city* (road graph, centers, address nodes, fleet, costs) by its ``layout_seed``; an
episode's seed only changes the day (which orders arrive, when and where). Every model forbids unknown keys,
so a typo fails at load with the field's path instead of being silently ignored.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = REPO_ROOT / "configs" / "scenario"
MAPS_DIR = Path(__file__).resolve().parent / "data" / "maps"
ORDER_LOGS_DIR = Path(__file__).resolve().parent / "data" / "order_logs"


class ConfigError(ValueError):
    """A scenario file or override is invalid; the message names the field and the value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Model):
    """A closed interval ``[low, high]`` sampled uniformly."""

    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


# Upper bounds on sizes that would exhaust memory or run for days (the city-scale scenario has 10,000 nodes
# and ~2,000 orders a day): a typo such as rate_per_hour=1e9 fails at load, naming the field.
MAX_GRAPH_NODES = 200_000
MAX_ORDERS_PER_DAY = 200_000  # expected arrivals over the day, peaks included
MAX_FLEET = 10_000


class GraphConfig(_Model):
    """Where the world's places and travel times come from (``kind``, one provider each in
    ``lastmile_env.sources``), plus speeds and congestion.

    ``grid`` / ``geometric`` / ``clustered``: a synthetic road graph; ``file``: a GraphML / OSM road map;
    ``solomon``: a Solomon instance's points (1 km per unit at 60 km/h); ``matrix``: an explicit travel matrix
    (VRPLIB ``EXPLICIT`` weights, ``.npy``, ``.csv``) charged as given, its time unit in ``unit``;
    ``plane``: points x, y in ``unit`` (CSV, Solomon / Gehring-Homberger, VRPLIB coordinates) at
    ``speed_kmh`` by ``metric``.
    """

    kind: Literal["grid", "geometric", "clustered", "file", "solomon", "matrix", "plane"] = "grid"
    rows: int = Field(10, ge=2, le=MAX_GRAPH_NODES // 2, description="grid: rows of intersections")
    cols: int = Field(10, ge=2, le=MAX_GRAPH_NODES // 2, description="grid: columns of intersections")
    spacing_m: float = Field(250.0, gt=0, description="grid: block length in metres")
    perturb: float = Field(0.3, ge=0, le=2, description="grid: edge lengths are scaled by 1 + U(0, perturb)")
    n_nodes: int = Field(
        300, ge=4, le=MAX_GRAPH_NODES, description="geometric / clustered: number of intersections"
    )
    n_centres: int = Field(3, ge=1, description="clustered: number of dense centres")
    area_km: float = Field(6.0, gt=0, description="geometric / clustered: side of the square area")
    path: Path | None = Field(
        None,
        description="file: GraphML or OSM file (relative paths: repo root or maps dir); "
        "solomon: a Solomon instance file or a shipped name (C101); matrix / plane: the data file "
        "(relative paths: repo root)",
    )
    unit: Literal["s", "min", "m", "km"] | None = Field(
        None,
        description="matrix: what one unit of the weights is in time, s or min (ORTEC: s); the distance "
        "that cost_per_km charges is the weight itself, in the file's unit. plane: the unit of x, y "
        "(m or km)",
    )
    speed_kmh: float | None = Field(None, gt=0, description="plane: driving speed on every leg")
    metric: Literal["euclidean", "manhattan"] = Field(
        "euclidean", description="plane: the distance between two points"
    )
    default_speed_kmh: float = Field(30.0, gt=0)
    maxspeed: bool = Field(
        True,
        description="file: an OSM road's speed is its maxspeed tag where the map has one (else the table "
        "below)",
    )
    speed_kmh_by_highway: dict[str, float] = Field(
        default_factory=lambda: {
            "motorway": 80.0,
            "trunk": 60.0,
            "primary": 45.0,
            "secondary": 40.0,
            "tertiary": 35.0,
            "residential": 25.0,
            "living_street": 10.0,
            "unclassified": 30.0,
        }
    )
    congestion: list[float] = Field(
        default_factory=lambda: [1.0] * 24,
        description="travel-time multiplier for each clock hour 0..23 (1 = free flow)",
    )
    n_addresses: int | None = Field(
        None, ge=1, description="address nodes sampled from the graph (None: all)"
    )
    address_coords: list[tuple[float, float]] | None = Field(
        None, description="real maps: addresses as (latitude, longitude), snapped to the nearest intersection"
    )
    max_snap_km: float = Field(0.5, gt=0, description="an address farther than this from the map is an error")

    @field_validator("speed_kmh_by_highway")
    @classmethod
    def _positive_speeds(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: s for k, s in v.items() if not s > 0}
        if bad:
            raise ValueError(f"speeds must be > 0 km/h, got {bad}")
        return v

    @field_validator("congestion")
    @classmethod
    def _congestion_24(cls, v: list[float]) -> list[float]:
        if len(v) != 24:
            raise ValueError(f"needs 24 hourly multipliers, got {len(v)}")
        if min(v) < 0.2:
            raise ValueError(f"multipliers must be >= 0.2, got {min(v)}")
        return v

    @model_validator(mode="after")
    def _grid_size(self) -> GraphConfig:
        if self.kind == "grid" and self.rows * self.cols > MAX_GRAPH_NODES:
            raise ValueError(
                f"a {self.rows} x {self.cols} grid has {self.rows * self.cols:,} nodes, more than the "
                f"{MAX_GRAPH_NODES:,} a scenario may have"
            )
        return self

    @model_validator(mode="after")
    def _file_has_path(self) -> GraphConfig:
        if self.kind == "solomon" and self.path is None:
            raise ValueError("kind 'solomon' needs 'path' (an instance file or a shipped name such as C101)")
        if self.kind == "file":
            if self.path is None:
                raise ValueError("kind 'file' needs 'path'")
            if resolve_map_path(self.path) is None:
                raise ValueError(f"map file not found: {self.path}")
        units = {"matrix": ("s", "min"), "plane": ("m", "km")}.get(self.kind)
        if units is not None:
            if self.path is None:
                raise ValueError(f"kind {self.kind!r} needs 'path'")
            if resolve_graph_path(self.path) is None:
                raise ValueError(f"{self.kind} file not found: {self.path}")
            if self.unit not in units:
                raise ValueError(
                    f"kind {self.kind!r} needs 'unit': one of {', '.join(units)} (got {self.unit})"
                )
        elif self.unit is not None:
            raise ValueError(f"'unit' is for kinds matrix and plane, not {self.kind!r}")
        if self.kind == "plane" and self.speed_kmh is None:
            raise ValueError("kind 'plane' needs 'speed_kmh'")
        return self


class DepotsConfig(_Model):
    """Fulfillment centers: explicit graph nodes, or ``count`` nodes chosen by the layout seed (unset: the
    data's own depots where it names them, as a VRPLIB file does, else one)."""

    count: int | None = Field(None, ge=1)
    nodes: list[int | str] | None = Field(None, description="graph node ids; overrides count")


class Peak(_Model):
    """A period in which the arrival rate is multiplied (clock hours, end exclusive)."""

    start_hour: float = Field(ge=0, le=24)
    end_hour: float = Field(ge=0, le=24)
    multiplier: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Peak:
        if self.end_hour <= self.start_hour:
            raise ValueError(f"end_hour ({self.end_hour}) must be > start_hour ({self.start_hour})")
        return self


class OrderLogConfig(_Model):
    """Replay a recorded order stream (CSV, schema in docs/order_log.md) instead of drawing Poisson orders."""

    path: Path = Field(description="the CSV file (relative paths: repo root or lastmile_env/data/order_logs)")
    resample: Literal["none", "bootstrap"] = "none"
    volume: float = Field(1.0, gt=0, description="bootstrap: orders per episode as a share of the log's")
    shift_start: datetime | None = Field(None, description="shift start (ISO) for logs with timestamps")

    @model_validator(mode="after")
    def _exists(self) -> OrderLogConfig:
        if resolve_data_path(self.path, ORDER_LOGS_DIR) is None:
            raise ValueError(f"order log not found: {self.path}")
        return self


class OptionPrices(_Model):
    """What the customer pays for each service option (revenue per delivered order, reported only: the
    dispatch objective stays the cost, in which a rejection's penalty stands for the lost sale)."""

    same_day: float = Field(0.0, ge=0)
    window: float = Field(0.0, ge=0)
    express: float = Field(0.0, ge=0)


class OrdersConfig(_Model):
    """The order stream: a Poisson process with a time-varying rate, hotspots, sizes and service options
    (or, with ``log``, a replayed order log: the Poisson fields then only give defaults)."""

    rate_per_hour: float = Field(40.0, gt=0, description="base arrival rate outside peaks")
    peaks: list[Peak] = Field(default_factory=list)
    last_arrival_min: float = Field(
        480.0, gt=0, description="no order arrives after this (minutes into shift)"
    )
    n_hotspots: int = Field(3, ge=0)
    hotspot_share: float = Field(0.5, ge=0, le=1, description="share of orders drawn around a hotspot")
    hotspot_radius_km: float = Field(0.6, gt=0)
    size: Range = Range(low=1, high=3)
    prep_min: Range = Range(low=10, high=30)
    service_min: Range = Range(low=2, high=4)
    pickup_service_min: float = Field(1.0, ge=0, description="loading time per parcel at the center")
    window_share: float = Field(0.3, ge=0, le=1, description="share of customers who choose a time window")
    window_lead_min: Range = Range(low=60, high=240)
    window_width_min: float = Field(60.0, gt=0)
    deadline_min: float = Field(180.0, gt=0, description="same-day: due this long after the order arrives")
    express_share: float = Field(0.0, ge=0, le=1, description="share of customers who choose express")
    express_deadline_min: float = Field(
        120.0, gt=0, description="express: due this long after the order arrives"
    )
    prices: OptionPrices = OptionPrices()
    returns_share: float = Field(
        0.0, ge=0, le=1, description="share of orders that are returns, collected at the customer in a window"
    )
    log: OrderLogConfig | None = None
    known_at_start: bool = Field(
        False,
        description="every order of the day is known at the shift start (pre-booked): arrival 0, parcels "
        "prepared from then, same-day orders due by the end of the day",
    )

    @model_validator(mode="after")
    def _bounded_volume(self) -> OrdersConfig:
        busiest = self.rate_per_hour * max([1.0, *(p.multiplier for p in self.peaks)])
        expected = busiest * self.last_arrival_min / 60.0
        if expected > MAX_ORDERS_PER_DAY:
            raise ValueError(
                f"rate_per_hour {self.rate_per_hour:g} (peaks included) brings ~{expected:,.0f} orders a "
                f"day, more than the {MAX_ORDERS_PER_DAY:,} a scenario may have"
            )
        return self

    @model_validator(mode="after")
    def _option_shares(self) -> OrdersConfig:
        if self.window_share + self.express_share > 1.0 + 1e-9:
            raise ValueError(
                f"window_share ({self.window_share}) + express_share ({self.express_share}) must be <= 1"
            )
        return self


class VehicleType(_Model):
    """One kind of vehicle in the fleet."""

    name: str = "van"
    share: float = Field(1.0, gt=0, description="relative share of the fleet")
    capacity: int = Field(20, gt=0, description="parcel size units")
    speed_factor: float = Field(1.0, gt=0, description="travel time is divided by this")
    cost_per_km: float = Field(0.4, ge=0)
    cost_per_hour: float = Field(25.0, ge=0, description="driver time while on a route")
    mode: Literal["van", "cargo_bike", "drone"] = Field(
        "van",
        description="van: the road matrix; cargo_bike: the roads at speed_kmh_by_highway; drone: straight "
        "lines at speed_kmh, one parcel per sortie (capacity), a battery (range_km, recharge_min)",
    )
    speed_kmh: float | None = Field(
        None, gt=0, description="drone: flying speed; cargo_bike: speed on road types not in the table"
    )
    speed_kmh_by_highway: dict[str, float] | None = Field(
        None, description="cargo_bike: speed by road type (0: not allowed on it); None: a default table"
    )
    congestion: bool | None = Field(
        None, description="whether the hourly congestion applies (default: vans yes, bikes and drones no)"
    )
    range_km: float | None = Field(None, gt=0, description="drone: km per battery charge (None: unlimited)")
    recharge_min: float = Field(0.0, ge=0, description="drone: recharge at its center after each sortie")

    @field_validator("speed_kmh_by_highway")
    @classmethod
    def _speeds(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        bad = {k: s for k, s in (v or {}).items() if not s >= 0}
        if bad:
            raise ValueError(f"speeds must be >= 0 km/h (0: not allowed), got {bad}")
        return v

    @model_validator(mode="after")
    def _mode_fields(self) -> VehicleType:
        if self.mode == "drone" and self.speed_kmh is None:
            raise ValueError("a drone needs speed_kmh")
        if self.mode == "van" and (self.speed_kmh is not None or self.speed_kmh_by_highway is not None):
            raise ValueError("a van drives the road matrix (speed_factor); speed_kmh* are for other modes")
        if self.mode != "drone" and (self.range_km is not None or self.recharge_min > 0):
            raise ValueError("range_km and recharge_min are for drones")
        return self


BIKE_SPEED_KMH_BY_HIGHWAY: dict[str, float] = {
    "motorway": 0.0,  # not allowed
    "motorway_link": 0.0,
    "trunk": 0.0,
    "trunk_link": 0.0,
    "primary": 15.0,  # in traffic
    "secondary": 15.0,
    "tertiary": 16.0,
    "unclassified": 16.0,
    "residential": 18.0,
    "living_street": 18.0,
    "cycleway": 20.0,
}


class RosterEntry(_Model):
    """One vehicle of a roster: its type, its own shift and where it starts (driver rosters, courier shifts).

    Times are minutes since the scenario's shift start; nodes are graph node ids (a center or an address).
    """

    type: str | None = Field(None, description="a fleet.types name (default: the first type)")
    start_min: float = Field(0.0, ge=0, description="not available before")
    end_min: float | None = Field(
        None, gt=0, description="back at its center by then (default: shift_end_min)"
    )
    start_node: int | str | None = Field(None, description="where it is at its start (default: its center)")
    center: int | str | None = Field(
        None, description="its center's node (default: the center nearest its start node, else round-robin)"
    )

    @model_validator(mode="after")
    def _shift(self) -> RosterEntry:
        if self.end_min is not None and self.end_min <= self.start_min:
            raise ValueError(f"end_min ({self.end_min}) must be after start_min ({self.start_min})")
        return self


ROSTER_COLUMNS = tuple(RosterEntry.model_fields)


def read_roster(path: Path) -> list[dict[str, Any]]:
    """The rows of a roster file: a CSV with (some of) the columns of :class:`RosterEntry`, or a YAML list of
    mappings; each problem is a ValueError naming the file and the line or item."""
    found = resolve_graph_path(path)
    if found is None:
        raise ValueError(f"roster file not found: {path}")
    if found.suffix.lower() in (".yaml", ".yml"):
        try:
            rows = yaml.safe_load(found.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"roster {found} is not valid YAML: {exc}") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"roster {found} must hold a list of mappings (one per vehicle)")
        return rows
    with found.open(newline="") as fh:
        reader = csv.DictReader(fh)
        unknown = sorted(set(reader.fieldnames or []) - set(ROSTER_COLUMNS))
        if unknown or not reader.fieldnames:
            raise ValueError(
                f"roster {found}: unknown columns {unknown} (expected some of {', '.join(ROSTER_COLUMNS)})"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            cells: dict[str, Any] = {
                k: v.strip() for k, v in row.items() if k is not None and isinstance(v, str) and v.strip()
            }
            if None in row:
                raise ValueError(f"roster {found}:{line}: more cells than columns")
            for key in ("start_node", "center"):
                if key in cells and cells[key].lstrip("-").isdigit():
                    cells[key] = int(cells[key])  # node ids: ints where they look like ints
            cells["_line"] = line
            rows.append(cells)
    if not rows:
        raise ValueError(f"roster {found} lists no vehicle")
    return rows


class FleetConfig(_Model):
    """The fleet: its size, vehicle types (by share) and shift end, or a roster of vehicles with their own
    shifts and start nodes; and whether an idle vehicle drives back to its center."""

    size: int = Field(5, ge=1, le=MAX_FLEET, description="without a roster; with one, the roster's length")
    types: list[VehicleType] = Field(default_factory=lambda: [VehicleType()])
    shift_end_min: float = Field(600.0, gt=0, description="vehicles must be back at their center by then")
    roster: list[RosterEntry] | None = Field(
        None,
        description="one entry per vehicle, inline or a CSV / YAML file (relative paths: next to the "
        "scenario file, then as given or the repo root); read when the scenario loads",
    )
    idle_at: Literal["home", "last_drop"] = Field(
        "home",
        description="where an idle vehicle waits: home (drives back to its center) or last_drop (a courier "
        "waits where its last stop was and drives home when the day's work is done)",
    )

    @field_validator("types")
    @classmethod
    def _non_empty(cls, v: list[VehicleType]) -> list[VehicleType]:
        if not v:
            raise ValueError("at least one vehicle type is needed")
        return v

    @model_validator(mode="before")
    @classmethod
    def _read_roster(cls, data: Any) -> Any:
        """A roster given as a file is read here, so that a bad one fails when the scenario loads and the
        entries travel with the config (to worker processes too)."""
        if not isinstance(data, dict) or data.get("roster") is None:
            return data
        data = dict(data)
        roster = data["roster"]
        if isinstance(roster, str | Path):
            rows = read_roster(Path(roster))
            entries = []
            for i, row in enumerate(rows):
                where = f"line {row.pop('_line')}" if "_line" in row else f"item {i}"
                try:
                    entries.append(RosterEntry.model_validate(row))
                except ValidationError as exc:
                    problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                    raise ValueError(f"roster {roster}, {where}: {problem}") from None
            data["roster"] = entries
        if isinstance(data["roster"], list) and "size" not in data:
            data["size"] = len(data["roster"])
        return data

    @model_validator(mode="after")
    def _roster_matches(self) -> FleetConfig:
        if self.roster is None:
            return self
        if not self.roster:
            raise ValueError("roster: lists no vehicle")
        if self.size != len(self.roster):
            raise ValueError(f"size ({self.size}) differs from the roster's {len(self.roster)} vehicles")
        names = [t.name for t in self.types]
        for i, entry in enumerate(self.roster):
            if entry.type is not None and entry.type not in names:
                raise ValueError(f"roster[{i}].type: {entry.type!r} is not a fleet type ({', '.join(names)})")
        return self


class CostsConfig(_Model):
    """Penalties, in the same currency as the vehicle costs."""

    late_fixed: float = Field(10.0, ge=0, description="per late delivery")
    late_per_min: float = Field(0.5, ge=0, description="per minute late")
    reject_penalty: float = Field(40.0, ge=0, description="per rejected order")


class DispatchConfig(_Model):
    """How orders are dispatched: one at a time as they arrive (``order``), or in waves (``wave``).

    In wave mode arriving orders wait in a pool; at every wave (``wave_start_min`` + k ``wave_min``, up to
    the first wave after the day's last arrival) a policy chooses which pooled orders go now and gives each
    released batch as routes to vehicles (``Simulator.release``); a released parcel leaves its center no
    earlier than the wave + ``wave_margin_min`` (loading: the EURO Meets NeurIPS 2022 dispatch margin).
    """

    mode: Literal["order", "wave"] = Field("order", description="order: decide at each arrival; wave: waves")
    tick_min: float = Field(15.0, gt=0, description="deferred orders come back at every multiple of this")
    max_defer_min: float = Field(60.0, ge=0, description="no order may wait longer than this for a decision")
    wave_min: float = Field(60.0, gt=0, description="wave mode: minutes between waves")
    wave_start_min: float = Field(0.0, ge=0, description="wave mode: the first wave (minutes into shift)")
    wave_margin_min: float = Field(
        0.0, ge=0, description="wave mode: a released parcel leaves its center this long after the wave"
    )
    last_wave_min: float | None = Field(
        None,
        ge=0,
        description="wave mode: the last wave, when every pooled order goes (default: the first wave at or "
        "after the day's last arrival); set it later to let a pre-booked day wait",
    )


class NoiseConfig(_Model):
    """Travel-time uncertainty: each driven leg takes its planned (expected) time x a random factor."""

    kind: Literal["none", "lognormal"] = Field(
        "none", description="none: legs take exactly their planned time; lognormal: factor of mean 1"
    )
    sigma: float = Field(0.15, ge=0, le=2, description="lognormal: standard deviation of log(factor)")


class TravelConfig(_Model):
    """How execution departs from the plan, and what the simulator tracks about it."""

    noise: NoiseConfig = NoiseConfig()
    live_eta: bool = Field(
        False, description="keep each open order's live ETA and log every update (for ETA-error metrics)"
    )


class LockersConfig(_Model):
    """Pickup points / parcel lockers: address nodes spread over the city (fixed by the layout)."""

    count: int = Field(0, ge=0, description="lockers (0: none; a pickup-point order is then redelivered)")
    capacity: int = Field(30, ge=1, description="parcels each locker takes over the day")


class AttemptsConfig(_Model):
    """Delivery attempts: the customer may be absent; the parcel then goes to a pickup point or is
    redelivered later, per the order's choice (docs/realism.md). Off while every probability is 0."""

    absence_by_hour: list[float] = Field(
        default_factory=lambda: [0.0] * 24,
        description="probability that the customer is absent, for each clock hour 0..23 of the attempt",
    )
    pickup_point_share: float = Field(
        0.5, ge=0, le=1, description="share who want a pickup point when absent (else a redelivery)"
    )
    redelivery_delay_min: float = Field(90.0, ge=0, description="a redelivery comes at least this much later")
    failed_penalty: float = Field(8.0, ge=0, description="cost of each failed attempt")
    lockers: LockersConfig = LockersConfig()

    @field_validator("absence_by_hour")
    @classmethod
    def _probabilities_24(cls, v: list[float]) -> list[float]:
        if len(v) != 24:
            raise ValueError(f"needs 24 hourly probabilities, got {len(v)}")
        if min(v) < 0 or max(v) > 1:
            raise ValueError(f"probabilities must be in [0, 1], got {min(v)}..{max(v)}")
        return v

    @property
    def enabled(self) -> bool:
        return max(self.absence_by_hour) > 0


class ScenarioConfig(_Model):
    """A complete scenario: the city, the order stream, the fleet and the costs."""

    name: str = "unnamed"
    description: str = ""
    layout_seed: int = Field(0, ge=0, description="fixes the graph, centers, addresses, hotspots and fleet")
    shift_start_hour: float = Field(8.0, ge=0, lt=24)
    graph: GraphConfig = GraphConfig()
    depots: DepotsConfig = DepotsConfig()
    orders: OrdersConfig = OrdersConfig()
    fleet: FleetConfig = FleetConfig()
    costs: CostsConfig = CostsConfig()
    dispatch: DispatchConfig = DispatchConfig()
    travel: TravelConfig = TravelConfig()
    attempts: AttemptsConfig = AttemptsConfig()

    @model_validator(mode="after")
    def _arrivals_within_shift(self) -> ScenarioConfig:
        if self.orders.last_arrival_min > self.fleet.shift_end_min:
            raise ValueError(
                f"orders.last_arrival_min ({self.orders.last_arrival_min}) is after "
                f"fleet.shift_end_min ({self.fleet.shift_end_min})"
            )
        last_wave = self.dispatch.last_wave_min
        arrivals_end, shift_end = self.orders.last_arrival_min, self.fleet.shift_end_min
        if last_wave is not None and not arrivals_end <= last_wave <= shift_end:
            raise ValueError(
                f"dispatch.last_wave_min ({last_wave}) must lie between orders.last_arrival_min "
                f"({self.orders.last_arrival_min}) and fleet.shift_end_min ({self.fleet.shift_end_min})"
            )
        if self.dispatch.mode == "wave":
            if self.orders.returns_share > 0:
                raise ValueError("dispatch.mode: wave serves deliveries only; set orders.returns_share to 0")
            battery = [t.name for t in self.fleet.types if t.range_km is not None or t.recharge_min > 0]
            if battery:
                raise ValueError(
                    f"dispatch.mode: wave does not route vehicles with a battery yet ({', '.join(battery)})"
                )
        return self

    @model_validator(mode="after")
    def _parcels_fit_a_vehicle(self) -> ScenarioConfig:
        largest = max(t.capacity for t in self.fleet.types)
        if self.orders.log is None and self.orders.size.low > largest:
            raise ValueError(
                f"orders.size.low ({self.orders.size.low:g}) is larger than every vehicle's capacity "
                f"(the largest of fleet.types: {largest}): no vehicle can serve any order"
            )
        return self


def scenario_differences(trained: ScenarioConfig, used: ScenarioConfig) -> list[str]:
    """The scenario fields (``section.field``) where ``used`` differs from ``trained``: what a policy meets
    that it was not trained on (name and description aside)."""
    a, b = trained.model_dump(mode="json"), used.model_dump(mode="json")
    found = []
    for section in sorted(set(a) | set(b) - {"name", "description"}):
        if section in ("name", "description") or a.get(section) == b.get(section):
            continue
        x, y = a.get(section), b.get(section)
        if isinstance(x, dict) and isinstance(y, dict):
            found += [f"{section}.{k}" for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        else:
            found.append(section)
    return found


def training_scenario_warning(training: Mapping[str, Any], used: ScenarioConfig) -> str | None:
    """One line when a model trained on another scenario plays ``used`` (``training``: a manifest's
    ``training`` section or a run's state, with ``scenario`` and the run's ``config``); None when it is the
    same scenario or the training scenario is unknown."""
    config = training.get("config") or {}
    name = training.get("scenario") or config.get("scenario")
    if not name:
        return None
    try:
        trained = load_scenario(name, config.get("env") or None)
    except (ConfigError, OSError):
        return f"the model was trained on scenario {name!r}, which cannot be loaded here to compare"
    fields = scenario_differences(trained, used)
    fields = [f for f in fields if f not in _randomized_fields(config.get("load"), trained, used)]
    if not fields:
        return None
    shown = ", ".join(fields[:8]) + (f" and {len(fields) - 8} more" if len(fields) > 8 else "")
    return (
        f"the model was trained on scenario {trained.name!r}; {used.name!r} differs in {shown}: its "
        "decisions here are out of its training distribution"
    )


def _randomized_fields(load: Any, trained: ScenarioConfig, used: ScenarioConfig) -> set[str]:
    """The fields a model trained with randomized load (the run config's ``load`` section) saw vary: the
    fleet size within its drawn sizes' span and the order rate within its volume range (times the training
    scenario's rate); a value outside them stays a difference."""
    if not isinstance(load, Mapping) or not load.get("enabled"):
        return set()
    covered = set()
    sizes = load.get("fleet_sizes") or []
    if sizes and min(sizes) <= used.fleet.size <= max(sizes):
        covered.add("fleet.size")
    low, high = (load.get("volume") or (1.0, 1.0))[:2]
    base = trained.orders.rate_per_hour
    if low * base - 1e-9 <= used.orders.rate_per_hour <= high * base + 1e-9:
        covered.add("orders.rate_per_hour")
    return covered


def resolve_data_path(path: Path, shipped_dir: Path) -> Path | None:
    """Find a data file as given, relative to the repo root, or in a shipped data directory."""
    for candidate in (path, REPO_ROOT / path, shipped_dir / path):
        if candidate.is_file():
            return candidate
    return None


def resolve_map_path(path: Path) -> Path | None:
    """Find a map file as given, relative to the repo root, or in the shipped maps directory."""
    return resolve_data_path(path, MAPS_DIR)


def resolve_graph_path(path: Path) -> Path | None:
    """Find a matrix or coordinate file as given or relative to the repo root."""
    for candidate in (path, REPO_ROOT / path):
        if candidate.is_file():
            return candidate
    return None


def available_scenarios() -> list[str]:
    """Names of the scenarios shipped under ``configs/scenario``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key.path=value`` strings; values are YAML scalars (``30``, ``0.5``, ``true``, ``[1, 2]``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def scenario_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Command-line overrides address the scenario as ``env.<field>=value`` (``env.fleet.size=30``)."""
    out = {}
    for key, value in parse_overrides(items).items():
        if not key.startswith("env."):
            raise ConfigError(
                f"override {key!r}: scenario overrides start with 'env.' (e.g. env.fleet.size=30)"
            )
        out[key.removeprefix("env.")] = value
    return out


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``value`` at the dotted path of a nested dict, creating sections on the way."""
    node: Any = data
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {dotted}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def read_yaml_mapping(path: Path, what: str, allow_empty: bool = False) -> dict[str, Any]:
    """A YAML file's top-level mapping; ConfigError says what is wrong (missing, not YAML, not a mapping)."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if loaded is None and allow_empty:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def format_validation_error(err: ValidationError, title: str) -> str:
    """One line per invalid field: its dotted path, the problem and the value given."""
    lines = [f"{title}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {where}: {e['msg']}{shown}")
    return "\n".join(lines)


# Data files a scenario names; a relative path in a scenario file is looked up next to the file first.
SCENARIO_PATH_FIELDS = ("graph.path", "orders.log.path", "fleet.roster")


def _resolve_next_to(data: dict[str, Any], base_dir: Path) -> None:
    """Make each relative data path of a scenario file that exists next to the file absolute (in place);
    the others keep the usual look-up (as given, the repo root, the shipped data directories)."""
    for dotted in SCENARIO_PATH_FIELDS:
        node: Any = data
        *sections, leaf = dotted.split(".")
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        value = node.get(leaf) if isinstance(node, dict) else None
        if isinstance(value, str) and value and not Path(value).is_absolute():
            candidate = base_dir / value
            if candidate.is_file():
                node[leaf] = str(candidate)


def with_dispatch_mode(config: ScenarioConfig, mode: Literal["order", "wave"]) -> ScenarioConfig:
    """The same scenario with its dispatch decisions made in ``mode`` (``order``: one order at a time, as the
    dispatch and routing envs and dispatch policies decide; ``wave``: which pooled orders go at each wave).
    The day is the same: only when decisions are made changes. A scenario that cannot run in wave mode
    (returns, battery vehicles) raises ConfigError."""
    if config.dispatch.mode == mode:
        return config
    data = config.model_dump()
    data["dispatch"]["mode"] = mode
    return load_scenario(data)


def load_scenario(
    scenario: str | Path | ScenarioConfig | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> ScenarioConfig:
    """Load a scenario by name (``"default"``), YAML path, mapping or model, then apply dotted overrides.

    Raises ConfigError naming the field and the value for anything invalid, and listing the valid scenario
    names for an unknown one.
    """
    if isinstance(scenario, ScenarioConfig):
        data: dict[str, Any] = scenario.model_dump(exclude_unset=True)
        source = scenario.name
    elif isinstance(scenario, Mapping):
        data = dict(scenario)
        source = str(data.get("name", "<mapping>"))
    else:
        path = Path(scenario)
        if path.suffix not in (".yaml", ".yml"):
            named = SCENARIO_DIR / f"{scenario}.yaml"
            if not named.is_file():
                raise ConfigError(
                    f"unknown scenario {str(scenario)!r}; valid names: {', '.join(available_scenarios())} "
                    "(or a path to a .yaml file)"
                )
            path = named
        data = read_yaml_mapping(path, "scenario file")
        data.setdefault("name", path.stem)
        source = str(path)
        _resolve_next_to(data, path.resolve().parent)
    for key, value in (overrides or {}).items():
        apply_override(data, key, value)
    try:
        return ScenarioConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"invalid scenario {source}")) from None
