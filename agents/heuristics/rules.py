"""Rule-based dispatch policies. Each reads the simulator and re-implements no travel, insertion or cost."""

from __future__ import annotations

import numpy as np

from agents.base import DEFER, REJECT
from lastmile_env.dispatch_rules import cheapest_insertion_vehicle
from lastmile_env.sim.insertion import Insertion
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import Order


def feasible_insertions(sim: Simulator, order: Order | None = None) -> dict[int, Insertion]:
    """Vehicle -> the insertion rule's placement of the order, for every vehicle that can take it."""
    found = {v: sim.insertion(v, order) for v in range(len(sim.vehicles))}
    return {v: ins for v, ins in found.items() if ins is not None}


class RandomPolicy:
    """A vehicle drawn uniformly among those that can take the order; reject only when none can."""

    name = "random"

    def __init__(self) -> None:
        self._rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, sim: Simulator) -> int:
        options = sorted(feasible_insertions(sim))
        return int(self._rng.choice(options)) if options else REJECT


class NearestPolicy:
    """The feasible vehicle closest (road km from where it is next free) to the order's center; ties (e.g.
    vans waiting at the center) go to the one with the fewest planned stops."""

    name = "nearest"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, sim: Simulator) -> int:
        order = sim.current
        assert order is not None
        dist = sim.world.dist_km
        options = feasible_insertions(sim)
        if not options:
            return REJECT
        return min(
            options, key=lambda v: (dist[sim.vehicles[v].node][order.center], len(sim.vehicles[v].route), v)
        )


class LeastLoadedPolicy:
    """The feasible vehicle with the fewest planned stops; ties go to the one closest to the center."""

    name = "least_loaded"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, sim: Simulator) -> int:
        order = sim.current
        assert order is not None
        dist = sim.world.dist_km
        options = feasible_insertions(sim)
        if not options:
            return REJECT

        def key(v: int) -> tuple[int, float, int]:
            vehicle = sim.vehicles[v]
            return (len(vehicle.route) + (vehicle.current is not None), dist[vehicle.node][order.center], v)

        return min(options, key=key)


class InsertionPolicy:
    """The vehicle whose cheapest feasible insertion adds the least cost; reject when even that costs more
    than the rejection penalty (or no vehicle can take the order). With ``reject=False`` it never rejects
    an order some vehicle can take (``insertion_always``)."""

    name = "insertion"

    def __init__(self, reject: bool = True) -> None:
        self.reject = reject
        if not reject:
            self.name = "insertion_always"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, sim: Simulator) -> int:
        best = cheapest_insertion_vehicle(sim, self.reject)
        return REJECT if best is None else best


class RegretPolicy:
    """Regret-2 insertion with deferral.

    An order's regret is what it loses if it cannot have its best vehicle: the second-cheapest insertion
    cost minus the cheapest (the rejection penalty stands in for a missing second). On arrival, an order
    with a regret below ``defer_below`` whose best placement leaves at least ``min_slack_min`` before its
    due time is deferred to the next dispatch tick, when more orders are known. At a tick the deferred
    orders are decided highest regret first, each into its cheapest vehicle (reject when that costs more
    than the penalty).
    """

    name = "regret"

    def __init__(self, defer_below: float = 4.0, min_slack_min: float = 45.0) -> None:
        self.defer_below = defer_below
        self.min_slack_min = min_slack_min

    def reset(self, seed: int | None = None) -> None:
        pass

    def _regret(self, sim: Simulator, order: Order) -> tuple[float, int, Insertion | None]:
        options = feasible_insertions(sim, order)
        penalty = sim.world.config.costs.reject_penalty
        costs = sorted((ins.delta_cost, v) for v, ins in options.items())
        if not costs:
            return 0.0, REJECT, None
        second = costs[1][0] if len(costs) > 1 else penalty
        best_v = costs[0][1]
        return second - costs[0][0], best_v, options[best_v]

    def act(self, sim: Simulator) -> int:
        order = sim.current
        assert order is not None
        if len(sim.pending) > 1:  # a tick batch: decide the order that loses most by waiting first
            regrets = [(self._regret(sim, o)[0], -o.id) for o in sim.pending]
            chosen = -max(regrets)[1]
            if chosen != order.id:
                sim.prioritize(chosen)
                order = sim.current
                assert order is not None
        regret, best, ins = self._regret(sim, order)
        if ins is None:
            return REJECT
        on_arrival = sim.now < order.arrival_min + 1e-9
        relaxed = regret < self.defer_below and order.due_min - ins.eta_min >= self.min_slack_min
        if on_arrival and relaxed and sim.can_defer():
            return DEFER
        return best if ins.delta_cost <= sim.world.config.costs.reject_penalty else REJECT
