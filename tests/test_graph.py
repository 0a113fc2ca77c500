"""Road graphs, map loading, congestion and the travel matrix (numbers checked by hand where possible)."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lastmile_env
from lastmile_env import graph as roads
from lastmile_env.graph import CongestionProfile, GraphError
from lastmile_env.sources import osm, synthetic

MAPS_DIR = Path(lastmile_env.__file__).parent / "data" / "maps"
SPEEDS = {"primary": 45.0, "residential": 25.0, "secondary": 40.0}
KM_PER_DEG = osm.EARTH_RADIUS_KM * math.pi / 180.0


def edge_min(g: nx.DiGraph, u: object, v: object) -> float:
    d = g.edges[u, v]
    return d["length_m"] / 1000.0 / d["speed_kmh"] * 60.0


def hand_graph() -> nx.DiGraph:
    """A-B-C two-way fast streets, a short slow A-C street and a one-way loop C -> D -> A.

    Fastest paths (minutes, km), computed by hand:
      A->C  A-B-C  1+2 = 3 min, 3 km   (the direct A-C street is 1.5 km but takes 6 min)
      C->A  C-D-A  1+1.5 = 2.5 min, 3.5 km   (C-B-A takes 3 min, C-A 6 min)
      A->D  A-B-C-D  4 min, 3.5 km;   C->D 1 min, 0.5 km
      D->A  1.5 min, 3 km;   D->C  D-A-B-C  1.5+1+2 = 4.5 min, 6 km
    """
    g = nx.DiGraph()
    for node, x in zip("ABCD", (0.0, 1.0, 2.0, 3.0), strict=True):
        g.add_node(node, x=x, y=0.0)
    two_way = [("A", "B", 1000.0, 60.0), ("B", "C", 2000.0, 60.0), ("A", "C", 1500.0, 15.0)]
    one_way = [("C", "D", 500.0, 30.0), ("D", "A", 3000.0, 120.0)]
    for u, v, length_m, speed in two_way:
        g.add_edge(u, v, length_m=length_m, speed_kmh=speed, highway="residential")
        g.add_edge(v, u, length_m=length_m, speed_kmh=speed, highway="residential")
    for u, v, length_m, speed in one_way:
        g.add_edge(u, v, length_m=length_m, speed_kmh=speed, highway="residential")
    return g


def grid_with_speeds(rows: int = 6, cols: int = 7, seed: int = 0) -> nx.DiGraph:
    g = synthetic.grid_graph(rows, cols, 250.0, 0.3, np.random.default_rng(seed))
    roads.assign_speeds(g, SPEEDS, 30.0)
    return g


# ---------------------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------------------

GENERATORS = {
    "grid": lambda rng: synthetic.grid_graph(9, 11, 200.0, 0.3, rng),
    "geometric": lambda rng: synthetic.random_geometric_graph(250, 5.0, rng),
    "clustered": lambda rng: synthetic.clustered_city_graph(250, 3, 5.0, rng),
}
EXPECTED_NODES = {"grid": 99, "geometric": 250, "clustered": 250}


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generators_give_strongly_connected_two_way_graphs(kind: str) -> None:
    g = GENERATORS[kind](np.random.default_rng(7))
    assert g.number_of_nodes() == EXPECTED_NODES[kind]
    assert set(g.nodes) == set(range(EXPECTED_NODES[kind]))
    assert nx.is_strongly_connected(g)
    for u, v, d in g.edges(data=True):
        assert d["length_m"] > 0
        assert d["highway"] in {"primary", "residential"}
        assert g.edges[v, u]["length_m"] == d["length_m"]  # two-way, same length both ways
        straight_m = 1000.0 * math.dist(
            (g.nodes[u]["x"], g.nodes[u]["y"]), (g.nodes[v]["x"], g.nodes[v]["y"])
        )
        assert straight_m * (1 - 1e-9) <= d["length_m"] <= straight_m * 1.3 + 1e-6


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generators_are_deterministic_for_a_seed(kind: str) -> None:
    a = GENERATORS[kind](np.random.default_rng(3))
    b = GENERATORS[kind](np.random.default_rng(3))
    c = GENERATORS[kind](np.random.default_rng(4))
    assert nx.utils.graphs_equal(a, b)
    assert roads.graph_fingerprint(a) == roads.graph_fingerprint(b) != roads.graph_fingerprint(c)


def test_grid_layout_lengths_and_arterials() -> None:
    rows, cols, spacing_m, perturb = 5, 6, 250.0, 0.4
    g = synthetic.grid_graph(rows, cols, spacing_m, perturb, np.random.default_rng(0))
    assert g.number_of_edges() == 2 * (rows * (cols - 1) + cols * (rows - 1))
    assert g.nodes[2 * cols + 3]["x"] == pytest.approx(0.75)  # node r*cols+c at (c, r) * 0.25 km
    assert g.nodes[2 * cols + 3]["y"] == pytest.approx(0.5)
    lengths = np.array([d["length_m"] for _, _, d in g.edges(data=True)])
    assert lengths.min() >= spacing_m and lengths.max() <= spacing_m * (1 + perturb)
    assert g.edges[0, 1]["highway"] == "primary"  # row 0
    assert g.edges[4 * cols + 2, 4 * cols + 3]["highway"] == "primary"  # row 4
    assert g.edges[cols + 1, cols + 2]["highway"] == "residential"  # row 1
    assert g.edges[cols + 4, 2 * cols + 4]["highway"] == "primary"  # column 4
    assert g.edges[cols + 1, 2 * cols + 1]["highway"] == "residential"  # column 1


def test_synthetic_coordinates_lie_in_the_area() -> None:
    for g in (
        synthetic.random_geometric_graph(200, 3.0, np.random.default_rng(1)),
        synthetic.clustered_city_graph(200, 4, 3.0, np.random.default_rng(1)),
    ):
        xy = np.array([(d["x"], d["y"]) for _, d in g.nodes(data=True)])
        assert xy.min() >= 0.0 and xy.max() <= 3.0
    clustered = synthetic.clustered_city_graph(300, 3, 6.0, np.random.default_rng(2))
    assert {d["highway"] for _, _, d in clustered.edges(data=True)} == {"primary", "residential"}


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: synthetic.grid_graph(0, 3, 100.0, 0.1, rng),
        lambda rng: synthetic.grid_graph(3, 3, 0.0, 0.1, rng),
        lambda rng: synthetic.random_geometric_graph(1, 3.0, rng),
        lambda rng: synthetic.random_geometric_graph(10, 0.0, rng),
        lambda rng: synthetic.clustered_city_graph(10, 0, 3.0, rng),
    ],
)
def test_generators_reject_bad_arguments(make) -> None:
    with pytest.raises(GraphError):
        make(np.random.default_rng(0))


def test_tiny_generated_graphs_are_connected() -> None:
    for n in (2, 3, 4, 5):
        assert nx.is_strongly_connected(synthetic.random_geometric_graph(n, 1.0, np.random.default_rng(n)))


# ---------------------------------------------------------------------------------------------------------
# Map files
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n_nodes", "extent_km"),
    [("West-Oakland_drive.graphml", 22, (0.5, 3.0)), ("aguascalientes_drive.graphml", 771, (1.0, 5.0))],
)
def test_shipped_maps_load_in_planar_km(name: str, n_nodes: int, extent_km: tuple[float, float]) -> None:
    g = osm.load_graph(MAPS_DIR / name)
    assert g.number_of_nodes() == n_nodes
    assert n_nodes * 1.5 < g.number_of_edges() < n_nodes * 3
    assert all(isinstance(n, str) for n in g.nodes)  # OSM ids kept as given by the GraphML file
    assert nx.is_strongly_connected(g)
    xy = np.array([(d["x"], d["y"]) for _, d in g.nodes(data=True)])
    assert xy.min() == pytest.approx(0.0, abs=1e-9)
    assert extent_km[0] < xy.max() < extent_km[1]
    for u, v, d in g.edges(data=True):
        assert u != v
        assert 0.0 < d["length_m"] < 5000.0
        assert isinstance(d["highway"], str) and not d["highway"].startswith("[")
        # A road is never shorter than the straight line between its ends (1% slack for the projection).
        assert d["length_m"] >= 0.99 * 1000.0 * math.dist(
            (g.nodes[u]["x"], g.nodes[u]["y"]), (g.nodes[v]["x"], g.nodes[v]["y"])
        )
    assert "speed_kmh" not in next(iter(g.edges(data=True)))[2]


def test_shipped_map_travel_times_match_networkx() -> None:
    g = osm.load_graph(MAPS_DIR / "aguascalientes_drive.graphml")
    roads.assign_speeds(g, SPEEDS, 30.0)
    keys = sorted(g.nodes)[::7]
    m = roads.build_travel_matrix(g, keys)
    assert np.isfinite(m.time_min).all()
    for i in (0, 17, 60):
        expected = nx.single_source_dijkstra_path_length(g, keys[i], weight=lambda u, v, d: edge_min(g, u, v))
        np.testing.assert_allclose(m.time_min[i], [expected[k] for k in keys], rtol=1e-12, atol=1e-12)


def test_graphml_attributes_are_parsed_and_parallel_edges_collapsed(tmp_path: Path) -> None:
    raw = nx.MultiDiGraph()
    raw.add_node("1", x="0.0", y="0.0")
    raw.add_node("2", x="0.01", y="0.0")
    raw.add_node("3", x="0.01", y="0.01")
    raw.add_edge("1", "2", length="1500.0", highway="['residential', 'tertiary']")
    raw.add_edge("1", "2", length="1200.0", highway="primary")  # parallel and shorter: kept
    raw.add_edge("2", "1", length="1250.5", highway="secondary")
    raw.add_edge("2", "2", length="10.0", highway="residential")  # self-loop: dropped
    raw.add_edge("2", "3")  # no length: straight line; no highway: 'unclassified'
    path = tmp_path / "small.graphml"
    nx.write_graphml(raw, path)
    g = osm.load_graph(str(path))
    assert sorted(g.edges) == [("1", "2"), ("2", "1"), ("2", "3")]
    assert g.edges["1", "2"] == {"length_m": 1200.0, "highway": "primary"}
    assert g.edges["2", "1"]["highway"] == "secondary"
    assert g.edges["2", "3"]["highway"] == "unclassified"
    # Equirectangular around the mean latitude (0.00333 deg): 0.01 deg is ~1.112 km both ways.
    assert g.nodes["2"]["x"] == pytest.approx(0.01 * KM_PER_DEG, rel=1e-6)
    assert g.nodes["3"]["y"] == pytest.approx(0.01 * KM_PER_DEG, rel=1e-9)
    assert g.edges["2", "3"]["length_m"] == pytest.approx(10.0 * KM_PER_DEG, rel=1e-6)


def test_missing_map_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.graphml"
    with pytest.raises(GraphError, match=r"nowhere\.graphml"):
        osm.load_graph(missing)


def test_unknown_map_suffix_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "streets.csv"
    path.write_text("u,v\n")
    with pytest.raises(GraphError, match=r"streets\.csv.*unknown map format"):
        osm.load_graph(path)


def test_unreadable_graphml_raises_graph_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.graphml"
    path.write_text("<graphml><graph")
    with pytest.raises(GraphError, match=r"broken\.graphml"):
        osm.load_graph(path)


def test_osm_files_need_osmnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "osmnx", None)  # makes ``import osmnx`` fail even where it is installed
    for name in ("city.osm", "city.osm.bz2"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(GraphError, match=r"pip install lastmile\[osm\]"):
            osm.load_graph(tmp_path / name)
    (tmp_path / "city.osm.pbf").write_bytes(b"")
    with pytest.raises(GraphError, match=r"city\.osm\.pbf.*PBF"):
        osm.load_graph(tmp_path / "city.osm.pbf")


# ---------------------------------------------------------------------------------------------------------
# Speeds, components, fingerprint
# ---------------------------------------------------------------------------------------------------------


def test_assign_speeds_uses_table_then_default() -> None:
    g = synthetic.grid_graph(5, 5, 100.0, 0.0, np.random.default_rng(0))
    g.add_edge(0, 6, length_m=141.0, highway="track")
    roads.assign_speeds(g, {"primary": 50.0}, 20.0)
    assert g.edges[0, 1]["speed_kmh"] == 50.0
    assert g.edges[6, 7]["speed_kmh"] == 20.0
    assert g.edges[0, 6]["speed_kmh"] == 20.0
    with pytest.raises(GraphError):
        roads.assign_speeds(g, {"primary": 0.0}, 20.0)
    with pytest.raises(GraphError):
        roads.assign_speeds(g, {}, -1.0)


def test_not_strongly_connected_graph_is_reduced_with_a_warning() -> None:
    g = grid_with_speeds(4, 4)
    g.add_node("dead_end", x=9.0, y=9.0)
    g.add_edge(0, "dead_end", length_m=100.0, speed_kmh=30.0, highway="residential")  # no way back
    g.add_node("island", x=-9.0, y=-9.0)
    with pytest.raises(GraphError, match="no path"):
        roads.build_travel_matrix(g, [0, "dead_end"])
    with pytest.warns(UserWarning, match="dropped 2 nodes"):
        reduced = roads.largest_strongly_connected(g)
    assert reduced.number_of_nodes() == 16 and "dead_end" not in reduced
    assert "dead_end" in g  # the input is left alone
    m = roads.build_travel_matrix(reduced, list(reduced.nodes))
    assert np.isfinite(m.time_min).all() and np.isfinite(m.dist_km).all()


def test_strongly_connected_graph_is_returned_unchanged() -> None:
    g = grid_with_speeds(3, 3)
    assert roads.largest_strongly_connected(g) is g
    with pytest.raises(GraphError, match="empty"):
        roads.largest_strongly_connected(nx.DiGraph())


def test_fingerprint_ignores_insertion_order_and_sees_speeds() -> None:
    g = hand_graph()
    shuffled = nx.DiGraph()
    shuffled.add_nodes_from(reversed(list(g.nodes(data=True))))
    shuffled.add_edges_from(reversed(list(g.edges(data=True))))
    assert roads.graph_fingerprint(shuffled) == roads.graph_fingerprint(g)
    g.edges["A", "B"]["speed_kmh"] = 61.0
    assert roads.graph_fingerprint(shuffled) != roads.graph_fingerprint(g)
    mixed = nx.DiGraph()
    mixed.add_node(1, x=0.0, y=0.0)
    mixed.add_node("1", x=0.0, y=0.0)  # int 1 and str "1" are different nodes: must sort and hash
    assert len(roads.graph_fingerprint(mixed)) == 64


def test_fingerprint_is_stable_across_processes() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from tests.test_graph import hand_graph; "
        "from lastmile_env.graph import graph_fingerprint; print(graph_fingerprint(hand_graph()))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, root],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {roads.graph_fingerprint(hand_graph())}


# ---------------------------------------------------------------------------------------------------------
# Travel matrix
# ---------------------------------------------------------------------------------------------------------


def test_hand_made_matrix_follows_fastest_not_shortest_paths() -> None:
    m = roads.build_travel_matrix(hand_graph(), ["A", "C", "D"])
    np.testing.assert_allclose(m.time_min, [[0.0, 3.0, 4.0], [2.5, 0.0, 1.0], [1.5, 4.5, 0.0]], atol=1e-12)
    np.testing.assert_allclose(m.dist_km, [[0.0, 3.0, 3.5], [3.5, 0.0, 0.5], [3.0, 6.0, 0.0]], atol=1e-12)
    assert m.path(m.index_of("A"), m.index_of("C")) == ["A", "B", "C"]  # not the 1.5 km direct street
    assert m.path(m.index_of("C"), m.index_of("A")) == ["C", "D", "A"]
    assert m.path(m.index_of("D"), m.index_of("C")) == ["D", "A", "B", "C"]
    assert m.path(1, 1) == ["C"]
    assert m.time_min.dtype == np.float64 and m.predecessors.dtype == np.int32
    assert m.predecessors.shape == (3, 4) and set(m.graph_nodes) == set("ABCD")


def test_paths_sum_to_matrix_entries() -> None:
    g = grid_with_speeds(6, 7)
    keys = [0, 41, 20, 13, 35, 7]
    m = roads.build_travel_matrix(g, keys)
    for i in range(len(keys)):
        for j in range(len(keys)):
            p = m.path(i, j)
            assert p[0] == keys[i] and p[-1] == keys[j]
            edges = list(itertools.pairwise(p))
            assert sum(edge_min(g, u, v) for u, v in edges) == pytest.approx(m.time_min[i, j], abs=1e-9)
            assert sum(g.edges[u, v]["length_m"] for u, v in edges) / 1000 == pytest.approx(
                m.dist_km[i, j], abs=1e-9
            )


def test_matrix_is_read_only_and_indexes_key_nodes() -> None:
    m = roads.build_travel_matrix(hand_graph(), ["D", "A"])
    assert m.nodes == ("D", "A") and m.index_of("A") == 1
    with pytest.raises(ValueError, match="read-only"):
        m.time_min[0, 1] = 0.0
    with pytest.raises(GraphError, match="'B'"):
        m.index_of("B")  # on the graph but not a key node


def test_key_node_not_in_graph_is_named() -> None:
    with pytest.raises(GraphError, match="'Z'"):
        roads.build_travel_matrix(hand_graph(), ["A", "Z"])
    with pytest.raises(GraphError, match="twice"):
        roads.build_travel_matrix(hand_graph(), ["A", "C", "A"])


def test_edges_need_speeds() -> None:
    g = synthetic.grid_graph(3, 3, 100.0, 0.0, np.random.default_rng(0))
    with pytest.raises(GraphError, match="assign_speeds"):
        roads.build_travel_matrix(g, [0, 8])


def test_cache_round_trip_and_corrupt_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = grid_with_speeds(8, 8)
    keys = [0, 63, 9, 27, 50]
    cache_dir = tmp_path / "deep" / "cache"
    first = roads.build_travel_matrix(g, keys, cache_dir=cache_dir)
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp file left behind

    def no_compute(*args: object) -> None:
        raise AssertionError("recomputed although cached")

    with monkeypatch.context() as patch:
        patch.setattr(roads, "_fastest_paths", no_compute)
        cached = roads.build_travel_matrix(g, keys, cache_dir=cache_dir)
    for name in ("time_min", "dist_km", "predecessors"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(first, name))
        assert getattr(cached, name).dtype == getattr(first, name).dtype
    assert cached.graph_nodes == first.graph_nodes and cached.path(0, 1) == first.path(0, 1)

    files[0].write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="cache"):
        recomputed = roads.build_travel_matrix(g, keys, cache_dir=cache_dir)
    np.testing.assert_array_equal(recomputed.dist_km, first.dist_km)
    with monkeypatch.context() as patch:  # the corrupt file was replaced by a good one
        patch.setattr(roads, "_fastest_paths", no_compute)
        roads.build_travel_matrix(g, keys, cache_dir=cache_dir)

    g.edges[0, 1]["speed_kmh"] = 5.0  # another graph: another cache entry
    roads.build_travel_matrix(g, keys, cache_dir=cache_dir)
    assert len(list(cache_dir.iterdir())) == 2


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LASTMILE_CACHE_DIR", str(tmp_path))
    assert roads.default_cache_dir() == tmp_path
    monkeypatch.delenv("LASTMILE_CACHE_DIR")
    assert roads.default_cache_dir() == Path.home() / ".cache" / "lastmile"


# ---------------------------------------------------------------------------------------------------------
# Congestion
# ---------------------------------------------------------------------------------------------------------


def reference_arrival(
    mult: tuple[float, ...], free_flow_min: float, depart_min: float, start_h: float
) -> float:
    """Hour-by-hour integration without shortcuts, to compare against."""
    t, work = depart_min, free_flow_min
    while True:
        clock_h = (start_h + t / 60.0) % 24.0
        m = mult[int(clock_h) % 24]
        left_min = (math.floor(clock_h) + 1 - clock_h) * 60.0
        if work * m <= left_min:
            return t + work * m
        work -= left_min / m
        t += left_min


def test_flat_profile_adds_free_flow_time() -> None:
    flat = CongestionProfile.flat()
    assert flat.multipliers == (1.0,) * 24
    for ff, depart, start in [(10.0, 0.0, 8.0), (45.0, 50.0, 7.5), (300.0, 1000.0, 23.0), (0.5, 59.75, 0.0)]:
        assert flat.arrival_min(ff, depart, start) == pytest.approx(depart + ff, abs=1e-9)
    assert flat.arrival_min(0.0, 12.5, 8.0) == 12.5


def test_leg_crossing_hour_boundaries_is_integrated() -> None:
    mult = [1.0] * 24
    mult[8] = 2.0  # 08:00-09:00 takes twice as long
    p = CongestionProfile(tuple(mult))
    # Shift starts 07:00. Leave 07:50 with 20 free-flow min: 10 min at x1 to 08:00, 10 left at x2 = 20 min.
    assert p.arrival_min(20.0, 50.0, 7.0) == pytest.approx(80.0)
    # Leave 08:50 with 20: 10 min at x2 does 5, the other 15 at x1 after 09:00 (sim 120).
    assert p.arrival_min(20.0, 110.0, 7.0) == pytest.approx(135.0)
    # Leave 07:00 with 100: hour 7 does 60, hour 8 does 30 in its 60 min, the last 10 from 09:00 (sim 120).
    assert p.arrival_min(100.0, 0.0, 7.0) == pytest.approx(130.0)
    # Inside one hour: the fast path.
    assert p.arrival_min(5.0, 65.0, 7.0) == pytest.approx(75.0)


def test_congestion_wraps_around_midnight_and_days() -> None:
    mult = [1.0] * 24
    mult[0] = 0.5
    p = CongestionProfile(tuple(mult))
    # Shift starts 23:00; leave 23:30 with 60: 30 to midnight, the other 30 at x0.5 = 15 min.
    assert p.arrival_min(60.0, 30.0, 23.0) == pytest.approx(75.0)
    # A full day's worth of free-flow work (23 * 60 + 120) takes exactly 24 h from any start.
    day_work = 23 * 60.0 + 120.0
    assert p.arrival_min(day_work, 17.0, 6.25) == pytest.approx(17.0 + 1440.0)
    assert p.arrival_min(3 * day_work + 50.0, 0.0, 5.0) == pytest.approx(
        reference_arrival(p.multipliers, 3 * day_work + 50.0, 0.0, 5.0)
    )


def test_negative_free_flow_is_rejected() -> None:
    with pytest.raises(ValueError):
        CongestionProfile.flat().arrival_min(-1.0, 0.0, 8.0)


profiles = st.lists(st.floats(0.2, 5.0), min_size=24, max_size=24).map(tuple)


@settings(max_examples=200, deadline=None)
@given(
    mult=profiles,
    start_h=st.floats(0.0, 23.99),
    depart=st.floats(0.0, 2000.0),
    delay=st.floats(0.0, 300.0),
    ff=st.floats(0.0, 600.0),
)
def test_congestion_is_fifo_and_matches_reference(
    mult: tuple[float, ...], start_h: float, depart: float, delay: float, ff: float
) -> None:
    p = CongestionProfile(mult)
    early, late = p.arrival_min(ff, depart, start_h), p.arrival_min(ff, depart + delay, start_h)
    assert early <= late + 1e-9  # leaving later never arrives earlier
    assert depart + ff * min(mult) - 1e-9 <= early <= depart + ff * max(mult) + 1e-9
    assert early == pytest.approx(reference_arrival(mult, ff, depart, start_h), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    "mult",
    [(1.0,) * 23, (1.0,) * 25, (0.0,) + (1.0,) * 23, (-1.0,) * 24, (0.1,) * 24, (math.nan,) + (1.0,) * 23],
)
def test_bad_profiles_raise(mult: tuple[float, ...]) -> None:
    with pytest.raises(GraphError):
        CongestionProfile(mult)
    assert issubclass(GraphError, ValueError)


@pytest.mark.parametrize(
    ("name", "min_nodes"), [("West-Oakland.osm.bz2", 20), ("aguascalientes.osm.bz2", 700)]
)
def test_osm_xml_extracts_load_with_osmnx(name, min_nodes):
    pytest.importorskip("osmnx")
    g = osm.load_graph(MAPS_DIR / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = roads.largest_strongly_connected(g)
    assert g.number_of_nodes() >= min_nodes
    drivable = osm.DRIVABLE_HIGHWAYS
    assert all(d["length_m"] > 0 and d["highway"] in drivable for _, _, d in g.edges(data=True))
    assert "lonlat_projection" in g.graph
