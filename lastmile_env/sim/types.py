"""Value types of the simulator: orders, stops, vehicles, costs and the event log.

Times are minutes since the start of the shift (``*_min``); places are *key indices* into the world's travel
matrix (depots first, then address nodes), never raw graph node ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, Protocol


class OrderStatus(IntEnum):
    """Where an arrived order is. Every arrived order is in exactly one of these."""

    PENDING = 0  # arrived, waiting for the dispatch decision
    ASSIGNED = 1  # in a vehicle's plan, parcel still at the center
    ON_BOARD = 2  # picked up, not yet delivered
    DELIVERED = 3
    REJECTED = 4
    FAILED = 5  # attempts.*: not delivered (customer absent, no pickup point or redelivery) and brought back


# read by ``Order``'s properties at every delivery: a module constant, not a class attribute (in Python 3.11 a
# read through an enum class goes through ``EnumType.__getattr__``'s hook, ~1,000 instructions)
_DELIVERED = OrderStatus.DELIVERED


class AbsentChoice(IntEnum):
    """What the customer wants done with the parcel when absent at the attempt (``attempts.*``)."""

    REDELIVER = 0  # a later attempt at the door
    PICKUP_POINT = 1  # left at the nearest pickup point / parcel locker with room


MAX_ATTEMPTS = 2  # door attempts per order (the first and one redelivery)


class StopKind(IntEnum):
    PICKUP = 0
    DELIVERY = 1


class ServiceOption(IntEnum):
    SAME_DAY = 0  # delivered by a deadline
    WINDOW = 1  # delivered inside a customer-chosen window
    EXPRESS = 2  # delivered by a tight deadline (``orders.express_deadline_min``)


@dataclass(slots=True)
class Order:
    """A parcel to collect at its center and deliver to its address, with its outcome once known."""

    id: int
    arrival_min: float
    center: int  # key index of the fulfillment center
    loc: int  # key index of the delivery address
    size: int
    ready_min: float  # parcel prepared; cannot be picked up before
    service_min: float  # time at the door
    option: ServiceOption
    earliest_min: float  # delivery may not start before (window start; arrival for same-day)
    due_min: float  # deadline or window end
    status: OrderStatus = OrderStatus.PENDING
    vehicle: int = -1
    decided_min: float = math.nan
    promised_eta_min: float = math.nan  # planned delivery time given to the customer at dispatch
    pickup_min: float = math.nan
    delivered_min: float = math.nan  # proof of delivery: service start at the door
    live_eta_min: float = math.nan  # travel.live_eta: the latest ETA of the delivery (``Simulator.eta_log``)
    # Delivery attempts (``attempts.*``): after a failed attempt the order's delivery stop goes to a locker
    # (``loc`` becomes the locker's node), a redelivery (``earliest_min`` moves on) or back to the center
    # (``returning``). Proof of delivery: where (``pod_node``), when (``pod_min``) and how (``pod_how``).
    absent_choice: AbsentChoice = AbsentChoice.REDELIVER
    # A return (``orders.returns_share``): collected at the customer (``center`` is then the customer's
    # address, ``ready_min`` / ``due_min`` its window) and brought to the center ``loc``; on time when
    # collected by ``due_min``.
    is_return: bool = False
    attempts: int = 0  # door attempts made
    locker: int = -1  # index of the locker the parcel was redirected to (-1: none)
    returning: bool = False  # failed for good: on its way back to the center
    pod_node: int = -1
    pod_min: float = math.nan
    pod_how: str = ""  # door, pickup_point, or returned (failed)

    @property
    def served_min(self) -> float:
        """When the customer was served: the delivery's service start (a return: its collection's)."""
        return self.pickup_min if self.is_return else self.delivered_min

    @property
    def late_min(self) -> float:
        """Minutes after the due time (0 when on time; nan until delivered)."""
        return max(0.0, self.served_min - self.due_min) if self.status == _DELIVERED else math.nan

    @property
    def on_time(self) -> bool:
        return self.status == _DELIVERED and self.served_min <= self.due_min + 1e-9

    @property
    def eta_error_min(self) -> float:
        """Actual minus promised time of service (nan unless served)."""
        return self.served_min - self.promised_eta_min


@dataclass(slots=True, frozen=True, init=False)
class Stop:
    """One planned visit: collect an order's parcel at its center, or deliver it."""

    kind: StopKind
    order: int
    loc: int

    def __init__(self, kind: StopKind, order: int, loc: int) -> None:
        # The frozen dataclass's own ``__init__`` sets each field through ``object.__setattr__``; the slots'
        # descriptors set them directly, ~2,000 instructions a stop less (``assign`` builds two a step).
        _set_kind(self, kind)
        _set_order(self, order)
        _set_loc(self, loc)


_set_kind = Stop.__dict__["kind"].__set__  # the slots' descriptors, of the class ``dataclass`` made
_set_order = Stop.__dict__["order"].__set__
_set_loc = Stop.__dict__["loc"].__set__


MODES = ("van", "cargo_bike", "drone")  # vehicle modes (``fleet.types[].mode``)


class _Battery(Protocol):
    @property
    def range_km(self) -> float: ...
    @property
    def recharge_min(self) -> float: ...


def has_battery(vehicle: _Battery) -> bool:
    """A vehicle (or fleet slot) with a battery: a range per sortie or a recharge at home, as a drone has
    (``kernels.schedule`` applies both)."""
    return vehicle.range_km < math.inf or vehicle.recharge_min > 0.0


@dataclass(slots=True)
class Vehicle:
    """A vehicle, its fixed attributes and its state.

    A vehicle is committed to its current leg (``current``, or the return home when ``returning``): it
    finishes that leg and its service and is *free* at ``node`` at ``free_min``. ``route`` is the plan after
    that and the only part a decision may change.
    """

    id: int
    type_name: str
    capacity: int
    speed_factor: float
    cost_per_km: float
    cost_per_hour: float
    home: int  # key index of its center
    shift_end_min: float
    mode: int = 0  # index of its mode's travel matrices in the World (0: the road matrix vans use)
    mode_name: str = "van"  # van | cargo_bike | drone
    range_km: float = math.inf  # battery: km per sortie (between two visits of home)
    recharge_min: float = 0.0  # battery: recharge after a flight home
    returns_home: bool = True  # False (``fleet.idle_at: last_drop``): idle, it waits at its last stop
    node: int = 0
    free_min: float = 0.0
    load: int = 0  # size of the parcels on board now
    free_load: int = 0  # load once the current stop is done: the plan starts with it
    current: Stop | None = None
    current_start_min: float = math.nan  # service start of the current stop
    returning: bool = False
    waiting: bool = False  # routing mode: holding at ``node`` (free now) until a parcel of its plan is ready
    route: list[Stop] = field(default_factory=list)
    dist_km: float = 0.0  # committed so far
    duty_min: float = 0.0  # committed so far: time on the road, waiting and serving
    flown_km: float = 0.0  # km since it last reached home, once its current leg is done (battery range)

    @property
    def idle(self) -> bool:
        return self.current is None and not self.returning and not self.route


# Builds a NamedTuple from a tuple of all its fields, as its ``_make`` does, without the Python-level
# ``__new__`` frame (~1,700 instructions less a tuple): for the tuples built on every env step.
as_named = tuple.__new__


class DecisionKind(IntEnum):
    DISPATCH = 0  # who takes the pending order (``Simulator.assign`` / ``reject`` / ``defer``)
    ROUTE = 1  # which planned stop a free vehicle serves next (``Simulator.route`` / ``wait``; routing mode)
    WAVE = 2  # which pooled orders go now, as routes (``Simulator.release``; ``dispatch.mode: wave``)


class Decision(NamedTuple):
    """The decision the simulator is waiting for: an order to dispatch, or a vehicle's next stop."""

    kind: DecisionKind
    order: Order | None  # DISPATCH: the pending order (``sim.current``); None for ROUTE and WAVE
    vehicle: int  # ROUTE: the vehicle whose next stop to choose (``sim.routing_vehicle``); else -1


class CostBreakdown(NamedTuple):
    """Cost by kind; ``total`` is their sum."""

    distance: float
    driver_time: float
    lateness: float
    rejection: float
    # attempts.*: failed_penalty per attempt with the customer absent, reject_penalty per failed order
    failures: float = 0.0

    @property
    def total(self) -> float:
        return self.distance + self.driver_time + self.lateness + self.rejection + self.failures


class Ledger(NamedTuple):
    """Running totals that reward functions compare before and after a step."""

    expected_cost: float  # committed cost + the cost of every vehicle's remaining plan
    n_on_time: int
    n_late: int
    n_rejected: int
    late_min: float
    n_failed: int = 0  # orders failed for good (attempts.*)


class Event(NamedTuple):
    """One entry of the event log."""

    time_min: float
    kind: str  # arrival, ready, dispatch, reject, defer, pickup, delivery, vehicle_idle, route, wait,
    # failed_attempt, returned, wave
    order: int  # -1 when not about an order
    vehicle: int  # -1 when not about a vehicle
