"""Order-stream generators: a seeded generator turns an RNG into the day's orders.

An ``OrderGenerator`` is any callable ``(world, rng) -> list[Order]`` sorted by arrival. The simulator draws
the whole day up front from its own arrivals stream, so a policy's decisions can never change which orders
arrive: comparisons of policies over the same seeds are exactly paired.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from lastmile_env.config import ORDER_LOGS_DIR, ConfigError, OrdersConfig, resolve_data_path
from lastmile_env.sim.types import Order, ServiceOption
from lastmile_env.sim.world import World

if TYPE_CHECKING:
    from lastmile_env.sources.order_log import OrderLog

OrderGenerator = Callable[[World, np.random.Generator], list[Order]]


def arrival_rates_per_hour(cfg: OrdersConfig, clock_hours: np.ndarray) -> np.ndarray:
    """The Poisson rate at each clock hour: the base rate times every peak that covers the hour."""
    rates = np.full(clock_hours.shape, float(cfg.rate_per_hour))
    hours = clock_hours % 24
    for peak in cfg.peaks:
        covered = (peak.start_hour <= hours) & (hours < peak.end_hour)
        rates[covered] *= peak.multiplier
    return rates


def poisson_arrivals(cfg: OrdersConfig, shift_start_hour: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times (minutes since shift start) of a non-homogeneous Poisson process, by thinning."""
    peak_factor = 1.0
    for peak in cfg.peaks:
        peak_factor *= max(1.0, peak.multiplier)
    max_rate_per_min = cfg.rate_per_hour * peak_factor / 60.0
    horizon = cfg.last_arrival_min
    n = rng.poisson(max_rate_per_min * horizon)
    times = np.sort(rng.uniform(0.0, horizon, size=n))
    accept = arrival_rates_per_hour(cfg, shift_start_hour + times / 60.0) / 60.0
    keep = rng.uniform(size=n) * max_rate_per_min < accept
    return np.asarray(times[keep])


DUE_MARGIN_MIN = 30.0
_OPTIONS = tuple(ServiceOption)  # by value


def default_generator(world: World) -> OrderGenerator:
    """The scenario's order stream: its order log when ``orders.log`` is set, else Poisson arrivals; with
    ``orders.known_at_start`` the same day pre-booked (``KnownAtStart``)."""
    log = world.config.orders.log
    generator: OrderGenerator
    if log is None:
        generator = PoissonOrderGenerator()
    else:
        # imported here: order_log imports this module
        from lastmile_env.sources.order_log import OrderLogGenerator

        generator = OrderLogGenerator(_parsed_log(world), log.resample, log.volume)
    return KnownAtStart(generator) if world.config.orders.known_at_start else generator


class KnownAtStart:
    """A day of orders all known at the shift start (pre-booked, as for next-day delivery): the wrapped
    stream's orders, each arriving at 0 with its parcel prepared its preparation time after that; a
    same-day or express order is due by the end of the day (``DUE_MARGIN_MIN`` before the shift end), a
    window keeps its window. Order ids, places, sizes and windows are the wrapped day's."""

    def __init__(self, inner: OrderGenerator) -> None:
        self.inner = inner

    def __call__(self, world: World, rng: np.random.Generator) -> list[Order]:
        latest_due = world.config.fleet.shift_end_min - DUE_MARGIN_MIN
        orders = self.inner(world, rng)
        for o in orders:
            prep = o.ready_min - o.arrival_min
            o.arrival_min, o.ready_min = 0.0, prep
            if o.is_return:
                continue
            if o.option != ServiceOption.WINDOW:
                o.earliest_min, o.due_min = 0.0, max(o.due_min, latest_due)
        return orders


@functools.lru_cache(maxsize=8)
def _parsed_log(world: World) -> OrderLog:
    """The scenario's order log, read and checked once per world."""
    from lastmile_env.sources.order_log import OrderLog

    cfg = world.config.orders.log
    assert cfg is not None
    path = resolve_data_path(cfg.path, ORDER_LOGS_DIR)
    if path is None:
        raise ConfigError(f"orders.log.path: order log not found: {cfg.path}")
    return OrderLog.from_csv(path, world, shift_start=cfg.shift_start)


class PoissonOrderGenerator:
    """Orders from the scenario's ``orders`` section: Poisson arrivals with peaks, addresses uniform or
    around hotspots, uniform sizes / preparation / service times, and the customer's service option: a
    chosen window (``window_share``), express (``express_share``: a tight deadline) or same-day (the rest).
    A share ``returns_share`` of the orders are returns instead: the customer hands a parcel over in a
    window (drawn as a window order's) and it goes back to the center nearest the address; their draw comes
    after every other, so a day without returns is unchanged.

    Each order is fulfilled by the center nearest to its address. Deadlines and windows are pulled in to end
    ``DUE_MARGIN_MIN`` before the fleet's shift end. A day with no order at all is redrawn (an episode needs
    at least one decision).
    """

    def __call__(self, world: World, rng: np.random.Generator) -> list[Order]:
        cfg = world.config.orders
        times = poisson_arrivals(cfg, world.config.shift_start_hour, rng)
        while times.size == 0:
            times = poisson_arrivals(cfg, world.config.shift_start_hour, rng)
        n = times.size
        n_rows = world.address_weights.shape[0]
        hot = rng.uniform(size=n) < cfg.hotspot_share
        rows = np.where(hot & (n_rows > 1), rng.integers(1, max(n_rows, 2), size=n), 0)
        slots = _weighted_slots(world.address_weights, rows, rng)
        locs = world.addresses[slots]
        sizes = rng.integers(int(cfg.size.low), int(cfg.size.high) + 1, size=n)
        prep = rng.uniform(cfg.prep_min.low, cfg.prep_min.high, size=n)
        service = rng.uniform(cfg.service_min.low, cfg.service_min.high, size=n)
        choice = rng.uniform(size=n)  # one draw for the option: window, then express, then same-day
        window = choice < cfg.window_share
        express = choice < cfg.window_share + cfg.express_share
        lead = rng.uniform(cfg.window_lead_min.low, cfg.window_lead_min.high, size=n)
        returned = (
            rng.uniform(size=n) < cfg.returns_share if cfg.returns_share > 0 else np.zeros(n, dtype=np.bool_)
        )
        # Promises end DUE_MARGIN_MIN before the fleet's shift end, so a van can still get back in time.
        latest_due = world.config.fleet.shift_end_min - DUE_MARGIN_MIN
        width = cfg.window_width_min
        # Every order's times at once (float64 sums, mins and maxes: the same floats as Python's): a window
        # opens its lead after the arrival, a deadline is its allowance after it, both within the day.
        window_start = np.maximum(times, np.minimum(times + lead, latest_due - width))
        in_window = window | returned  # a return is collected in a window drawn as a window order's
        allowance = np.where(express, cfg.express_deadline_min, cfg.deadline_min)
        deadline = np.maximum(times, np.minimum(times + allowance, latest_due))
        earliest = np.where(in_window, window_start, times)
        due = np.where(in_window, window_start + width, deadline)
        option = np.where(
            in_window, ServiceOption.WINDOW, np.where(express, ServiceOption.EXPRESS, ServiceOption.SAME_DAY)
        )
        depot = world.nearest_depot[locs]
        # A return is collected at the address (the pickup place) from its window's start, to the center.
        center, loc = np.where(returned, locs, depot), np.where(returned, depot, locs)
        ready = np.where(returned, window_start, times + prep)
        orders = list(
            map(
                Order,
                range(n),
                times.tolist(),
                center.tolist(),
                loc.tolist(),
                sizes.tolist(),
                ready.tolist(),
                service.tolist(),
                map(_OPTIONS.__getitem__, option.tolist()),
                earliest.tolist(),
                due.tolist(),
            )
        )
        for r in np.flatnonzero(returned).tolist():
            orders[r].is_return = True
        return orders


def _weighted_slots(weights: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each entry ``r`` of ``rows``, an index drawn with probabilities ``weights[r]``: exactly what
    ``rng.choice(weights.shape[1], p=weights[r])`` called once per entry draws (the same uniform draws in the
    same order, the same normalized cumulative sums searched), in one pass per row of weights."""
    uniform = rng.random(rows.size)
    slots = np.empty(rows.size, dtype=np.int64)
    for r in np.unique(rows).tolist():
        cdf = weights[r].cumsum()
        cdf /= cdf[-1]
        chosen = rows == r
        slots[chosen] = cdf.searchsorted(uniform[chosen], side="right")
    return slots
