"""Scenario configs: every shipped one loads; bad ones fail at load naming the field and the value."""

from __future__ import annotations

import pytest
import yaml

from lastmile_env.config import ConfigError, available_scenarios, load_scenario, parse_overrides
from lastmile_env.sim import build_world


@pytest.mark.parametrize("name", available_scenarios())
def test_shipped_scenarios_load_and_build(name):
    cfg = load_scenario(name)
    world = build_world(cfg)
    assert world.n_vehicles == cfg.fleet.size
    assert world.n_depots >= 1 and world.addresses.size > 0


def test_required_scenarios_exist():
    assert {"small", "default", "aguascalientes"} <= set(available_scenarios())
    default = load_scenario("default")
    assert default.fleet.size == 20 and default.graph.n_nodes == 300


def test_dotted_overrides():
    cfg = load_scenario("default", parse_overrides(["fleet.size=30", "orders.peaks=[]", "graph.kind=grid"]))
    assert cfg.fleet.size == 30 and cfg.orders.peaks == [] and cfg.graph.kind == "grid"


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        ({"fleet.size": -3}, "fleet.size", "-3"),
        ({"fleet.types": [{"capacity": -1}]}, "fleet.types.0.capacity", "-1"),
        ({"fleet.sizee": 3}, "fleet.sizee", "3"),
        ({"orders.prep_min": {"low": 30, "high": 10}}, "orders.prep_min", "high"),
        ({"graph.congestion": [1.0] * 23}, "graph.congestion", "24"),
        ({"graph.kind": "file", "graph.path": "no/such/map.graphml"}, "graph", "no/such/map.graphml"),
        ({"orders.last_arrival_min": 9999}, "last_arrival_min", "9999"),
    ],
)
def test_bad_config_names_field_and_value(overrides, field, value):
    with pytest.raises(ConfigError) as err:
        load_scenario("small", overrides)
    assert field in str(err.value) and value in str(err.value)


def test_depot_not_on_graph_fails_at_build():
    cfg = load_scenario("small", {"depots.nodes": [12345]})
    with pytest.raises(ConfigError, match=r"depots.nodes\[0\].*12345"):
        build_world(cfg)


def test_unknown_scenario_lists_valid_names():
    with pytest.raises(ConfigError, match=r"valid names: .*default.*small"):
        load_scenario("nope")


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("fleet: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_scenario(listing)


def test_bad_overrides():
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        parse_overrides(["fleet.size"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_scenario("small", {"fleet.size.x": 3})


def test_order_log_scenario_replays_the_log():
    import gymnasium as gym
    import numpy as np

    import lastmile_env  # noqa: F401

    env = gym.make("LastMile-Dispatch-v0", scenario="small_replay")
    days = []
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
            done = terminated or truncated
        sim = env.unwrapped.sim
        days.append([(o.arrival_min, o.loc) for o in sim.orders])
        assert info["orders"] == len(sim.orders) == 30  # bootstrap at volume 1: the log's size
    assert days[0] != days[1]  # bootstrap draws a new day per seed


def test_order_log_config_errors():
    with pytest.raises(ConfigError, match=r"orders.log.*order log not found: nope.csv"):
        load_scenario("small", {"orders.log": {"path": "nope.csv"}})
    with pytest.raises(ConfigError, match=r"orders\.log\.resample"):
        load_scenario("small", {"orders.log": {"path": "small_day.csv", "resample": "shuffle"}})


def test_addresses_snapped_from_coordinates():
    world = build_world(load_scenario("aguascalientes"))
    proj = world.graph.graph["lonlat_projection"]
    picks = [int(k) for k in world.addresses[[3, 50, 200]]]
    coords = []
    for k in picks:  # the key nodes' own latitude/longitude, nudged by ~0.1 m
        x, y = world.xy_km[k]
        coords.append(
            (proj["lat0"] + y / proj["km_per_deg_lat"] + 1e-6, proj["lon0"] + x / proj["km_per_deg_lon"])
        )
    snapped = build_world(load_scenario("aguascalientes", {"graph.address_coords": coords}))
    assert [snapped.matrix.nodes[k] for k in snapped.addresses] == [world.matrix.nodes[k] for k in picks]
    with pytest.raises(ConfigError, match=r"address_coords\[0\].*km from the nearest"):
        build_world(load_scenario("aguascalientes", {"graph.address_coords": [(0.0, 0.0)]}))
    with pytest.raises(ConfigError, match="needs a real map"):
        build_world(load_scenario("small", {"graph.address_coords": coords}))
