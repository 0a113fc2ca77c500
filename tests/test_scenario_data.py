"""A user's own data in a scenario: paths next to the YAML, checked at load, rosters."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import evaluate
from lastmile_env.config import ORDER_LOGS_DIR, SCENARIO_DIR, ConfigError, load_scenario
from lastmile_env.sim import build_world
from tests.conftest import write_line_graph


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_paths_resolve_next_to_the_scenario_file_first(tmp_path: Path) -> None:
    # A map next to the YAML named like a shipped map: the one next to the YAML wins.
    write_line_graph(tmp_path / "aguascalientes_drive.graphml")
    np.save(tmp_path / "m.npy", np.array([[0, 60], [90, 0]]))
    (tmp_path / "day.csv").write_text((ORDER_LOGS_DIR / "small_day.csv").read_text())
    scenario = write_yaml(
        tmp_path / "mine.yaml",
        {
            "graph": {"kind": "file", "path": "aguascalientes_drive.graphml"},
            "depots": {"nodes": ["D"]},
            "orders": {"log": {"path": "day.csv"}},
        },
    )
    cfg = load_scenario(scenario)
    assert cfg.graph.path == tmp_path / "aguascalientes_drive.graphml"
    assert cfg.orders.log is not None and cfg.orders.log.path == tmp_path / "day.csv"
    assert build_world(cfg).graph.number_of_nodes() == 3
    matrix = write_yaml(tmp_path / "matrix.yaml", {"graph": {"kind": "matrix", "path": "m.npy", "unit": "s"}})
    assert build_world(load_scenario(matrix)).dist_km[1][0] == 90.0
    # Not next to the YAML: the usual look-up (the shipped maps directory) still applies.
    shipped = write_yaml(
        tmp_path / "sub.yaml", {"graph": {"kind": "file", "path": "West-Oakland_drive.graphml"}}
    )
    assert load_scenario(shipped).graph.path == Path("West-Oakland_drive.graphml")


def test_a_bad_order_log_fails_the_evaluation_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(SCENARIO_DIR / "small_replay.yaml", tmp_path / "replay.yaml")
    rows = (ORDER_LOGS_DIR / "small_day.csv").read_text().splitlines()
    rows[1] = rows[1].replace(",6,2,", ",999,2,")  # line 2: a node that is not on the map
    (tmp_path / "small_day.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = evaluate.main(
        [
            "--scenario",
            str(tmp_path / "replay.yaml"),
            "--policies",
            "nearest",
            "--episodes",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "error: " in err.splitlines()[0]
        and "small_day.csv" in err
        and "line 2" in err
        and "Traceback" not in err
    )
    assert not out.exists()


def test_order_log_errors_are_config_errors() -> None:
    from lastmile_env.sources.order_log import OrderLogError

    assert issubclass(OrderLogError, ConfigError)


# ------------------------------------------------------------------------------------------------------------
# Rosters
# ------------------------------------------------------------------------------------------------------------

TYPES = [
    {"name": "van", "capacity": 10, "cost_per_km": 1.0, "cost_per_hour": 0.0},
    {"name": "bike", "capacity": 3, "cost_per_km": 0.5, "cost_per_hour": 0.0},
]


def test_a_roster_file_next_to_the_yaml_gives_each_vehicle_its_shift_and_start(tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text(
        "type,start_min,end_min,start_node\nvan,0,300,\nbike,90,400,14\nvan,30,,7\n"
    )
    scenario = write_yaml(
        tmp_path / "s.yaml",
        {"graph": {"kind": "grid", "rows": 5, "cols": 5}, "fleet": {"types": TYPES, "roster": "roster.csv"}},
    )
    cfg = load_scenario(scenario)
    assert cfg.fleet.size == 3 and cfg.fleet.roster is not None
    world = build_world(cfg)
    van, bike, late = world.vehicles
    assert (van.type_name, van.start_min, van.shift_end_min, van.start_node) == ("van", 0.0, 300.0, None)
    assert (bike.type_name, bike.capacity, bike.start_min, bike.shift_end_min) == ("bike", 3, 90.0, 400.0)
    assert world.matrix.nodes[bike.start_node] == 14 and late.shift_end_min == cfg.fleet.shift_end_min
    vehicles = world.make_vehicles()
    assert vehicles[1].node == bike.start_node and vehicles[1].free_min == 90.0
    assert vehicles[0].node == vehicles[0].home


def test_rostered_vehicles_work_only_in_their_shift_from_their_start_node() -> None:
    from agents.heuristics import make_heuristic
    from lastmile_env.sim import Simulator

    roster = [{"start_min": 0, "end_min": 240, "start_node": 7}, {"start_min": 120, "start_node": 20}]
    cfg = load_scenario("small", {"fleet.roster": roster, "fleet.size": 2, "fleet.types": TYPES[:1]})
    world = build_world(cfg)
    policy = make_heuristic("insertion")
    sim = Simulator(world, 2, debug=True)  # debug: every invariant checked after each event
    while sim.advance() is not None:
        action = policy.act(sim)
        sim.assign(action) if action < world.n_vehicles else sim.reject()
    legs = {vid: [leg for leg in sim.legs if leg[0] == vid] for vid in (0, 1)}
    assert legs[0] and legs[0][0][1] == world.vehicles[0].start_node  # it set off from its start node
    assert all(depart >= 120.0 - 1e-9 for _, _, _, depart, _, _ in legs[1])
    assert all(v.node == v.home for v in sim.vehicles)  # everyone home at the end of the day
    assert sim.expected_cost == pytest.approx(sim.cost().total)


def test_couriers_may_wait_at_their_last_drop(tmp_path: Path) -> None:
    from lastmile_env.sim import Order, ServiceOption, Simulator

    # Centers D1 (x=0) and D2 (x=10 km); doors X (11) and Y (12); 60 km/h, so a km is a minute.
    (tmp_path / "line.csv").write_text("x,y,depot\n0,0,1\n10,0,1\n11,0,0\n12,0,0\n")

    def orders(world, rng):  # two parcels from D2, the courier's home is D1
        return [
            Order(
                id=i,
                arrival_min=t,
                center=1,
                loc=loc,
                size=1,
                ready_min=t,
                service_min=0.0,
                option=ServiceOption.SAME_DAY,
                earliest_min=t,
                due_min=t + 300,
            )
            for i, (t, loc) in enumerate([(0.0, 2), (100.0, 3)])
        ]

    km = {}
    for idle_at in ("home", "last_drop"):
        cfg = load_scenario(
            {
                "name": "line",
                "graph": {"kind": "plane", "path": str(tmp_path / "line.csv"), "unit": "km", "speed_kmh": 60},
                "orders": {"pickup_service_min": 0.0, "n_hotspots": 0},
                "fleet": {"types": TYPES[:1], "roster": [{"center": 0}], "idle_at": idle_at},
            }
        )
        sim = Simulator(build_world(cfg), 0, generator=orders, debug=True)
        while sim.advance() is not None:
            sim.assign(0)
        assert sim.vehicles[0].node == sim.vehicles[0].home == 0
        km[idle_at] = sim.cost().distance
        assert sim.expected_cost == pytest.approx(sim.cost().total)
    # home: 0-10-11-0, then 0-10-12-0 = 46 km; waiting at the drop: 0-10-11, 11-10-12, then home 12-0 = 26 km.
    assert km == {"home": pytest.approx(46.0), "last_drop": pytest.approx(26.0)}


@pytest.mark.parametrize(
    ("roster", "message"),
    [
        ("type,start_min\ntruck,0\n", r"roster\[0\]\.type: 'truck' is not a fleet type"),
        ("type,start_min,end_min\nvan,100,50\n", r"line 2: .*end_min \(50.0\) must be after start_min"),
        ("type,shift\nvan,1\n", r"unknown columns \['shift'\]"),
        ("type,start_min\nvan,-5\n", r"line 2: start_min: Input should be greater than or equal to 0"),
        ("type\n", "lists no vehicle"),
    ],
)
def test_bad_rosters_fail_at_load_naming_the_line(tmp_path: Path, roster: str, message: str) -> None:
    (tmp_path / "r.csv").write_text(roster)
    scenario = write_yaml(tmp_path / "s.yaml", {"fleet": {"types": TYPES, "roster": "r.csv"}})
    with pytest.raises(ConfigError, match=message):
        load_scenario(scenario)


def test_roster_nodes_and_size_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="roster file not found"):
        load_scenario("small", {"fleet.roster": str(tmp_path / "nowhere.csv")})
    with pytest.raises(ConfigError, match=r"size \(4\) differs from the roster's 1 vehicles"):
        load_scenario("small", {"fleet.roster": [{"start_min": 0}], "fleet.size": 4})
    with pytest.raises(
        ConfigError, match=r"fleet\.roster\[1\]\.start_node: node 999 is not on the road graph"
    ):
        build_world(load_scenario("small", {"fleet.roster": [{}, {"start_node": 999}], "fleet.size": 2}))
    with pytest.raises(ConfigError, match=r"fleet\.roster\[0\]\.center: node 3 is not a center"):
        build_world(load_scenario("small", {"fleet.roster": [{"center": 3}], "fleet.size": 1}))


# ------------------------------------------------------------------------------------------------------------
# The hindsight bound where it is not valid
# ------------------------------------------------------------------------------------------------------------


def test_no_hindsight_gap_is_shown_where_policies_beat_it_on_a_multi_center_day() -> None:
    import math

    from agents.evaluation.scenario import _multi_center_check

    def rows(gaps: dict[str, float]) -> list[dict]:
        return [{"policy": p, "hindsight_gap": g, "hindsight_cost": 100.0} for p, g in gaps.items()]

    two = load_scenario("small", {"depots.count": 2})
    beaten = rows({"nearest": -0.59, "insertion": -0.82, "regret": 0.1})
    note = _multi_center_check(two, beaten, None)
    assert note is not None and "not valid on this 2-center day" in note and "insertion: -82.0%" in note
    assert all(math.isnan(r["hindsight_gap"]) for r in beaten) and beaten[0]["hindsight_cost"] == 100.0
    fine = rows({"nearest": 0.3, "insertion": 0.1})
    assert _multi_center_check(two, fine, None) is None and fine[1]["hindsight_gap"] == 0.1
    one = rows({"nearest": -0.2})  # one center: a heuristic bound a policy may beat now and then
    assert _multi_center_check(load_scenario("small"), one, None) is None and one[0]["hindsight_gap"] == -0.2


def test_the_report_shows_no_hindsight_gap_for_rosters_it_does_not_model() -> None:
    from agents.evaluation import evaluate
    from agents.hindsight import not_valid_for

    assert not_valid_for(build_world(load_scenario("small"))) is None
    result = evaluate(
        "small",
        ["nearest"],
        episodes=1,
        workers=1,
        reference="nearest",
        overrides={"fleet.idle_at": "last_drop"},
        hindsight_time_limit_s=1.0,
        progress=False,
    )
    assert result.hindsight_note is not None and "not valid here: couriers wait" in result.hindsight_note
    assert not result.hindsight_computed and "Gap to hindsight: not computed (the bound is not valid" in (
        result.markdown()
    )
    roster = load_scenario("small", {"fleet.roster": [{"start_node": 7}], "fleet.size": 1})
    assert "start away from their center" in str(not_valid_for(build_world(roster)))


def test_dispatch_rewards_sum_to_minus_the_cost_with_a_roster_away_from_home() -> None:
    import gymnasium as gym

    overrides = {
        "fleet.roster": [{"start_node": 7}, {"start_min": 60, "start_node": 30}, {}],
        "fleet.idle_at": "last_drop",
        "graph.congestion": [1.0] * 8 + [1.6] * 3 + [1.0] * 13,
    }
    env = gym.make("LastMile-Dispatch-v0", scenario="small", overrides=overrides)
    env.reset(seed=5)
    assert env.unwrapped.sim.expected_cost > 0  # the way home of the vehicles away from their center
    rng = np.random.default_rng(5)
    total, done = 0.0, False
    while not done:
        mask = env.unwrapped.action_masks()
        _, reward, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        total += reward
        done = terminated or truncated
    assert total == pytest.approx(-env.unwrapped.sim.summary()["cost"], rel=1e-9)
