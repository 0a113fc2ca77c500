"""Shared fixtures: a hand-made tiny world whose numbers are computed by hand in the tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import networkx as nx
import numpy as np
import pytest

from lastmile_env.config import REPO_ROOT, load_scenario
from lastmile_env.sim import Order, ServiceOption, World, build_world


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep travel-matrix caches of the tests out of the user's cache."""
    monkeypatch.setenv("LASTMILE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def write_line_graph(path: Path) -> Path:
    """A street D - A - B with 1 km blocks, two-way: node 'D' (center), 'A', 'B'."""
    g = nx.MultiDiGraph()
    for node, lon in (("D", 0.0), ("A", 0.01), ("B", 0.02)):
        g.add_node(node, x=lon, y=0.0)
    for u, v in (("D", "A"), ("A", "B")):
        g.add_edge(u, v, length=1000.0, highway="residential")
        g.add_edge(v, u, length=1000.0, highway="residential")
    nx.write_graphml(g, path)
    return path


@pytest.fixture
def tiny_world(tmp_path: Path) -> Callable[..., World]:
    """Build the line world: 30 km/h (2 min per km), no congestion, 1 center at 'D'.

    Costs: 1 per km, 1 per driver minute (60 per hour), lateness 2 + 1 per minute, rejection 10;
    loading takes 1 minute per parcel.
    """
    path = write_line_graph(tmp_path / "line.graphml")

    def make(n_vehicles: int = 1, capacity: int = 10) -> World:
        cfg = load_scenario(
            {
                "name": "tiny",
                "graph": {
                    "kind": "file",
                    "path": str(path),
                    "default_speed_kmh": 30.0,
                    "speed_kmh_by_highway": {},
                },
                "depots": {"nodes": ["D"]},
                "orders": {"pickup_service_min": 1.0, "n_hotspots": 0},
                "fleet": {
                    "size": n_vehicles,
                    "shift_end_min": 600,
                    "types": [{"capacity": capacity, "cost_per_km": 1.0, "cost_per_hour": 60.0}],
                },
                "costs": {"late_fixed": 2.0, "late_per_min": 1.0, "reject_penalty": 10.0},
            }
        )
        return build_world(cfg)

    return make


def fixed_orders(*specs: dict) -> Callable[[World, np.random.Generator], list[Order]]:
    """An order generator returning the given orders (keys of Order; ``loc`` as a graph node id)."""

    def generate(world: World, rng: np.random.Generator) -> list[Order]:
        orders = []
        for i, spec in enumerate(specs):
            spec = dict(spec)
            loc = world.matrix.index_of(spec.pop("node"))
            arrival = spec.pop("arrival_min")
            orders.append(
                Order(
                    id=i,
                    arrival_min=arrival,
                    center=0,
                    loc=loc,
                    size=spec.pop("size", 1),
                    ready_min=spec.pop("ready_min", arrival),
                    service_min=spec.pop("service_min", 2.0),
                    option=spec.pop("option", ServiceOption.SAME_DAY),
                    earliest_min=spec.pop("earliest_min", arrival),
                    due_min=spec.pop("due_min"),
                )
            )
            assert not spec, f"unknown order keys {spec}"
        return orders

    return generate


def benchmark_script(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (no package) loaded afresh as a module: ``benchmark_script("suite")``."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO_ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module
