"""Real road maps (``graph.kind: file``): GraphML as written by osmnx, or OpenStreetMap XML through osmnx.

Longitude/latitude become planar km; speeds come from the road type (``graph.speed_kmh_by_highway``) and the
graph is cut to its largest strongly connected component (dead ends of a map cut-out go, with a warning).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Hashable
from pathlib import Path

import networkx as nx
import numpy as np

from lastmile_env.config import ConfigError, GraphConfig, resolve_map_path
from lastmile_env.graph import MIN_LENGTH_M, GraphError, assign_speeds, largest_strongly_connected
from lastmile_env.network import Network, register

__all__ = ["DRIVABLE_HIGHWAYS", "load_graph"]

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
DRIVABLE_HIGHWAYS = frozenset(
    {
        "motorway",
        "motorway_link",
        "trunk",
        "trunk_link",
        "primary",
        "primary_link",
        "secondary",
        "secondary_link",
        "tertiary",
        "tertiary_link",
        "unclassified",
        "residential",
        "living_street",
        "road",
    }
)  # what ``load_graph`` keeps of a raw OSM file (close to osmnx's "drive" network type)
_GRAPHML_SUFFIXES = (".graphml",)
_OSM_XML_SUFFIXES = (".osm", ".osm.bz2", ".xml", ".osm.xml")


@register("file")
def map_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: file``: the map at ``graph.path`` (as given, in the repo root or the maps dir)."""
    assert cfg.path is not None  # checked by the config
    path = resolve_map_path(cfg.path)
    if path is None:
        raise ConfigError(f"graph.path: map file not found: {cfg.path}")
    graph = load_graph(path)
    assign_speeds(graph, cfg.speed_kmh_by_highway, cfg.default_speed_kmh)
    return Network(largest_strongly_connected(graph))


def load_graph(path: str | Path) -> nx.DiGraph:
    """Load a road map: GraphML (as written by osmnx) or, with osmnx installed, an OSM XML file.

    Longitude/latitude become planar km (equirectangular around the mean latitude, origin at the south-west
    corner of the bounding box). Parallel edges collapse to the shortest, self-loops are dropped, ``highway``
    lists keep their first type, and an edge without ``length`` gets the straight-line distance. Speeds are
    not set here: call :func:`assign_speeds`.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise GraphError(f"map file not found: {path}")
    if name.endswith(_GRAPHML_SUFFIXES):
        try:
            raw = nx.read_graphml(path, force_multigraph=True)
        except Exception as exc:  # ElementTree, networkx and value errors alike: not usable GraphML
            raise GraphError(f"{path}: cannot read GraphML: {exc}") from exc
    elif name.endswith(_OSM_XML_SUFFIXES):
        raw = _read_osm_xml(path)
    elif name.endswith(".pbf"):
        raise GraphError(
            f"{path}: OSM PBF files are not supported (osmnx reads OSM XML only); convert it first, e.g. "
            f"`osmium cat {path.name} -o map.osm`"
        )
    else:
        raise GraphError(f"{path}: unknown map format (expected .graphml, .osm, .osm.bz2 or .osm.xml)")
    return _planar_road_graph(raw, path)


def _read_osm_xml(path: Path) -> nx.MultiDiGraph:
    """Read an OSM XML file with osmnx and keep the drivable roads (see ``DRIVABLE_HIGHWAYS``)."""
    try:
        import osmnx as ox
    except ImportError as exc:
        raise GraphError(
            f"{path}: reading OpenStreetMap files needs osmnx: pip install lastmile[osm]"
        ) from exc
    try:
        raw = ox.graph_from_xml(path)
    except Exception as exc:  # whatever osmnx raises for a bad file
        raise GraphError(f"{path}: osmnx cannot read this OSM file: {exc}") from exc
    not_drivable = [
        (u, v, k)
        for u, v, k, hw in raw.edges(keys=True, data="highway")
        if _first_highway(hw) not in DRIVABLE_HIGHWAYS
    ]
    raw.remove_edges_from(not_drivable)
    raw.remove_nodes_from([n for n in list(raw.nodes) if raw.degree(n) == 0])
    return raw


def _planar_road_graph(raw: nx.MultiGraph, path: Path) -> nx.DiGraph:
    """Project a lon/lat (multi)graph to planar km and reduce it to a road :class:`~networkx.DiGraph`."""
    if raw.number_of_nodes() == 0:
        raise GraphError(f"{path}: the map has no nodes")
    lon_lat: dict[Hashable, tuple[float, float]] = {}
    for node, data in raw.nodes(data=True):
        try:
            lon_lat[node] = (float(data["x"]), float(data["y"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphError(f"{path}: node {node!r} has no numeric 'x' (lon) / 'y' (lat)") from exc
    lon = np.array([p[0] for p in lon_lat.values()])
    lat = np.array([p[1] for p in lon_lat.values()])
    km_per_deg = EARTH_RADIUS_KM * math.pi / 180.0
    kx = km_per_deg * math.cos(math.radians(float(lat.mean())))
    lon0, lat0 = float(lon.min()), float(lat.min())
    # The projection is kept on the graph, so coordinates (e.g. an order log's) can be snapped onto it.
    projection = {"lon0": lon0, "lat0": lat0, "km_per_deg_lon": kx, "km_per_deg_lat": km_per_deg}
    g = nx.DiGraph(source=str(path), lonlat_projection=projection)
    for node, (x_deg, y_deg) in lon_lat.items():
        g.add_node(node, x=(x_deg - lon0) * kx, y=(y_deg - lat0) * km_per_deg)
    for u, v, data in raw.edges(data=True):
        if u == v:
            continue
        if "length" in data:
            try:
                length_m = float(data["length"])
            except (TypeError, ValueError) as exc:
                raise GraphError(
                    f"{path}: edge ({u!r}, {v!r}) has a non-numeric length {data['length']!r}"
                ) from exc
        else:
            length_m = 1000.0 * math.dist(_xy(g, u), _xy(g, v))
        if not math.isfinite(length_m) or length_m < 0:
            raise GraphError(f"{path}: edge ({u!r}, {v!r}) has an invalid length {length_m!r} m")
        length_m = max(length_m, MIN_LENGTH_M)
        if g.has_edge(u, v) and g.edges[u, v]["length_m"] <= length_m:
            continue
        g.add_edge(u, v, length_m=length_m, highway=_first_highway(data.get("highway")))
    return g


def _xy(g: nx.DiGraph, node: Hashable) -> tuple[float, float]:
    return g.nodes[node]["x"], g.nodes[node]["y"]


def _first_highway(value: object) -> str:
    """The road type of an OSM edge: ``"['residential', 'tertiary']"`` or a list -> its first entry."""
    if isinstance(value, str) and value.startswith("["):
        text = value
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text.strip("[]").split(",")[0].strip(" '\"")
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return str(value) if value else "unclassified"
