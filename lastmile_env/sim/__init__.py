"""The last-mile delivery simulator: no gymnasium here, so every consumer drives the same code."""

from lastmile_env.sim.insertion import AppendInsertion, CheapestInsertion, Insertion, InsertionRule
from lastmile_env.sim.invariants import InvariantError, check_invariants
from lastmile_env.sim.plan import PlanEval, evaluate_plan
from lastmile_env.sim.simulator import InfeasibleAssignment, SimulationError, Simulator
from lastmile_env.sim.types import (
    CostBreakdown,
    Event,
    Ledger,
    Order,
    OrderStatus,
    ServiceOption,
    Stop,
    StopKind,
    Vehicle,
)
from lastmile_env.sim.world import VehicleSpec, World, build_world, world_for

__all__ = [
    "AppendInsertion",
    "CheapestInsertion",
    "CostBreakdown",
    "Event",
    "InfeasibleAssignment",
    "Insertion",
    "InsertionRule",
    "InvariantError",
    "Ledger",
    "Order",
    "OrderStatus",
    "PlanEval",
    "ServiceOption",
    "SimulationError",
    "Simulator",
    "Stop",
    "StopKind",
    "Vehicle",
    "VehicleSpec",
    "World",
    "build_world",
    "check_invariants",
    "evaluate_plan",
    "world_for",
]
