"""What a data source hands to world building, and the registry of sources by ``graph.kind``.

A *provider* turns a scenario's ``graph`` section into a :class:`Network`: a road graph to route on (synthetic
generators, GraphML / OSM maps), or a set of places with an exact travel matrix charged as given (a VRPLIB
matrix, points in a plane). The providers live in :mod:`lastmile_env.sources`, one module per kind, and
register themselves with :func:`register`; world building (``lastmile_env.sim.world``) only calls
:func:`build_network`, so the simulator imports no data loader. The module of a built-in kind is imported the
first time the kind is asked for (``BUILTIN_KINDS``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import networkx as nx
import numpy as np

from lastmile_env.config import ConfigError, GraphConfig, ScenarioConfig

__all__ = ["BUILTIN_KINDS", "Network", "Provider", "build_network", "register"]


@dataclass(frozen=True, eq=False)
class Network:
    """A provider's result.

    ``graph``: nodes with ``x``, ``y`` (km on a plane, or the data's own coordinates for a matrix) and, for
    a road graph, edges with ``length_m``, ``speed_kmh`` and ``highway``. ``time_min`` / ``dist_km``: when
    given, the exact (N, N) travel matrix over ``list(graph.nodes)`` in that order, charged as given (no
    shortest-path closure); when ``None`` the world routes on the graph's fastest paths. ``depots``: the
    centers the data names (a VRPLIB depot), used unless the scenario names or counts its own.
    """

    graph: nx.DiGraph
    time_min: np.ndarray | None = None
    dist_km: np.ndarray | None = None
    depots: tuple[Hashable, ...] | None = None

    def __post_init__(self) -> None:
        if (self.time_min is None) != (self.dist_km is None):
            raise ValueError("a Network's time_min and dist_km are given together or not at all")
        if self.time_min is not None and self.dist_km is not None:
            n = self.graph.number_of_nodes()
            if self.time_min.shape != (n, n) or self.dist_km.shape != (n, n):
                raise ValueError(
                    f"travel matrix shapes {self.time_min.shape} / {self.dist_km.shape} do not match the "
                    f"{n} graph nodes"
                )


Provider = Callable[[GraphConfig, np.random.Generator], Network]

# The module that provides each built-in kind (imported on first use, registering the kind).
BUILTIN_KINDS: dict[str, str] = {
    "grid": "lastmile_env.sources.synthetic",
    "geometric": "lastmile_env.sources.synthetic",
    "clustered": "lastmile_env.sources.synthetic",
    "file": "lastmile_env.sources.osm",
    "solomon": "lastmile_env.sources.solomon",
    "matrix": "lastmile_env.sources.matrix",
    "plane": "lastmile_env.sources.plane",
}
_PROVIDERS: dict[str, Provider] = {}


def register(kind: str) -> Callable[[Provider], Provider]:
    """Decorator: make ``provider`` the source of ``graph.kind == kind`` (one provider per kind)."""

    def decorate(provider: Provider) -> Provider:
        existing = _PROVIDERS.get(kind)
        if existing is not None and existing is not provider:
            raise ValueError(f"graph kind {kind!r} already has a provider: {existing.__qualname__}")
        _PROVIDERS[kind] = provider
        return provider

    return decorate


def provider_for(kind: str) -> Provider:
    """The provider registered for ``kind``, importing a built-in kind's module on first use."""
    if kind not in _PROVIDERS and kind in BUILTIN_KINDS:
        importlib.import_module(BUILTIN_KINDS[kind])
    try:
        return _PROVIDERS[kind]
    except KeyError:
        known = sorted(set(BUILTIN_KINDS) | set(_PROVIDERS))
        raise ValueError(f"graph.kind {kind!r} has no provider; known kinds: {', '.join(known)}") from None


def build_network(cfg: ScenarioConfig, rng: np.random.Generator) -> Network:
    """The network of a scenario: its ``graph.kind``'s provider applied to its ``graph`` section.

    A data file the provider cannot use (missing, malformed) is the scenario's problem: it comes out as a
    one-line :class:`ConfigError` naming the file, as every CLI reports them.
    """
    provider = provider_for(cfg.graph.kind)
    try:
        return provider(cfg.graph, rng)
    except ConfigError:
        raise
    except ValueError as exc:  # GraphError, SolomonError, PointsError, MatrixError...: bad data
        raise ConfigError(f"graph ({cfg.graph.kind}): {exc}") from exc
