"""Solomon VRPTW import: loading, static PyVRP solutions vs the best-known costs, dynamic order stream."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import OrderStatus
from lastmile_env.sources.solomon import (
    FAMILIES,
    SolomonError,
    SolomonInstance,
    SolomonOrderGenerator,
    available_instances,
    build_solomon_world,
    check_routes,
    gap_pct,
    load_bks,
    load_instance,
    route_distance,
    solve_static,
)

C101_TOLERANCE_PCT = 1.0  # a short PyVRP run must come within 1% of C101's best-known distance


@pytest.fixture(scope="module")
def c101() -> SolomonInstance:
    return load_instance("C101")


@pytest.fixture(scope="module")
def r101() -> SolomonInstance:
    return load_instance("R101")


def test_shipped_instances_and_bks() -> None:
    names = available_instances()
    bks = load_bks()
    assert len(names) == 56
    assert set(names) == set(bks)
    one_each = ("C101", "C201", "R101", "R201", "RC101", "RC201")
    assert {load_instance(n).family for n in one_each} == set(FAMILIES)


def test_instance_sizes(c101: SolomonInstance) -> None:
    assert c101.name == "C101"
    assert c101.n_customers == 100
    assert c101.xy.shape == (101, 2)
    assert c101.n_vehicles == 25 and c101.capacity == 200
    assert int(c101.demand.sum()) == 1810 and c101.demand[0] == 0
    assert c101.horizon == 1236.0
    assert c101.time_window[1].tolist() == [912.0, 967.0] and c101.service_time[1] == 90.0
    d = c101.distances()
    assert d.shape == (101, 101) and d[0, 1] == pytest.approx(np.hypot(5, 18))


def test_static_c101_feasible_and_near_bks(c101: SolomonInstance) -> None:
    sol = solve_static(c101, max_iterations=500, seed=0)
    assert sol.feasible and check_routes(c101, sol.routes) == []
    visits = sorted(c for r in sol.routes for c in r)
    assert visits == list(range(1, 101))  # every customer exactly once
    assert sol.n_vehicles <= c101.n_vehicles
    assert all(int(c101.demand[r].sum()) <= c101.capacity for r in sol.routes)
    assert sol.distance == pytest.approx(route_distance(c101, sol.routes))
    assert gap_pct(sol.distance, load_bks()["C101"].cost_distance_only) <= C101_TOLERANCE_PCT


def test_check_routes_finds_violations(c101: SolomonInstance) -> None:
    everyone = list(range(1, 101))
    assert any("exactly once" in p for p in check_routes(c101, [everyone[:-1]]))
    assert any("capacity" in p for p in check_routes(c101, [everyone]))
    assert any("after its due" in p for p in check_routes(c101, [[1, 2], *[[c] for c in everyone[2:]]]))


def test_world_is_the_euclidean_instance(r101: SolomonInstance) -> None:
    world = build_solomon_world(r101)
    assert world.n_depots == 1 and world.n_vehicles == r101.n_vehicles and world.max_capacity == r101.capacity
    np.testing.assert_allclose(world.time_arr, r101.distances(), atol=1e-9)
    np.testing.assert_allclose(world.dist_arr, r101.distances(), atol=1e-9)
    assert world.travel_arrival_min(0, 5, 10.0, 1.0) == pytest.approx(10.0 + r101.distances()[0, 5])


def test_dynamic_stream_is_seeded_and_respects_the_instance(r101: SolomonInstance) -> None:
    world = build_solomon_world(r101)
    gen = SolomonOrderGenerator(r101, epoch_min=30.0, requests_per_epoch=25)
    first = gen(world, np.random.default_rng(7))
    again = gen(world, np.random.default_rng(7))
    other = gen(world, np.random.default_rng(8))
    assert first
    assert [(o.loc, o.due_min, o.size) for o in first] == [(o.loc, o.due_min, o.size) for o in again]
    assert [(o.loc, o.due_min) for o in first] != [(o.loc, o.due_min) for o in other]
    windows = {tuple(w) for w in r101.time_window[1:].tolist()}
    d = r101.distances()
    assert [o.id for o in first] == list(range(len(first)))
    assert all(a.arrival_min <= b.arrival_min for a, b in itertools.pairwise(first))
    for o in first:
        assert o.arrival_min % 30.0 == 0 and o.ready_min == o.arrival_min + 30.0
        assert 1 <= o.loc <= 100 and o.center == 0
        assert (o.earliest_min, o.due_min) in windows
        assert o.size in set(r101.demand[1:].tolist())
        assert o.service_min in set(r101.service_time[1:].tolist())
        reach = max(o.ready_min + d[0, o.loc], o.earliest_min)
        assert reach <= o.due_min + 1e-6 and reach + o.service_min + d[o.loc, 0] <= r101.horizon + 1e-6


def test_dynamic_stream_drives_the_simulator(r101: SolomonInstance) -> None:
    world = build_solomon_world(r101)
    gen = SolomonOrderGenerator(r101, epoch_min=60.0, requests_per_epoch=20)
    sim = Simulator(world, 3, generator=gen)
    order = sim.advance()
    while order is not None:
        feasible = sim.feasible_vehicles()
        if any(feasible):
            sim.assign(feasible.index(True))
        else:
            sim.reject()
        order = sim.advance()
    assert sim.done
    assert all(o.status in (OrderStatus.DELIVERED, OrderStatus.REJECTED) for o in sim.orders)
    assert sim.summary()["distance_km"] > 0


def test_bad_input_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SolomonError, match="not found"):
        load_instance(tmp_path / "missing.txt")
    with pytest.raises(SolomonError, match="not found"):
        load_instance("X999")
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello world\n")
    with pytest.raises(SolomonError, match="not a valid Solomon instance"):
        load_instance(garbage)
    text = (Path(__file__).resolve().parent.parent / "lastmile_env/data/solomon/C101.txt").read_text()
    swapped = tmp_path / "swapped.txt"
    swapped.write_text(text.replace("912        967", "967        912", 1))
    with pytest.raises(SolomonError, match="due >= ready"):
        load_instance(swapped)
    with pytest.raises(SolomonError, match="not found"):
        load_bks(tmp_path / "bks.csv")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("instance,bks_cost_distance_only\nC101,abc\n")
    with pytest.raises(SolomonError, match="malformed row"):
        load_bks(bad_csv)
    with pytest.raises(ValueError, match="epoch_min"):
        SolomonOrderGenerator(load_instance("C101"), epoch_min=0.0)


# ---------------------------------------------------------------------------------------------------------
# The static benchmark from the command line, on any file
# ---------------------------------------------------------------------------------------------------------


def test_family_of_reads_solomon_and_gehring_homberger_names() -> None:
    from lastmile_env.sources.solomon import family_of

    assert [family_of(n) for n in ("C101", "RC208", "R1_2_1", "rc2_4_10", "C1_10_1")] == [
        "C1",
        "RC2",
        "R1",
        "RC2",
        "C1",
    ]
    assert family_of("X-n101-k25") == "X-n101-k25"


def test_the_benchmark_runs_on_a_users_files_with_their_best_known_costs(tmp_path: Path, capsys) -> None:
    from lastmile_env.sources.solomon import main
    from tests.test_sources import write_solomon

    rng = np.random.default_rng(0)
    rows = [(50.0, 50.0, 0, 0, 1000, 0)] + [
        (float(x), float(y), 5, 0, 1000, 10) for x, y in rng.uniform(0, 100, size=(12, 2)).round(1)
    ]
    folder = tmp_path / "Homberger Set"
    folder.mkdir()
    first = write_solomon(folder / "c1_2_1.txt", rows, vehicles=7, capacity=30)
    second = write_solomon(folder / "r2_2_3.txt", rows[:8], vehicles=7, capacity=30)
    bks = tmp_path / "mine.csv"
    bks.write_text("instance,best\nC1_2_1,400.5\n")  # a distance-only column named the user's way
    code = main(
        [str(first), str(second), "--time-limit", "0.2", "--workers", "1", "--bks", str(bks),
         "--bks-distance-column", "best", "--out", str(tmp_path / "out.md")]
    )  # fmt: skip
    assert code == 0
    report = (tmp_path / "out.md").read_text()
    assert "at most the instance's fleet (7 vehicles)" in report and "25 vehicles" not in report
    assert "| c1_2_1 | 12 |" in report and "| r2_2_3 | 7 |" in report  # names as in the files
    assert "No best-known cost for 1 instance(s): r2_2_3." in report
    assert "| C1 n=12 | 1 |" in report and "| R2 n=7 | 1 |" in report  # classes from the data
    assert "400.50 (–)" in report
    capsys.readouterr()
    assert main([str(first), "--bks", str(bks), "--workers", "1"]) == 2  # no default distance column there
    err = capsys.readouterr().err
    assert (
        "error: " in err.splitlines()[0]
        and "no column 'bks_cost_distance_only'" in err
        and "Traceback" not in err
    )
