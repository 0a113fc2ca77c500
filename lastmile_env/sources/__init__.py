"""Data sources: one provider per ``graph.kind``, registered by name in :mod:`lastmile_env.network`.

* :mod:`~lastmile_env.sources.synthetic`: ``grid``, ``geometric``, ``clustered`` road graphs.
* :mod:`~lastmile_env.sources.osm`: ``file``, GraphML / OpenStreetMap road maps.
* :mod:`~lastmile_env.sources.matrix`: ``matrix``, an explicit travel matrix charged as given (VRPLIB, ORTEC).
* :mod:`~lastmile_env.sources.plane`: ``plane``, points in a plane at a speed (CSV, Solomon, VRPLIB).
* :mod:`~lastmile_env.sources.solomon`: ``solomon``, Solomon / Gehring-Homberger VRPTW instances (and their
  static PyVRP benchmark).
* :mod:`~lastmile_env.sources.order_log`: recorded order streams (``orders.log``).

World building (``lastmile_env.sim.world``) never imports these modules: it asks the registry for the
provider of a kind, which imports the module on first use.
"""
