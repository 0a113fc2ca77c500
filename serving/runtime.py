"""``Dispatcher``: a JSON snapshot of the live system -> a dispatch decision, with the exported network.

Needs neither torch nor Stable-Baselines3 (nothing this module imports loads them): onnxruntime runs the ONNX
file (nothing is unpickled), ``Simulator.from_snapshot`` rebuilds the decision point from the snapshot,
``DispatchObservation`` encodes it exactly as in training, and the simulator does all travel, insertion and
ETA arithmetic (``Simulator.assign``): nothing here re-implements them.

Fleet rule: the scenario's fleet defines the vehicles. Vehicle ``v{i}`` is the scenario's vehicle ``i``
(its type, capacity, speed, costs, home center and shift end); a request names vehicles by these ids and its
capacities (and types, when given) must match; a drone's battery state comes with it (``flown_km``, within
its range; its recharge as ``free_at_min``). A request may leave vehicles out (e.g. off duty): the network
serves the scenario's whole fleet only, so such a request is decided by the ``insertion`` heuristic, and the
response says so. The other fallbacks: onnxruntime fails, or returns non-finite or masked-action logits.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from agents.base import DEFER, REJECT, decision_from_logits
from agents.heuristics.reopt import ReoptPolicy
from agents.heuristics.rules import InsertionPolicy
from lastmile_env.config import ScenarioConfig, load_scenario, training_scenario_warning
from lastmile_env.observations import DispatchObservation
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import Order, OrderStatus, ServiceOption, Stop, StopKind, Vehicle, has_battery
from lastmile_env.sim.world import World, world_for
from serving.manifest import SCHEMA_VERSION, Manifest, load_manifest
from serving.schema import (
    CenterInfo,
    DispatchRequest,
    DispatchResponse,
    FleetSlot,
    NewOrderIn,
    PlannedStop,
    ReoptimizeResponse,
    ScenarioInfo,
    SnapshotIn,
    VehicleIn,
    VehiclePlan,
)

log = logging.getLogger("lastmile.serving.decisions")

Loc = tuple[str | int, ...]
_KIND_NAMES: dict[StopKind, Literal["pickup", "delivery"]] = {
    StopKind.PICKUP: "pickup",
    StopKind.DELIVERY: "delivery",
}


def field_path(loc: Loc) -> str:
    """``("vehicles", 0, "stops", 1)`` -> ``vehicles[0].stops[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class SnapshotError(ValueError):
    """A snapshot that does not fit together or does not fit the scenario; ``loc`` is the field."""

    def __init__(self, loc: Loc, msg: str) -> None:
        super().__init__(f"{field_path(loc)}: {msg}")
        self.loc = loc
        self.msg = msg


@dataclass
class Snapshot:
    """A request rebuilt as a simulator standing at the decision, and the ids to answer in."""

    sim: Simulator
    vehicle_ids: list[str]  # simulator vehicle index -> request id
    order_ids: list[str]  # simulator order index -> request id
    missing: list[str]  # fleet slots the request leaves out


def _json_node(node: Hashable) -> int | str:
    return int(node) if isinstance(node, int | np.integer) else str(node)


class Dispatcher:
    """Loads an exported model for one scenario and decides snapshots (see the module docstring).

    Args:
        model_path: the ``.onnx`` file written by ``lastmile export``.
        scenario: the scenario whose road graph, fleet and costs the live system runs (name, YAML path or
            config).
        manifest_path: default ``<model>.json``; checked against this code and the model's sha256.
        reoptimize_every_min: the policy served re-optimizes the fleet's plans this often (``learned`` is
            the network plus PyVRP every 30 min): the client calls ``reoptimize`` (``POST /v1/reoptimize``)
            at that rhythm; None: the network alone. ``reoptimize`` works either way.
        reopt_iterations: PyVRP's iterations per re-optimization (default: ``reopt``'s, 50); the result
            depends only on the snapshot.
    """

    def __init__(
        self,
        model_path: str | Path,
        scenario: str | Path | ScenarioConfig,
        manifest_path: str | Path | None = None,
        reoptimize_every_min: float | None = None,
        reopt_iterations: int | None = None,
    ) -> None:
        if reoptimize_every_min is not None and not reoptimize_every_min > 0:
            raise ValueError(f"reoptimize_every_min must be positive, got {reoptimize_every_min}")
        if reopt_iterations is not None and reopt_iterations < 1:
            raise ValueError(f"reopt_iterations must be >= 1, got {reopt_iterations}")
        self.reoptimize_every_min = reoptimize_every_min
        self._reopt = ReoptPolicy(max_iterations=reopt_iterations, seed=0)
        self.manifest: Manifest = load_manifest(model_path, manifest_path)
        self.config = load_scenario(scenario)
        warning = training_scenario_warning(self.manifest.training, self.config)
        self.warnings: list[str] = [warning] if warning else []
        self.world: World = world_for(self.config)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one decision is a few small matmuls: threads only add overhead
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.encoder = DispatchObservation(self.world, defer=self.manifest.defer)
        self.fleet_ids = [f"v{i}" for i in range(self.world.n_vehicles)]
        self._slot = {vid: i for i, vid in enumerate(self.fleet_ids)}
        self._node_index: dict[int | str, int] = {}
        for k, node in enumerate(self.world.matrix.nodes):
            for alias in (node, str(node)):
                if isinstance(alias, int | str):
                    self._node_index.setdefault(alias, k)
            if isinstance(node, str) and node.lstrip("-").isdigit():
                self._node_index.setdefault(int(node), k)
        orders = self.config.orders
        self.default_prep_min = (orders.prep_min.low + orders.prep_min.high) / 2.0
        self.default_service_min = (orders.service_min.low + orders.service_min.high) / 2.0
        self._insertion = InsertionPolicy()

    # ------------------------------------------------------------------------------------------ queries
    def node_id(self, key: int) -> int | str:
        """The graph node id of a key index."""
        return _json_node(self.world.matrix.nodes[key])

    def scenario_info(self) -> ScenarioInfo:
        """What a client needs to build requests: centers, fleet slots, defaults."""
        cfg = self.config
        return ScenarioInfo(
            name=cfg.name,
            schema_version=SCHEMA_VERSION,
            shift_start_hour=cfg.shift_start_hour,
            shift_end_min=cfg.fleet.shift_end_min,
            centers=[CenterInfo(index=c, node=self.node_id(c)) for c in range(self.world.n_depots)],
            fleet=[
                FleetSlot(
                    id=vid,
                    type=s.type_name,
                    capacity=s.capacity,
                    home_center=s.home,
                    mode=s.mode_name,
                    range_km=s.range_km if s.range_km < math.inf else None,
                    recharge_min=s.recharge_min if has_battery(s) else None,
                )
                for vid, s in zip(self.fleet_ids, self.world.vehicles, strict=True)
            ],
            n_key_nodes=len(self.world.matrix.nodes),
            default_ready_after_min=self.default_prep_min,
            default_service_min=self.default_service_min,
            dispatch_tick_min=cfg.dispatch.tick_min,
            max_defer_min=cfg.dispatch.max_defer_min,
        )

    def example_request(self) -> DispatchRequest:
        """The start of a shift: every vehicle idle at its center, one same-day order (used for warm-up)."""
        address = int(self.world.addresses[0])
        return DispatchRequest(
            now_min=0.0,
            vehicles=[
                VehicleIn(id=vid, capacity=s.capacity, node=self.node_id(s.home), load=0)
                for vid, s in zip(self.fleet_ids, self.world.vehicles, strict=True)
            ],
            new_order=NewOrderIn(
                node=self.node_id(address), size=1, deadline_min=self.config.orders.deadline_min
            ),
        )

    def warm_up(self) -> None:
        """Decide one example request, so that the compiled kernels are loaded before the first client."""
        self.decide(self.example_request(), request_id="warm-up", log_decision=False)

    # -------------------------------------------------------------------------------------- decisions
    def decide(
        self, request: DispatchRequest, request_id: str = "", log_decision: bool = True
    ) -> DispatchResponse:
        """The decision for the request's new order, its vehicle's new plan and the promised ETA.

        Raises SnapshotError for an inconsistent request and the simulator's InvariantError /
        SimulationError for a state it finds inconsistent (the server answers 422 with the message).
        """
        started = time.perf_counter()
        snap = self.snapshot(request)
        sim = snap.sim
        policy: Literal["learned", "insertion"] = "learned"
        reason: str | None = None
        action: int | None = None
        if snap.missing:
            reason = (
                f"vehicles {', '.join(snap.missing)} are not in the request: the model serves the "
                f"scenario's whole fleet of {len(self.fleet_ids)}"
            )
        else:
            action, reason = self._model_action(sim)
        if action is None:
            policy, action = "insertion", self._insertion.act(sim)
        response = self._apply(snap, action, request_id, policy, reason, started)
        if log_decision and log.isEnabledFor(logging.INFO):
            log.info(
                json.dumps(
                    {
                        "event": "decision",
                        "request_id": request_id,
                        "order": request.new_order.id,
                        "decision": response.decision,
                        "vehicle": response.vehicle_id,
                        "eta_min": response.eta_min,
                        "policy": policy,
                        "fallback_reason": reason,
                        "latency_ms": round(response.latency_ms, 3),
                    }
                )
            )
        return response

    def observe(self, sim: Simulator) -> dict[str, np.ndarray]:
        """The network's inputs for the simulator's pending decision (batch of one; whole fleet only)."""
        obs = self.encoder.encode(sim)
        assert isinstance(obs, dict)
        return {
            "order": obs["order"][None],
            "vehicles": obs["vehicles"][None],
            "global": obs["global"][None],
            "action_mask": obs["action_mask"][None].astype(np.float32),
        }

    def logits(self, sim: Simulator) -> np.ndarray:
        """The network's masked logits for the simulator's pending decision."""
        return np.asarray(self.session.run(["logits"], self.observe(sim))[0][0])

    def _model_action(self, sim: Simulator) -> tuple[int | None, str | None]:
        """The network's decision (vehicle index, REJECT or DEFER), or None and why it cannot be used.

        The rule is ``LearnedPolicy.act``'s: ``decision_from_logits``.
        """
        feeds = self.observe(sim)
        try:
            logits = np.asarray(self.session.run(["logits"], feeds)[0][0])
        except Exception as exc:  # onnxruntime's errors share no base class below Exception
            return None, f"model failed: {type(exc).__name__}: {exc}"
        if not np.all(np.isfinite(logits)):
            return None, "model returned non-finite logits"
        decision = decision_from_logits(logits, len(sim.vehicles))
        action = {REJECT: len(sim.vehicles), DEFER: len(sim.vehicles) + 1}.get(decision, decision)
        if not self.encoder.mask(sim)[action]:
            return None, f"model chose the masked action {action}"
        return decision, None

    def _apply(
        self,
        snap: Snapshot,
        action: int,
        request_id: str,
        policy: Literal["learned", "insertion"],
        reason: str | None,
        started: float,
    ) -> DispatchResponse:
        """Carry out the decision on the simulator and read the plan and ETA back from it."""
        sim = snap.sim
        order = sim.current
        assert order is not None
        decision: Literal["assign", "reject", "defer"] = "assign"
        vehicle_id: str | None = None
        eta: float | None = None
        again: float | None = None
        stops: list[PlannedStop] = []
        if action == REJECT:
            sim.reject()
            decision = "reject"
        elif action == DEFER:
            sim.defer()
            sim.advance()  # runs the vehicles to the next tick, where the order comes back
            decision, again = "defer", sim.now
        else:
            sim.assign(action)
            vehicle_id, eta = snap.vehicle_ids[action], order.promised_eta_min
            stops = self._plan_out(snap, action)
        # Built from the simulator's own values: constructed without validating them again.
        return DispatchResponse.model_construct(
            request_id=request_id,
            decision=decision,
            vehicle_id=vehicle_id,
            eta_min=eta,
            stops=stops,
            decide_again_at_min=again,
            policy=policy,
            fallback_reason=reason,
            model_sha256=self.manifest.model_sha256,
            latency_ms=(time.perf_counter() - started) * 1e3,
        )

    def reoptimize(self, request: SnapshotIn, request_id: str = "") -> ReoptimizeResponse:
        """Every vehicle's plan re-optimized: PyVRP proposes plans for the whole fleet (``reopt``'s model and
        budget, seed 0) and the simulator keeps them only when it prices them lower.

        Raises SnapshotError / InvariantError / SimulationError as ``decide`` does.
        """
        started = time.perf_counter()
        snap = self.snapshot(request)
        sim = snap.sim
        before = sim.expected_cost
        self._reopt.reset()  # seed 0 for every snapshot, and no record kept from one request to the next
        applied = self._reopt.reoptimize(sim) != 0.0
        return ReoptimizeResponse.model_construct(
            request_id=request_id,
            applied=applied,
            cost_before=before,
            cost_after=sim.expected_cost,
            plans=[
                VehiclePlan.model_construct(vehicle_id=vid, stops=self._plan_out(snap, vi))
                for vi, vid in enumerate(snap.vehicle_ids)
            ],
            solver=self._reopt.budget.describe(),
            latency_ms=(time.perf_counter() - started) * 1e3,
        )

    def _plan_out(self, snap: Snapshot, vi: int) -> list[PlannedStop]:
        """Vehicle ``vi``'s plan as the API gives it: the stop under way first, then the planned stops."""
        v, plan = snap.sim.vehicles[vi], snap.sim.plan(vi)
        stops = [] if v.current is None else [self._stop_out(snap, v.current, v.current_start_min, True)]
        return stops + [
            self._stop_out(snap, s, float(plan.starts_min[k]), False) for k, s in enumerate(v.route)
        ]

    def _stop_out(self, snap: Snapshot, stop: Stop, start_min: float, under_way: bool) -> PlannedStop:
        # Validated construction: pydantic-core's checks cost less than model_construct's Python.
        return PlannedStop(
            order_id=snap.order_ids[stop.order],
            kind=_KIND_NAMES[stop.kind],
            node=self.node_id(stop.loc),
            planned_min=None if math.isnan(start_min) else start_min,
            under_way=under_way,
        )

    # --------------------------------------------------------------------------------------- snapshot
    def _key(self, node: int | str, loc: Loc) -> int:
        key = self._node_index.get(node)
        if key is None or isinstance(node, bool):
            raise SnapshotError(
                (*loc, "node"), f"node {node!r} is not on the scenario's graph (its addresses and centers)"
            )
        return key

    def _center(self, center: int, loc: Loc) -> int:
        if not 0 <= center < self.world.n_depots:
            raise SnapshotError(
                (*loc, "center"), f"{center} is not a center (0 .. {self.world.n_depots - 1})"
            )
        return center

    def snapshot(self, request: SnapshotIn) -> Snapshot:
        """Check the request against itself and the scenario and build the simulator at the decision (a
        ``DispatchRequest``: its new order pending) or at the snapshot's time (no decision pending).

        Vehicles are placed in fleet order; orders keep the request's order, the new one last.
        """
        new_order = request.new_order if isinstance(request, DispatchRequest) else None
        world, now = self.world, request.now_min
        slots: dict[int, tuple[int, VehicleIn]] = {}
        for i, v in enumerate(request.vehicles):
            slot = self._slot.get(v.id)
            if slot is None:
                raise SnapshotError(
                    ("vehicles", i, "id"),
                    f"unknown vehicle {v.id!r}: the scenario's fleet is v0 .. v{len(self.fleet_ids) - 1}",
                )
            if slot in slots:
                raise SnapshotError(("vehicles", i, "id"), f"vehicle {v.id!r} is listed twice")
            spec = world.vehicles[slot]
            if v.type is not None and v.type != spec.type_name:
                raise SnapshotError(
                    ("vehicles", i, "type"), f"{v.type!r}, but fleet slot {v.id} is a {spec.type_name!r}"
                )
            if v.capacity != spec.capacity:
                raise SnapshotError(
                    ("vehicles", i, "capacity"),
                    f"{v.capacity}, but fleet slot {v.id} ({spec.type_name}) has capacity {spec.capacity}",
                )
            if v.load > v.capacity:
                raise SnapshotError(("vehicles", i, "load"), f"{v.load} exceeds the capacity {v.capacity}")
            if v.flown_km > 0.0 and not has_battery(spec):
                raise SnapshotError(
                    ("vehicles", i, "flown_km"),
                    f"{v.flown_km}, but fleet slot {v.id} ({spec.type_name}, {spec.mode_name}) has no "
                    "battery: give 0 or leave it out",
                )
            if v.flown_km > spec.range_km + 1e-9:
                raise SnapshotError(
                    ("vehicles", i, "flown_km"),
                    f"{v.flown_km} km is beyond the range of fleet slot {v.id} "
                    f"({spec.range_km} km per charge)",
                )
            slots[slot] = (i, v)
        present = sorted(slots)  # simulator vehicle index -> fleet slot

        order_index: dict[str, int] = {}
        # (pickup, delivery) key indices of each order: (center, address), a return's (address, center)
        places: list[tuple[int, int]] = []
        node_index, n_centers = self._node_index, world.n_depots
        for j, o in enumerate(request.orders):
            if o.id in order_index:
                raise SnapshotError(("orders", j, "id"), f"order {o.id!r} is listed twice")
            order_index[o.id] = j
            center, address = o.center, node_index.get(o.node)
            if address is None or isinstance(o.node, bool) or not 0 <= center < n_centers:
                # not a center or not a node: _center / _key raise the error that names the field
                center, address = self._center(o.center, ("orders", j)), self._key(o.node, ("orders", j))
            places.append((address, center) if o.kind == "return" else (center, address))
        if new_order is not None and new_order.id in order_index:
            raise SnapshotError(("new_order", "id"), f"{new_order.id!r} is already one of the orders")

        # The plans as simulator stops; each order on one vehicle, at most one pickup, then one delivery.
        vehicle_of: dict[int, int] = {}
        picked: set[int] = set()
        delivered: set[int] = set()
        plans: list[list[Stop]] = []
        pickup, delivery = StopKind.PICKUP, StopKind.DELIVERY  # bound once: enum lookups cost per stop
        for vi, slot in enumerate(present):
            i, v = slots[slot]
            sequence = v.stops if v.current_stop is None else [v.current_stop, *v.stops]
            plan: list[Stop] = []
            for k, stop in enumerate(sequence):
                j = order_index.get(stop.order_id, -1)
                problem = None
                if j < 0:
                    problem = f"unknown order {stop.order_id!r}"
                elif vehicle_of.setdefault(j, vi) != vi:
                    other = slots[present[vehicle_of[j]]][1].id
                    problem = f"order {stop.order_id!r} is also planned on vehicle {other!r}"
                elif j in delivered:
                    problem = f"order {stop.order_id!r} has a {stop.kind} after its delivery"
                elif stop.kind == "pickup" and j in picked:
                    problem = f"order {stop.order_id!r} has a second pickup"
                if problem is not None:
                    current = v.current_stop is not None
                    where: Loc = ("current_stop",) if current and k == 0 else ("stops", k - current)
                    raise SnapshotError(("vehicles", i, *where, "order_id"), problem)
                if stop.kind == "pickup":
                    picked.add(j)
                    plan.append(Stop(pickup, j, places[j][0]))
                else:
                    delivered.add(j)
                    plan.append(Stop(delivery, j, places[j][1]))
            plans.append(plan)

        orders: list[Order] = []
        on_board = [0] * len(present)
        assigned, carried = OrderStatus.ASSIGNED, OrderStatus.ON_BOARD  # bound once, as above
        window, same_day = ServiceOption.WINDOW, ServiceOption.SAME_DAY
        for j, o in enumerate(request.orders):
            if j not in delivered:
                what = "in no vehicle's plan" if j not in picked else "picked up but never delivered"
                raise SnapshotError(("orders", j, "id"), f"order {o.id!r} is {what}")
            status = assigned if j in picked else carried
            if status == carried:
                on_board[vehicle_of[j]] += o.size
            is_return = o.kind == "return"
            # A return is collected in [max(ready, earliest), due]: its pickup opens at ready_min.
            ready = max(o.ready_min, o.earliest_min) if is_return else o.ready_min
            orders.append(
                Order(
                    id=j,
                    arrival_min=now if o.arrival_min is None else min(now, o.arrival_min),
                    center=places[j][0],
                    loc=places[j][1],
                    size=o.size,
                    ready_min=ready,
                    service_min=o.service_min,
                    option=window if is_return else same_day,
                    earliest_min=ready if is_return else o.earliest_min,
                    due_min=o.due_min,
                    status=status,
                    vehicle=vehicle_of[j],
                    is_return=is_return,
                )
            )
        if new_order is not None:
            orders.append(self._new_order(new_order, now, len(orders)))
        vehicles = [
            self._vehicle(vi, slot, slots[slot], plans[vi], orders, on_board[vi], now)
            for vi, slot in enumerate(present)
        ]
        pending = None if new_order is None else len(orders) - 1
        sim = Simulator.from_snapshot(world, now, orders, vehicles, pending=pending)
        self._check_batteries(sim, [slots[slot] for slot in present])
        counters = request.counters
        if counters is not None:
            settled = counters.on_time + counters.late + counters.rejected
            if counters.orders_arrived < settled + len(orders):
                raise SnapshotError(
                    ("counters", "orders_arrived"),
                    f"{counters.orders_arrived} is fewer than the settled orders ({settled}) and the open "
                    f"ones ({len(request.orders)}{' and the new one' if new_order is not None else ''})",
                )
            # Simulator.from_snapshot knows only the snapshot's orders; the day's counters feed the
            # observation's global features (backlog, on-time rate, rejected share, arrivals).
            sim.n_arrived = counters.orders_arrived
            sim.n_on_time, sim.n_late, sim.n_rejected = counters.on_time, counters.late, counters.rejected
        return Snapshot(
            sim=sim,
            vehicle_ids=[slots[slot][1].id for slot in present],
            order_ids=[o.id for o in request.orders] + ([] if new_order is None else [new_order.id]),
            missing=[vid for slot, vid in enumerate(self.fleet_ids) if slot not in slots],
        )

    def _check_batteries(self, sim: Simulator, given: list[tuple[int, VehicleIn]]) -> None:
        """A battery vehicle's plan must stay within range from the km it has flown (``flown_km``)."""
        for vi, (i, v) in enumerate(given):
            if v.flown_km > 0.0 and not sim.plan(vi).in_range:
                raise SnapshotError(
                    ("vehicles", i, "flown_km"),
                    f"{v.flown_km} km flown: its plan and the flight home to its center would exceed its "
                    f"range of {sim.vehicles[vi].range_km} km",
                )

    def _new_order(self, new: NewOrderIn, now: float, index: int) -> Order:
        loc = self._key(new.node, ("new_order",))
        center = (
            int(self.world.nearest_depot[loc])
            if new.center is None
            else self._center(new.center, ("new_order",))
        )
        arrival = now if new.arrival_min is None else new.arrival_min
        if arrival > now + 1e-9:
            raise SnapshotError(("new_order", "arrival_min"), f"{arrival} is after now_min {now}")
        if new.kind == "return":
            return self._new_return(new, index, loc, center, arrival)
        if new.window is not None:
            option, earliest, due = ServiceOption.WINDOW, new.window.start_min, new.window.end_min
        else:
            assert new.deadline_min is not None
            option, earliest, due = ServiceOption.SAME_DAY, arrival, new.deadline_min
            if due < arrival:
                raise SnapshotError(("new_order", "deadline_min"), f"{due} is before its arrival {arrival}")
        return Order(
            id=index,
            arrival_min=arrival,
            center=center,
            loc=loc,
            size=new.size,
            ready_min=arrival + self.default_prep_min if new.ready_min is None else new.ready_min,
            service_min=self.default_service_min if new.service_min is None else new.service_min,
            option=option,
            earliest_min=earliest,
            due_min=due,
        )

    def _new_return(self, new: NewOrderIn, index: int, address: int, center: int, arrival: float) -> Order:
        """A return: collected at ``address`` in its window (from ``ready_min`` when later), then brought
        back to ``center``."""
        if new.window is None:
            raise SnapshotError(("new_order", "window"), "a return needs its collection window")
        if new.deadline_min is not None:
            raise SnapshotError(
                ("new_order", "deadline_min"), "a return is collected in its window: give no deadline_min"
            )
        start = new.window.start_min if new.ready_min is None else max(new.window.start_min, new.ready_min)
        if start > new.window.end_min:
            raise SnapshotError(
                ("new_order", "ready_min"), f"{new.ready_min} is after the window's end {new.window.end_min}"
            )
        return Order(
            id=index,
            arrival_min=arrival,
            center=address,
            loc=center,
            size=new.size,
            ready_min=start,
            service_min=self.default_service_min if new.service_min is None else new.service_min,
            option=ServiceOption.WINDOW,
            earliest_min=start,
            due_min=new.window.end_min,
            is_return=True,
        )

    def _vehicle(
        self,
        vi: int,
        slot: int,
        given: tuple[int, VehicleIn],
        plan: list[Stop],
        orders: Sequence[Order],
        on_board: int,
        now: float,
    ) -> Vehicle:
        i, v = given
        spec = self.world.vehicles[slot]
        node = self._key(v.node, ("vehicles", i))
        if v.load != on_board:
            raise SnapshotError(
                ("vehicles", i, "load"),
                f"{v.load}, but the parcels on board (orders it delivers without a pickup in its plan) "
                f"total {on_board}",
            )
        if v.returning and node != spec.home:
            raise SnapshotError(
                ("vehicles", i, "node"),
                f"a returning vehicle's node is its center ({self.node_id(spec.home)}), not {v.node!r}",
            )
        busy = v.returning or v.current_stop is not None
        if busy and v.free_at_min is None:
            raise SnapshotError(
                ("vehicles", i, "free_at_min"), "required with a current_stop or when returning"
            )
        if busy and v.free_at_min is not None and v.free_at_min < now - 1e-9:
            raise SnapshotError(
                ("vehicles", i, "free_at_min"),
                f"{v.free_at_min} is before now_min {now} with a leg under way",
            )
        free_min = max(now, v.free_at_min) if v.free_at_min is not None else now
        if v.flown_km > 0.0 and node == spec.home:
            raise SnapshotError(
                ("vehicles", i, "flown_km"),
                f"{v.flown_km}, but the vehicle is free next at its center ({self.node_id(spec.home)}), "
                "where its battery is charged: flown_km is 0 there",
            )
        if not busy and free_min > now + 1e-9 and has_battery(spec):
            # An idle battery vehicle free later than now: recharging, which happens at its center only.
            if node != spec.home:
                raise SnapshotError(
                    ("vehicles", i, "free_at_min"),
                    f"{v.free_at_min} is after now_min {now}, but an idle drone is free later only while it "
                    f"recharges at its center ({self.node_id(spec.home)}), not at {v.node!r}",
                )
            if free_min > now + spec.recharge_min + 1e-9:
                raise SnapshotError(
                    ("vehicles", i, "free_at_min"),
                    f"{v.free_at_min} is more than its recharge time ({spec.recharge_min} min) after now_min "
                    f"{now}: an idle drone at its center is free now or once recharged",
                )

        current = plan[0] if v.current_stop is not None else None
        if current is not None and node != current.loc:
            raise SnapshotError(
                ("vehicles", i, "node"),
                f"{v.node!r}, but the stop under way is at node {self.node_id(current.loc)}",
            )
        free_load = v.load
        if current is not None:
            size = orders[current.order].size
            free_load += size if current.kind == StopKind.PICKUP else -size
        return spec.vehicle(
            vi,
            node=node,
            free_min=free_min,
            load=v.load,
            free_load=free_load,
            current=current,
            returning=v.returning,
            route=plan[1:] if current is not None else plan,
            flown_km=v.flown_km,
        )
