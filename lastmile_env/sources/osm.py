"""Real road maps (``graph.kind: file``): GraphML as written by osmnx, OpenStreetMap XML through osmnx, and
OpenStreetMap PBF through pyosmium.

Longitude/latitude become planar km; an edge's speed is its ``maxspeed`` tag where the map has one (and
``graph.maxspeed`` is on), else its road type's (``graph.speed_kmh_by_highway``); the graph is cut to its
largest strongly connected component (dead ends of a map cut-out go, with a warning).
"""

from __future__ import annotations

import ast
import hashlib
import math
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from lastmile_env.config import ConfigError, GraphConfig, resolve_map_path
from lastmile_env.graph import (
    MIN_LENGTH_M,
    GraphError,
    assign_speeds,
    default_cache_dir,
    largest_strongly_connected,
    save_cache,
)
from lastmile_env.network import Network, register

__all__ = ["DRIVABLE_HIGHWAYS", "load_graph", "parse_maxspeed"]

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
_GRAPH_CACHE_FORMAT = "lastmile-osm-graph-v1"  # bump when the parsing changes: old cache files are ignored
_PROJECTION_KEYS = ("lon0", "lat0", "km_per_deg_lon", "km_per_deg_lat")


@register("file")
def map_network(cfg: GraphConfig, rng: np.random.Generator) -> Network:
    """``graph.kind: file``: the map at ``graph.path`` (as given, in the repo root or the maps dir)."""
    assert cfg.path is not None  # checked by the config
    path = resolve_map_path(cfg.path)
    if path is None:
        raise ConfigError(f"graph.path: map file not found: {cfg.path}")
    graph = load_graph(path, cache_dir=default_cache_dir())
    assign_speeds(graph, cfg.speed_kmh_by_highway, cfg.default_speed_kmh, use_maxspeed=cfg.maxspeed)
    return Network(largest_strongly_connected(graph))


def load_graph(path: str | Path, cache_dir: Path | None = None) -> nx.DiGraph:
    """Load a road map: GraphML (as written by osmnx), OSM XML (through osmnx) or OSM PBF (through pyosmium).

    Longitude/latitude become planar km (equirectangular around the mean latitude, origin at the south-west
    corner of the bounding box). Parallel edges collapse to the shortest, self-loops are dropped, ``highway``
    lists (GraphML) keep their first type, and an edge without ``length`` gets the straight-line distance.
    An OSM ``maxspeed`` tag becomes the edge's ``maxspeed_kmh`` (:func:`parse_maxspeed`). Speeds are not set
    here: call :func:`~lastmile_env.graph.assign_speeds`.

    The same file gives the same graph whatever the hash seed, process or machine: the raw OSM ways are cut
    to the drivable ones *before* osmnx merges segments, and segments are only merged along one road type,
    so no road type is picked from a list whose order follows the hash seed. With ``cache_dir``, the graph
    parsed from an OSM file is stored there keyed by the file's content, and a second load reads it back.
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
        return _planar_road_graph(raw, path)
    if not name.endswith((*_OSM_XML_SUFFIXES, ".pbf")):
        raise GraphError(
            f"{path}: unknown map format (expected .graphml, .osm, .osm.bz2, .osm.xml or .osm.pbf)"
        )
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"osm_{_content_key(path)}.npz"
        cached = _load_cached_graph(cache_file, path)
        if cached is not None:
            return cached
    raw = _read_osm_pbf(path) if name.endswith(".pbf") else _read_osm_xml(path)
    graph = _planar_road_graph(raw, path)
    if cache_file is not None:
        _save_cached_graph(cache_file, graph)
    return graph


def _import_osmnx(path: Path) -> Any:
    try:
        import osmnx as ox
    except ImportError as exc:
        raise GraphError(
            f"{path}: reading OpenStreetMap files needs osmnx: pip install lastmile[osm]"
        ) from exc
    return ox


def _read_osm_xml(path: Path) -> nx.MultiDiGraph:
    """Read an OSM XML file with osmnx and keep the drivable roads (see ``DRIVABLE_HIGHWAYS``).

    osmnx reads every way unsimplified (one road type per edge); the ways that are not drivable go first,
    then segments merge only along a single road type (``edge_attrs_differ=["highway"]``).
    """
    ox = _import_osmnx(path)
    try:
        raw = ox.graph_from_xml(path, simplify=False, retain_all=True)
    except Exception as exc:  # whatever osmnx raises for a bad file
        raise GraphError(f"{path}: osmnx cannot read this OSM file: {exc}") from exc
    not_drivable = [
        (u, v, k)
        for u, v, k, hw in raw.edges(keys=True, data="highway")
        if hw is None or _first_highway(hw) not in DRIVABLE_HIGHWAYS  # None: not a road (a landuse outline)
    ]
    raw.remove_edges_from(not_drivable)
    raw.remove_nodes_from([n for n in list(raw.nodes) if raw.degree(n) == 0])
    if raw.number_of_edges() == 0:
        raise GraphError(f"{path}: the map has no drivable roads")
    return ox.simplify_graph(raw, edge_attrs_differ=["highway"])


def _read_osm_pbf(path: Path) -> nx.MultiDiGraph:
    """Read an OSM PBF file: pyosmium copies its ways with a ``highway`` tag (and the nodes they use) to a
    temporary OSM XML file, which is then read as :func:`_read_osm_xml` reads any other."""
    try:
        import osmium
        from osmium.filter import KeyFilter
    except ImportError as exc:
        raise GraphError(f"{path}: reading OSM PBF files needs pyosmium: pip install lastmile[osm]") from exc
    with tempfile.TemporaryDirectory(prefix="lastmile-pbf-") as tmp:
        xml = Path(tmp) / "roads.osm"
        try:
            with osmium.BackReferenceWriter(str(xml), ref_src=str(path), overwrite=True) as writer:
                for way in osmium.FileProcessor(str(path), osmium.osm.WAY).with_filter(KeyFilter("highway")):
                    writer.add_way(way)
        except Exception as exc:  # pyosmium raises RuntimeError and friends for a file it cannot decode
            raise GraphError(f"{path}: cannot read this OSM PBF file: {exc}") from exc
        return _read_osm_xml(xml)


def _content_key(path: Path) -> str:
    """The cache key of a map file: its bytes, and everything in this module that shapes the graph."""
    h = hashlib.sha256()
    h.update(f"{_GRAPH_CACHE_FORMAT}\n{sorted(DRIVABLE_HIGHWAYS)}\n".encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _save_cached_graph(file: Path, g: nx.DiGraph) -> None:
    """Store a parsed map as plain arrays, atomically; failure only warns: the cache is optional."""
    nodes = list(g.nodes)
    if not all(isinstance(n, int) for n in nodes):
        return  # OSM node ids are ints; anything else is not worth a cache format
    index = {n: i for i, n in enumerate(nodes)}
    edges = list(g.edges(data=True))
    proj = g.graph["lonlat_projection"]
    arrays = {
        "nodes": np.array(nodes, dtype=np.int64),
        "xy": np.array([[g.nodes[n]["x"], g.nodes[n]["y"]] for n in nodes], dtype=np.float64),
        "uv": np.array([[index[u], index[v]] for u, v, _ in edges], dtype=np.int64).reshape(-1, 2),
        "length_m": np.array([d["length_m"] for _, _, d in edges], dtype=np.float64),
        "highway": np.array([d["highway"] for _, _, d in edges], dtype=str),
        "maxspeed_kmh": np.array([d.get("maxspeed_kmh", np.nan) for _, _, d in edges], dtype=np.float64),
        "projection": np.array([proj[k] for k in _PROJECTION_KEYS], dtype=np.float64),
    }
    save_cache(file, "map cache", arrays)


def _load_cached_graph(file: Path, path: Path) -> nx.DiGraph | None:
    """The cached graph of map ``path``, or ``None`` if absent or unreadable (warns, and it is rebuilt)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            nodes, xy, uv = data["nodes"].tolist(), data["xy"], data["uv"]
            length_m, highway, maxspeed = data["length_m"], data["highway"].tolist(), data["maxspeed_kmh"]
            projection = dict(zip(_PROJECTION_KEYS, data["projection"].tolist(), strict=True))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        warnings.warn(f"map cache {file} is unreadable ({exc}); re-reading {path}", UserWarning, stacklevel=3)
        return None
    g = nx.DiGraph(source=str(path), lonlat_projection=projection)
    for node, (x, y) in zip(nodes, xy.tolist(), strict=True):
        g.add_node(node, x=x, y=y)
    for (u, v), length, hw, speed in zip(
        uv.tolist(), length_m.tolist(), highway, maxspeed.tolist(), strict=True
    ):
        attrs: dict[str, Any] = {"length_m": length, "highway": hw}
        if math.isfinite(speed):
            attrs["maxspeed_kmh"] = speed
        g.add_edge(nodes[u], nodes[v], **attrs)
    return g


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
        attrs: dict[str, Any] = {
            "length_m": max(length_m, MIN_LENGTH_M),
            "highway": _first_highway(data.get("highway")),
        }
        maxspeed = parse_maxspeed(data.get("maxspeed"))
        if maxspeed is not None:
            attrs["maxspeed_kmh"] = maxspeed
        # Parallel edges: the shortest wins, ties broken by content (never by the order they come in).
        if g.has_edge(u, v) and _edge_rank(g.edges[u, v]) <= _edge_rank(attrs):
            continue
        g.add_edge(u, v, **attrs)
    return g


def _edge_rank(attrs: dict[str, Any]) -> tuple[float, str, float]:
    return attrs["length_m"], attrs["highway"], attrs.get("maxspeed_kmh", math.inf)


def parse_maxspeed(value: object) -> float | None:
    """km/h of an OSM ``maxspeed`` value, ``None`` where it gives no number.

    ``"50"``, ``"50 km/h"``, ``"30 mph"``, ``"50;30"`` and lists (``"['50', '30']"``, from merged segments)
    are understood, several values giving their mean (as osmnx's speed imputation does); ``"none"``,
    ``"signals"``, ``"walk"``, zone codes (``"DE:urban"``) and the like give ``None``, so the road-type table
    applies there.
    """
    if value is None:
        return None
    text_value = str(value) if not isinstance(value, list | tuple) else ""
    if text_value.startswith("["):
        try:
            value = ast.literal_eval(text_value)
        except (ValueError, SyntaxError):
            value = text_value.strip("[]").replace("'", "").replace('"', "").split(",")
    parts = [str(v) for v in value] if isinstance(value, list | tuple) else text_value.split(";")
    speeds = []
    for part in parts:
        text = part.strip().lower()
        factor = 1.0
        if text.endswith("mph"):
            factor, text = 1.609344, text.removesuffix("mph").strip()
        elif text.endswith("km/h"):
            text = text.removesuffix("km/h").strip()
        elif text.endswith("kmh"):
            text = text.removesuffix("kmh").strip()
        try:
            speed = float(text) * factor
        except ValueError:
            continue
        if math.isfinite(speed) and speed > 0:
            speeds.append(speed)
    return float(np.mean(sorted(speeds))) if speeds else None


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
