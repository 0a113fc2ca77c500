"""Golden order streams: each scenario's generated days hashed field by field, with the RNG's state after.

The trajectory pins (``test_trajectory_pins.py``) see an order only through what a policy made of it; these
hash every field of every generated order (floats by ``repr``, which round-trips exactly, and each value's
type), the fleet at the shift start and the arrivals stream's state after the draw (so a change that draws
the same orders but consumes the stream differently fails too). The cases cover the service options, the
clipping of windows and deadlines at the end of the day, returns (``orders.returns_share``), pre-booked days
(``orders.known_at_start``) and a replayed order log.

The digests were generated from commit c17c73e, before the vectorized generator of issue 17. To regenerate
after an intended change of the order streams: ``PYTHONPATH=. python tests/test_order_stream_pins.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from typing import Any

import numpy as np
import pytest

from lastmile_env import load_scenario
from lastmile_env.generators import default_generator
from lastmile_env.sim import world_for
from lastmile_env.sim.world import World

SEEDS = range(8)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("default", {}),
    "realistic": ("realistic", {}),  # returns
    "static_day": ("static_day", {}),  # known at start
    "small_replay": ("small_replay", {}),  # an order log
    "hetero_fleet": ("hetero_fleet", {}),  # vans, cargo bikes and drones
    # a roster: vehicles starting away from their center, later in the day; idle where the last drop was
    "small-roster": (
        "small",
        {
            "fleet.roster": [{"start_min": 0, "end_min": 240, "start_node": 7}, {"start_min": 120}],
            "fleet.size": 2,
            "fleet.idle_at": "last_drop",
        },
    ),
    # every option, windows and deadlines clipped at the end of the day, many returns
    "default-stressed": (
        "default",
        {
            "orders": {
                "express_share": 0.3,
                "express_deadline_min": 7.3,
                "deadline_min": 500,
                "window_lead_min": {"low": 0, "high": 900},
                "returns_share": 0.4,
            }
        },
    ),
}


def _fields(value: Any) -> list[tuple[str, str, str]]:
    return [
        (f.name, repr(getattr(value, f.name)), type(getattr(value, f.name)).__name__)
        for f in dataclasses.fields(value)
    ]


def _world(case: str) -> World:
    scenario, overrides = CASES[case]
    return world_for(load_scenario(scenario, overrides) if overrides else load_scenario(scenario))


def _digest(case: str) -> str:
    world = _world(case)
    generator = default_generator(world)
    h = hashlib.sha256()
    h.update(repr([_fields(v) for v in world.make_vehicles()]).encode())
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        orders = generator(world, rng)
        h.update(repr([_fields(o) for o in orders]).encode())
        h.update(repr(rng.bit_generator.state).encode())
    return h.hexdigest()[:16]


PINNED: dict[str, str] = {
    "default": "b129722c56b1a736",
    "default-stressed": "1f192c494cbfc9b8",
    "hetero_fleet": "805ad843739b810b",
    "realistic": "2a47c1bb20c05978",
    "small-roster": "60cf6d029b3af551",
    "small_replay": "8452203c71de8c10",
    "static_day": "9dc5cb82722ffd18",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_order_stream_is_pinned(case: str) -> None:
    assert _digest(case) == PINNED[case], f"{case}: the generated orders changed"


if __name__ == "__main__":  # regenerate: print the PINNED dict
    print("PINNED: dict[str, str] = {")
    for name in sys.argv[1:] or sorted(CASES):
        print(f'    "{name}": "{_digest(name)}",', flush=True)
    print("}")
