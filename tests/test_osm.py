"""OSM maps: the same file gives the same graph (any hash seed), cached by content; PBF; maxspeed."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import networkx as nx
import pytest

from lastmile_env.config import MAPS_DIR, load_scenario
from lastmile_env.graph import GraphError, assign_speeds
from lastmile_env.sim import build_world
from lastmile_env.sources import osm

pytest.importorskip("osmnx")

REPO = Path(__file__).resolve().parent.parent
EXTRACT = MAPS_DIR / "aguascalientes.osm.bz2"
SPEEDS = {"primary": 45.0, "secondary": 40.0, "tertiary": 35.0, "residential": 25.0}


def content(g: nx.DiGraph) -> tuple[frozenset, frozenset]:
    """Node and edge sets, with every attribute (a change of road type or length shows)."""
    nodes = frozenset((n, round(d["x"], 9), round(d["y"], 9)) for n, d in g.nodes(data=True))
    edges = frozenset((u, v, tuple(sorted(d.items()))) for u, v, d in g.edges(data=True))
    return nodes, edges


def test_the_same_extract_gives_the_same_graph_whatever_the_hash_seed() -> None:
    code = (
        "import hashlib, sys; from lastmile_env.sources import osm; "
        f"g = osm.load_graph({str(EXTRACT)!r}); "
        "nodes = sorted((n, repr(d['x']), repr(d['y'])) for n, d in g.nodes(data=True)); "
        "edges = sorted((u, v, sorted(d.items())) for u, v, d in g.edges(data=True)); "
        "print(len(nodes), len(edges), hashlib.sha256(repr((nodes, edges)).encode()).hexdigest())"
    )
    outputs = set()
    for seed in ("0", "1", "4242"):
        env = {"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
        assert run.returncode == 0, run.stderr
        outputs.add(run.stdout.strip())
    assert len(outputs) == 1, outputs
    n_nodes, n_edges, _ = outputs.pop().split()
    g = osm.load_graph(EXTRACT)
    assert (g.number_of_nodes(), g.number_of_edges()) == (int(n_nodes), int(n_edges))


def test_only_tagged_roads_are_kept() -> None:
    # Landuse outlines share nodes with roads: without a highway tag they are not roads at all.
    g = osm.load_graph(EXTRACT)
    assert all(d["highway"] in osm.DRIVABLE_HIGHWAYS for _, _, d in g.edges(data=True))
    assert "5514844431" not in {str(n) for n in g.nodes}  # a node of an industrial area's outline only


def test_the_parsed_map_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = osm.load_graph(EXTRACT, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("osm_*.npz")
    copy = tmp_path / "copy.osm.bz2"
    copy.write_bytes(EXTRACT.read_bytes())

    def no_parsing(path: Path) -> nx.MultiDiGraph:
        raise AssertionError("the map was parsed again")

    monkeypatch.setattr(osm, "_read_osm_xml", no_parsing)
    again = osm.load_graph(copy, cache_dir=tmp_path)  # same bytes, other name: the same cache entry
    assert content(again) == content(first)
    assert again.graph["lonlat_projection"] == first.graph["lonlat_projection"]
    assert again.graph["source"] == str(copy)
    monkeypatch.undo()
    cache_file.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="map cache .* is unreadable"):
        rebuilt = osm.load_graph(EXTRACT, cache_dir=tmp_path)
    assert content(rebuilt) == content(first)


def test_pbf_extracts_read_like_their_xml(tmp_path: Path) -> None:
    osmium = pytest.importorskip("osmium")
    pbf = tmp_path / "aguascalientes.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(EXTRACT)):
            writer.add(obj)
    assert content(osm.load_graph(pbf)) == content(osm.load_graph(EXTRACT))
    broken = tmp_path / "broken.osm.pbf"
    broken.write_bytes(b"garbage")
    with pytest.raises(GraphError, match=r"broken\.osm\.pbf: cannot read this OSM PBF file"):
        osm.load_graph(broken)


@pytest.mark.parametrize(
    ("value", "kmh"),
    [
        ("50", 50.0),
        ("50 km/h", 50.0),
        ("30 mph", 30 * 1.609344),
        ("50;30", 40.0),
        ("['40', '60']", 50.0),
        (["60", "40"], 50.0),
        ("none", None),
        ("signals", None),
        ("DE:urban", None),
        ("0", None),
        (None, None),
    ],
)
def test_maxspeed_values(value: object, kmh: float | None) -> None:
    assert osm.parse_maxspeed(value) == (None if kmh is None else pytest.approx(kmh))


def test_speeds_come_from_maxspeed_where_tagged_else_the_road_type() -> None:
    g = osm.load_graph(EXTRACT)
    tagged = [(u, v) for u, v, d in g.edges(data=True) if "maxspeed_kmh" in d]
    assert len(tagged) > 50  # the extract tags some main roads with 50 km/h
    assign_speeds(g, SPEEDS, 30.0, use_maxspeed=True)
    for u, v, d in g.edges(data=True):
        expected = d["maxspeed_kmh"] if (u, v) in tagged else SPEEDS.get(d["highway"], 30.0)
        assert d["speed_kmh"] == expected
    assert {g.edges[e]["speed_kmh"] for e in tagged} != {SPEEDS.get(g.edges[e]["highway"]) for e in tagged}
    assign_speeds(g, SPEEDS, 30.0)  # the road-type table alone (also what cargo bikes use)
    assert all(d["speed_kmh"] == SPEEDS.get(d["highway"], 30.0) for _, _, d in g.edges(data=True))


def test_a_scenario_on_an_osm_extract_uses_the_maxspeed_switch() -> None:
    base = {"name": "ags", "graph": {"kind": "file", "path": "aguascalientes.osm.bz2"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the extract's dead ends are cut off with a warning
        tagged = build_world(load_scenario(base))
        table = build_world(load_scenario(base, {"graph.maxspeed": False}))
    assert [d.get("maxspeed_kmh") for *_, d in tagged.graph.edges(data=True)].count(None) > 0
    speeds = {(u, v): d["speed_kmh"] for u, v, d in tagged.graph.edges(data=True)}
    assert any(speeds[u, v] != d["speed_kmh"] for u, v, d in table.graph.edges(data=True))
