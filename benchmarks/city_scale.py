"""Start-up cost of a city-sized scenario: build a ~10,000-node road graph, precompute the travel matrix over
the centers and address nodes (never all pairs), and start an episode; wall time and peak memory.

    python benchmarks/city_scale.py [--nodes 10000] [--addresses 1000] [--map PATH] [--out FILE]

Each measurement runs in a fresh process with an empty matrix cache (the cold start a user sees first),
then once more with the cache filled. The graph is the synthetic clustered city (no OpenStreetMap extract
of that size ships with the project); ``--map PATH`` measures a real GraphML / OSM file instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
import gymnasium as gym
import lastmile_env
overrides = json.loads(sys.argv[1])
env = gym.make("LastMile-Dispatch-v0", scenario="default", overrides=overrides)
t_world = time.perf_counter()
env.reset(seed=0)
t_reset = time.perf_counter()
world = env.unwrapped.world
print(json.dumps({
    "graph_nodes": world.graph.number_of_nodes(), "key_nodes": len(world.matrix.nodes),
    "world_s": t_world - t0, "first_reset_s": t_reset - t_world, "total_s": t_reset - t0,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def measure(overrides: dict[str, object], cache_dir: str) -> dict[str, float]:
    env = {**os.environ, "LASTMILE_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(overrides)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--addresses", type=int, default=1_000)
    parser.add_argument("--vehicles", type=int, default=100)
    parser.add_argument("--map", default=None, help="a GraphML / OSM file instead of the synthetic city")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/city_scale.md"))
    args = parser.parse_args()
    graph = (
        {"kind": "file", "path": args.map}
        if args.map
        else {"kind": "clustered", "n_nodes": args.nodes, "n_centres": 8, "area_km": 25.0}
    )
    overrides = {
        "graph": {**graph, "n_addresses": args.addresses},
        "fleet.size": args.vehicles,
        "orders.rate_per_hour": 250,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        cold = measure(overrides, cache)
        warm = measure(overrides, cache)
    rows = [("cold (empty matrix cache)", cold), ("warm (matrix from the cache)", warm)]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        f"Scenario: `default` with {cold['graph_nodes']:,} graph nodes, {cold['key_nodes']:,} centers + "
        f"address nodes, {args.vehicles} vehicles, 250 orders/h.",
        "",
        "| start | build world + matrix (s) | first reset (s) | total (s) | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['world_s']:.1f} | {r['first_reset_s']:.1f} | {r['total_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    target = "met" if cold["total_s"] < 30 and cold["peak_rss_mib"] < 2048 else "MISSED"
    lines += ["", f"Target (cold start under 30 s and 2 GiB): **{target}**."]
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/city_scale.py --nodes {args.nodes} --addresses {args.addresses}"
    args.out.write_text(f"# City-scale start-up\n\nCommand: `{command}`\n\n{table}\n")
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
