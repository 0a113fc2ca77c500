"""The dispatch API's JSON: a snapshot of the live system in, the decision out (pydantic models).

Times are minutes since the start of the scenario's shift; places are node ids of the scenario's road graph
(an address or a center); centers are named by their index (``GET /v1/scenario`` lists them with their
nodes); vehicles by the id of their slot in the scenario's fleet (``v0`` .. ``v{V-1}``, listed there too).

These models check each value on its own: strict types (JSON ``true`` is not the number 1 and ``"24"`` is
not 24), finite numbers, and bounds on every number, id and list, so that any request this schema admits is
decided or refused with a 4xx naming the field, never an overflow. ``serving.runtime.Dispatcher``
checks how they fit together and with the scenario (unique ids, stops that refer to listed orders, known
vehicles and nodes, capacities and loads, consistent plans), then the simulator checks its invariants.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator
from pydantic.json_schema import JsonDict

# Upper bounds: far beyond any real day, far below what overflows an int64 or a float sum.
MAX_MINUTES = 1e6  # ~694 days after the shift start
MAX_SIZE = 1_000_000  # parcel size, capacity and load units
MAX_COUNT = 1_000_000_000  # the day's counters
MAX_KM = 1e6
MAX_NODE_ID = 2**53 - 1  # exact in a float64 and an int64 (OSM ids are ~1e10)
MAX_CENTER = 10_000

Minutes = Annotated[
    float, Field(ge=0, le=MAX_MINUTES, allow_inf_nan=False, description="minutes since shift start")
]
NodeId = Annotated[
    Annotated[StrictInt, Field(ge=-MAX_NODE_ID, le=MAX_NODE_ID)] | Annotated[StrictStr, Field(max_length=64)],
    Field(description="a node id of the scenario's road graph (a graph with string ids: as a string)"),
]
OrderId = Annotated[str, Field(min_length=1, max_length=128)]
Size = Annotated[StrictInt, Field(gt=0, le=MAX_SIZE)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
CenterIndex = Annotated[StrictInt, Field(ge=0, le=MAX_CENTER)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StopIn(_Model):
    """One planned visit: collect an order's parcel at its center (pickup) or deliver it (delivery)."""

    order_id: OrderId
    kind: Literal["pickup", "delivery"]


class VehicleIn(_Model):
    """A vehicle of the fleet and its state.

    ``node`` is where the vehicle is free next: where it stands when idle, the stop it is driving to or
    serving (``current_stop``), or its center when ``returning``; ``free_at_min`` is when it is free there
    (required with a stop under way or when returning; an idle vehicle is free now unless it gives a later
    one). ``stops`` is the plan after that, the part a decision may change. ``load`` is the size of the
    parcels on board now.

    Battery vehicles (drones: the fleet slots of ``GET /v1/scenario`` with a ``range_km`` or
    ``recharge_min``) also give ``flown_km``, the km flown since the battery was last charged at the home
    center, counted to the end of the leg under way (so 0 when ``node`` is that center). A drone that landed
    at its center recharges ``recharge_min`` after the landing: it is ``returning`` with ``free_at_min`` the
    end of the charge, as the simulator keeps it, or, the same, idle at its center with ``free_at_min``
    later than now (at most ``recharge_min`` later).
    """

    id: str = Field(min_length=1, max_length=64, description="fleet slot id: v0 .. v{V-1}")
    type: str | None = Field(None, description="vehicle type; checked against the fleet slot's when given")
    capacity: Size = Field(description="must equal the fleet slot's capacity")
    node: NodeId
    load: int = Field(ge=0, le=MAX_SIZE)
    stops: list[StopIn] = Field(default_factory=list, max_length=1000)
    current_stop: StopIn | None = None
    free_at_min: Minutes | None = Field(
        None,
        description="when it is free at node: required with a current_stop or when returning (a drone's "
        "recharge included); an idle vehicle is free now, or at this time when later (an idle drone: "
        "recharging at its center, at most recharge_min after now)",
    )
    returning: bool = Field(False, description="driving back to its center (node is then its center)")
    flown_km: float = Field(
        0.0,
        ge=0,
        le=MAX_KM,
        allow_inf_nan=False,
        description="battery vehicles (a fleet slot with range_km or recharge_min): km flown since the last "
        "charge at its home center, counted to the end of the leg under way (0 when node is that center); "
        "at most range_km; vehicles without a battery give 0 or leave it out",
    )


OrderKind = Literal["delivery", "return"]


class OrderIn(_Model):
    """An accepted order that a vehicle's plan (its stops or the stop under way) refers to.

    A ``return`` goes the other way: collected at the customer's ``node`` (its pickup stop) within
    ``[max(ready_min, earliest_min), due_min]`` and brought back to ``center`` (its delivery stop).
    """

    id: OrderId
    kind: OrderKind = Field("delivery", description="a delivery, or a return collected at the customer")
    center: CenterIndex = Field(description="index of its fulfillment center (a return: where it goes back)")
    node: NodeId = Field(description="delivery address (a return: where it is collected)")
    size: Size
    ready_min: Minutes = Field(description="parcel ready for pickup (a return: may be collected from)")
    earliest_min: Minutes = Field(description="delivery (a return: collection) may not start before")
    due_min: Minutes = Field(description="deadline or window end (a return: of its collection)")
    service_min: Minutes = Field(description="minutes at the door")
    arrival_min: Minutes | None = Field(None, description="when it was ordered (informational)")

    @model_validator(mode="after")
    def _ordered(self) -> OrderIn:
        if self.due_min < self.earliest_min:
            raise ValueError(f"due_min {self.due_min} is before earliest_min {self.earliest_min}")
        return self


class Window(_Model):
    """A delivery window chosen by the customer."""

    start_min: Minutes
    end_min: Minutes

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end_min < self.start_min:
            raise ValueError(f"end_min {self.end_min} is before start_min {self.start_min}")
        return self


# "exactly one of deadline_min and window", as JSON Schema (pydantic checks it too)
_ONE_PROMISE: JsonDict = {
    "oneOf": [
        {
            "required": ["deadline_min"],
            "properties": {"deadline_min": {"type": "number"}, "window": {"type": "null"}},
        },
        {
            "required": ["window"],
            "properties": {"window": {"type": "object"}, "deadline_min": {"type": "null"}},
        },
    ]
}


class NewOrderIn(_Model):
    """The order to decide: same-day (``deadline_min``) or in a ``window``: exactly one of them (the other
    left out or null).

    A ``return`` is collected at ``node`` in its ``window`` (required; no deadline) and brought back to
    ``center``.
    """

    model_config = ConfigDict(json_schema_extra=_ONE_PROMISE)

    id: OrderId = "new"
    kind: OrderKind = Field("delivery", description="a delivery, or a return collected at the customer")
    node: NodeId = Field(description="delivery address (a return: where it is collected)")
    center: CenterIndex | None = Field(
        None, description="fulfillment center index (default: the nearest; a return: where it goes back)"
    )
    size: Size
    deadline_min: Minutes | None = None
    window: Window | None = None
    arrival_min: Minutes | None = Field(None, description="when it was ordered (default: now)")
    ready_min: Minutes | None = Field(
        None, description="parcel ready (default: arrival + the scenario's mean preparation time)"
    )
    service_min: Minutes | None = Field(None, description="minutes at the door (default: scenario mean)")

    @model_validator(mode="after")
    def _one_promise(self) -> NewOrderIn:
        # A return's promise (a window, no deadline) is checked by the Dispatcher, which names the field.
        if self.kind == "delivery" and (self.deadline_min is None) == (self.window is None):
            raise ValueError("give exactly one of deadline_min (same-day) and window")
        return self


class Counters(_Model):
    """The day so far; the observation's global features read them (default: the snapshot's orders only).

    ``orders_arrived`` counts every order of the day, this one included; the others count settled orders.
    """

    orders_arrived: int = Field(ge=1, le=MAX_COUNT)
    on_time: Count = 0
    late: Count = 0
    rejected: Count = 0


class SnapshotIn(_Model):
    """The live system now: the time, the fleet with its plans and the orders they refer to.

    As it stands, the body of ``POST /v1/reoptimize``."""

    now_min: Minutes
    vehicles: list[VehicleIn] = Field(min_length=1, max_length=1000)
    orders: list[OrderIn] = Field(default_factory=list, max_length=100_000)
    counters: Counters | None = None


class DispatchRequest(SnapshotIn):
    """A decision point: the time, the fleet with its plans, the orders they refer to and the new order."""

    new_order: NewOrderIn


class PlannedStop(BaseModel):
    """A stop of the chosen vehicle's plan after the decision."""

    order_id: str
    kind: Literal["pickup", "delivery"]
    node: int | str
    planned_min: float | None = Field(description="planned service start (null: the stop under way)")
    under_way: bool = False


class DispatchResponse(BaseModel):
    """The decision: the vehicle (or reject / defer), its new plan and the ETA promised to the customer."""

    request_id: str
    decision: Literal["assign", "reject", "defer"]
    vehicle_id: str | None = None
    eta_min: float | None = Field(
        None, description="promised delivery (service start at the door; a return: its collection)"
    )
    stops: list[PlannedStop] = Field(
        default_factory=list, description="the vehicle's plan, stop under way first"
    )
    decide_again_at_min: float | None = Field(None, description="defer: the dispatch tick to ask again at")
    policy: Literal["learned", "insertion"]
    fallback_reason: str | None = None
    model_sha256: str
    latency_ms: float = Field(description="time the server spent on the decision")


class VehiclePlan(BaseModel):
    """One vehicle's plan: the stop under way first (if any), then the planned stops."""

    vehicle_id: str
    stops: list[PlannedStop]


class ReoptimizeResponse(BaseModel):
    """Every vehicle's plan after re-optimization: PyVRP proposes new plans for the whole fleet and the
    simulator keeps them only when it prices them lower (``applied``); otherwise the plans come back as
    they were sent. Costs are the expected cost of the remaining plans, in the scenario's units."""

    request_id: str
    applied: bool
    cost_before: float
    cost_after: float
    plans: list[VehiclePlan]
    solver: str = Field(description="the PyVRP budget of the solve, e.g. '50 iterations'")
    latency_ms: float = Field(description="time the server spent on the re-optimization")


class ErrorItem(BaseModel):
    """One problem with a request: where (``loc``, ``field``) and what (``msg``)."""

    loc: list[str | int]
    field: str
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: list[ErrorItem]


class CenterInfo(BaseModel):
    index: int
    node: int | str


class FleetSlot(BaseModel):
    """One vehicle of the scenario's fleet: requests name it by ``id`` and must match its capacity.

    A slot with a battery (a drone with ``range_km`` or ``recharge_min``) needs its vehicle's ``flown_km``
    in requests (``VehicleIn``); ``range_km`` and ``recharge_min`` are null for a vehicle without one.
    """

    id: str
    type: str
    capacity: int
    home_center: int
    mode: str = Field(description="how it travels: van, cargo_bike or drone")
    range_km: float | None = Field(
        None, description="battery: km per sortie between two visits of its home center (null: no limit)"
    )
    recharge_min: float | None = Field(
        None, description="battery: minutes it recharges at its home center after landing (null: no battery)"
    )


class ScenarioInfo(BaseModel):
    """``GET /v1/scenario``: what a client needs to build requests for the loaded scenario."""

    name: str
    schema_version: int
    shift_start_hour: float
    shift_end_min: float
    centers: list[CenterInfo]
    fleet: list[FleetSlot]
    n_key_nodes: int = Field(description="nodes a request may name: the centers and the address nodes")
    default_ready_after_min: float = Field(description="new order: ready this long after arrival by default")
    default_service_min: float
    dispatch_tick_min: float
    max_defer_min: float
