"""Data sources as providers: the registry, explicit matrices charged as given, points in a plane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from lastmile_env.config import ConfigError, load_scenario
from lastmile_env.network import Network, build_network, provider_for, register
from lastmile_env.sim import Simulator, build_world
from lastmile_env.sources.matrix import MatrixError, read_matrix
from lastmile_env.sources.plane import PointsError, read_points
from lastmile_env.sources.solomon import load_instance
from tests.conftest import fixed_orders

REPO = Path(__file__).resolve().parent.parent

# A 4-node asymmetric matrix in seconds, ORTEC-like: node 0 the depot. The direct leg 0 -> 2 (900 s) is
# longer than 0 -> 1 -> 2 (300 + 300 s): the triangle inequality fails and the direct entry must be charged.
WEIGHTS = np.array(
    [
        [0, 300, 900, 420],
        [360, 0, 300, 240],
        [600, 330, 0, 120],
        [480, 250, 180, 0],
    ],
    dtype=np.int64,
)


def write_vrplib_matrix(path: Path, weights: np.ndarray = WEIGHTS, coords: bool = True) -> Path:
    """A VRPTW file laid out as ORTEC's: EXPLICIT FULL_MATRIX, coordinates, demands, depot 1, windows."""
    n = len(weights)
    lines = [
        f"NAME : {path.stem}",
        "TYPE : VRPTW",
        f"DIMENSION : {n}",
        "EDGE_WEIGHT_TYPE : EXPLICIT",
        "EDGE_WEIGHT_FORMAT : FULL_MATRIX",
        "CAPACITY : 10",
        "EDGE_WEIGHT_SECTION",
        *("\t".join(str(int(w)) for w in row) for row in weights),
    ]
    if coords:
        lines += ["NODE_COORD_SECTION", *(f"{i + 1}\t{100 * i}\t{50 * (i % 2)}" for i in range(n))]
    lines += [
        "DEMAND_SECTION",
        *(f"{i + 1}\t{0 if i == 0 else 1}" for i in range(n)),
        "DEPOT_SECTION",
        "1",
        "-1",
        "SERVICE_TIME_SECTION",
        *(f"{i + 1}\t{0 if i == 0 else 60}" for i in range(n)),
        "TIME_WINDOW_SECTION",
        *(f"{i + 1}\t0\t36000" for i in range(n)),
        "EOF",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def scenario(graph: dict, **extra: object) -> dict:
    data: dict = {
        "name": "data",
        "shift_start_hour": 0.0,
        "graph": graph,
        "orders": {"n_hotspots": 0, "pickup_service_min": 0.0},
        "fleet": {
            "size": 1,
            "shift_end_min": 600,
            "types": [{"capacity": 10, "cost_per_km": 1.0, "cost_per_hour": 0.0}],
        },
    }
    data.update(extra)
    return data


def test_the_simulator_imports_no_data_source() -> None:
    code = (
        "import sys, json, lastmile_env.sim, lastmile_env.sim.world; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('lastmile_env.sources') "
        "or m in ('lastmile_env.solomon', 'lastmile_env.order_log', 'osmnx', 'vrplib'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout) == []
    source = (REPO / "lastmile_env" / "sim" / "world.py").read_text()
    assert "sources" not in source and "solomon" not in source and "kind ==" not in source


def test_world_building_dispatches_by_kind_and_loads_the_kind_lazily() -> None:
    cfg = load_scenario("small")
    network = build_network(cfg, np.random.default_rng(0))
    assert network.time_min is None and network.graph.number_of_edges() > 0
    assert provider_for("grid").__module__ == "lastmile_env.sources.synthetic"
    with pytest.raises(ValueError, match="already has a provider"):
        register("grid")(lambda graph_cfg, rng: Network(nx.DiGraph()))
    with pytest.raises(ValueError, match=r"no provider.*known kinds"):
        provider_for("nowhere")


# ------------------------------------------------------------------------------------------------------------
# Explicit matrices
# ------------------------------------------------------------------------------------------------------------


def test_vrplib_matrix_world_charges_the_matrix_as_given(tmp_path: Path) -> None:
    path = write_vrplib_matrix(tmp_path / "ortec-like.txt")
    world = build_world(load_scenario(scenario({"kind": "matrix", "path": str(path), "unit": "s"})))
    assert world.n_depots == 1 and world.matrix.nodes == (0, 1, 2, 3)
    assert world.addresses.tolist() == [1, 2, 3]  # every customer is an address
    np.testing.assert_array_equal(world.dist_arr, WEIGHTS)  # distance = the weight, in the file's unit
    np.testing.assert_allclose(world.time_arr, WEIGHTS / 60.0)  # seconds -> minutes
    assert world.time_min[0][2] == pytest.approx(15.0)  # not the 10-minute detour through node 1
    assert world.matrix.path(0, 2) == [0, 2]
    assert (world.mults == 1.0).all()  # no congestion unless configured
    assert world.xy_km[3].tolist() == [300.0, 50.0]  # NODE_COORD_SECTION, for drawing


def test_an_episode_on_a_matrix_world_drives_the_direct_legs(tmp_path: Path) -> None:
    path = write_vrplib_matrix(tmp_path / "ortec-like.txt")
    world = build_world(load_scenario(scenario({"kind": "matrix", "path": str(path), "unit": "s"})))
    orders = fixed_orders({"arrival_min": 0.0, "node": 2, "due_min": 500.0, "service_min": 1.0})
    sim = Simulator(world, seed=0, generator=orders, debug=True)
    assert sim.advance() is not None
    sim.assign(0)
    assert sim.advance() is None and sim.done
    # 0 -> 2 (900) and back 2 -> 0 (600): the cost is the matrix's weights, 1 per unit.
    assert sim.cost().distance == pytest.approx(1500.0)
    assert sim.orders[0].delivered_min == pytest.approx(15.0)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_npy_and_csv_matrices_put_the_depot_on_row_0(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"m{suffix}"
    if suffix == ".npy":
        np.save(path, WEIGHTS)
    else:
        np.savetxt(path, WEIGHTS, delimiter=",", fmt="%d")
    data = read_matrix(path)
    assert data.depots == (0,) and np.isfinite(data.xy).all() and data.xy.shape == (4, 2)
    world = build_world(load_scenario(scenario({"kind": "matrix", "path": str(path), "unit": "min"})))
    np.testing.assert_array_equal(world.time_arr, WEIGHTS)
    assert world.addresses.tolist() == [1, 2, 3]


def test_the_scenario_can_override_the_files_depot(tmp_path: Path) -> None:
    path = write_vrplib_matrix(tmp_path / "m.txt")
    world = build_world(
        load_scenario(scenario({"kind": "matrix", "path": str(path), "unit": "s"}, depots={"nodes": [3]}))
    )
    assert world.matrix.nodes == (3, 0, 1, 2) and world.dist_km[0][3] == 180.0  # node 3 -> node 2


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones((3, 4)), "square"),
        (WEIGHTS * -1, "must be finite and >= 0"),
        (WEIGHTS + np.eye(4, dtype=np.int64), "diagonal must be 0"),
    ],
)
def test_bad_matrices_are_refused_with_the_problem(tmp_path: Path, weights: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, weights)
    with pytest.raises(MatrixError, match=message):
        read_matrix(path)
    with pytest.raises(ConfigError, match=rf"graph \(matrix\).*bad\.npy.*{message}"):
        build_world(load_scenario(scenario({"kind": "matrix", "path": str(path), "unit": "s"})))


def test_a_coordinate_file_is_not_a_matrix(tmp_path: Path) -> None:
    path = tmp_path / "euc.vrp"
    path.write_text(
        "NAME : e\nTYPE : CVRP\nDIMENSION : 2\nEDGE_WEIGHT_TYPE : EUC_2D\nCAPACITY : 1\n"
        "NODE_COORD_SECTION\n1 0 0\n2 3 4\nDEMAND_SECTION\n1 0\n2 1\nDEPOT_SECTION\n1\n-1\nEOF\n"
    )
    with pytest.raises(MatrixError, match=r"EUC_2D, not EXPLICIT.*'plane'"):
        read_matrix(path)
    assert read_points(path).xy.tolist() == [[0.0, 0.0], [3.0, 4.0]]


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ({"kind": "matrix", "unit": "s"}, "needs 'path'"),
        ({"kind": "matrix", "path": "missing.npy", "unit": "s"}, "file not found"),
        ({"kind": "matrix", "path": "README.md", "unit": "km"}, "needs 'unit': one of s, min"),
        ({"kind": "plane", "path": "README.md", "unit": "m"}, "needs 'speed_kmh'"),
        ({"kind": "grid", "unit": "s"}, "'unit' is for kinds matrix and plane"),
    ],
)
def test_matrix_and_plane_settings_are_checked_at_load(graph: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_scenario(scenario(graph))


# ------------------------------------------------------------------------------------------------------------
# Points in a plane
# ------------------------------------------------------------------------------------------------------------


def test_plane_csv_in_metres_at_a_speed(tmp_path: Path) -> None:
    path = tmp_path / "places.csv"
    path.write_text("x,y,depot\n0,0,1\n3000,4000,0\n3000,0,0\n")
    graph = {"kind": "plane", "path": str(path), "unit": "m", "speed_kmh": 30.0}
    world = build_world(load_scenario(scenario(graph)))
    assert world.n_depots == 1 and world.addresses.tolist() == [1, 2]
    assert world.dist_km[0][1] == pytest.approx(5.0) and world.time_min[0][1] == pytest.approx(10.0)
    manhattan = build_world(load_scenario(scenario({**graph, "metric": "manhattan"})))
    assert manhattan.dist_km[0][1] == pytest.approx(7.0) and manhattan.dist_km[1][2] == pytest.approx(4.0)


def test_plane_csv_without_a_depot_column_places_centers_like_any_graph(tmp_path: Path) -> None:
    path = tmp_path / "places.csv"
    rng = np.random.default_rng(0)
    path.write_text("x,y\n" + "".join(f"{x:.3f},{y:.3f}\n" for x, y in rng.uniform(0, 5, size=(40, 2))))
    graph = {"kind": "plane", "path": str(path), "unit": "km", "speed_kmh": 20.0}
    world = build_world(load_scenario(scenario(graph, depots={"count": 3})))
    assert world.n_depots == 3 and len(world.addresses) == 37


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lat,lon\n1,2\n", "needs columns x and y"),
        ("x,y\n1,two\n", r"places\.csv:2: x, y must be numbers"),
        ("x,y,depot\n1,2,maybe\n", "depot must be 1/0"),
        ("x,y,depot\n1,2,0\n3,4,0\n", "marks no row as a depot"),
    ],
)
def test_bad_coordinate_csvs_name_the_row(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "places.csv"
    path.write_text(text)
    with pytest.raises(PointsError, match=message):
        read_points(path)


def write_solomon(path: Path, rows: list[tuple[float, ...]], vehicles: int = 25, capacity: int = 200) -> Path:
    """A Solomon-format file; rows are (x, y, demand, ready, due, service) with the depot first."""
    body = "".join(
        f"{i:5d} {x:10} {y:10} {d:8} {r:10} {due:10} {s:8}\n" for i, (x, y, d, r, due, s) in enumerate(rows)
    )
    path.write_text(
        f"{path.stem}\n\nVEHICLE\nNUMBER     CAPACITY\n  {vehicles}         {capacity}\n\nCUSTOMER\n"
        "CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME\n\n" + body
    )
    return path


def test_decimal_solomon_coordinates_never_turn_into_minus_one(tmp_path: Path) -> None:
    # vrplib's Solomon parser reads the table as integers: 40.5 would become -1 without the float re-read.
    path = write_solomon(
        tmp_path / "dec.txt",
        [(40.5, 50.25, 0, 0, 1236, 0), (45.7, 68, 10, 912, 967, 90.5), (-3.25, 0.5, 7, 0, 1200, 10)],
    )
    inst = load_instance(path)
    np.testing.assert_array_equal(inst.xy, [[40.5, 50.25], [45.7, 68.0], [-3.25, 0.5]])
    assert inst.service_time.tolist() == [0.0, 90.5, 10.0] and inst.demand.tolist() == [0, 10, 7]
    graph = {"kind": "plane", "path": str(path), "unit": "km", "speed_kmh": 60.0}
    world = build_world(load_scenario(scenario(graph)))
    assert world.n_depots == 1 and world.dist_km[0][1] == pytest.approx(np.hypot(5.2, 17.75))


def test_a_gehring_homberger_sized_file_loads_as_a_plane(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = [(250.0, 250.0, 0, 0, 3000, 0)] + [
        (float(x), float(y), int(d), 0, 3000, 10)
        for x, y, d in zip(
            rng.integers(0, 500, 1000), rng.integers(0, 500, 1000), rng.integers(1, 40, 1000), strict=True
        )
    ]
    path = write_solomon(tmp_path / "C1_10_1.TXT", rows, vehicles=250, capacity=200)
    points = read_points(path)
    assert points.xy.shape == (1001, 2) and points.depots == (0,)
    assert (points.xy >= 0).all()  # nothing parsed as -1


def test_solomon_kind_is_the_instance_in_a_plane() -> None:
    world = build_world(load_scenario(scenario({"kind": "solomon", "path": "C101"}, depots={"nodes": [0]})))
    inst = load_instance("C101")
    np.testing.assert_allclose(world.time_arr, inst.distances(), atol=1e-9)
    assert world.graph.number_of_edges() == 0 and world.matrix.path(0, 5) == [0, 5]


def test_cargo_bikes_need_a_road_graph(tmp_path: Path) -> None:
    path = write_vrplib_matrix(tmp_path / "m.txt")
    data = scenario({"kind": "matrix", "path": str(path), "unit": "s"})
    data["fleet"]["types"] = [{"name": "bike", "mode": "cargo_bike", "capacity": 5}]
    with pytest.raises(ConfigError, match="cargo bikes need a road graph"):
        build_world(load_scenario(data))
