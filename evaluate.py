"""Evaluate dispatch policies on paired episodes of a scenario (or a suite of scenarios) and write a report.

    python evaluate.py --scenario default --policies random,nearest,insertion,regret --episodes 50 --seed 0 \\
        --out runs/eval/default
    python evaluate.py --suite standard --policies insertion,regret --episodes 20 --hindsight-iterations 0
    python evaluate.py --policies learned,reopt,reopt:time=0.5 --hindsight-time-limit 2   # wall-clock budgets
    python evaluate.py --scenario small --episodes 5 env.fleet.size=4      # scenario overrides: env.<field>
    python evaluate.py --benchmark euro2022 --policies greedy,lazy,random --out runs/euro2022
    python evaluate.py --benchmark euro2022 --policies greedy,urgent_routes,learned_epoch --out runs/euro2022

Episode k of every policy plays the day of seed ``seed + k``, so differences between policies are paired.
Writes episodes.csv, summary.json, summary.md, metrics.png and route_map.png under --out (for a suite:
one subfolder per scenario, plus suite.md and suite.json) and prints the Markdown summary. ``--record N``
keeps each policy's first N days as replay records under replays/ (``lastmile replay``), linked from
summary.md. A benchmark (``--benchmark euro2022``: the EURO Meets NeurIPS 2022 dynamic VRPTW) plays wave
policies on every run of the competition's configs whose instance is in --instances and writes results.csv
and summary.md.
``lastmile evaluate ...`` runs this same script. Bad input (a scenario, map, order log, model zip or
``--out``) is one line naming the file and the problem, exit code 2, before any episode runs (``--debug``:
with the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.evaluation import evaluate, evaluate_suite, load_suite
from agents.heuristics import HEURISTICS
from agents.heuristics.waves import WAVE_HEURISTICS
from lastmile_env.cli_errors import DEBUG_HELP, run_cli
from lastmile_env.config import ConfigError, scenario_overrides
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.wave_routing import WAVE_ITERATIONS


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--scenario", default="default", help="scenario name or YAML path (default: default)")
    target.add_argument("--suite", help="suite name (configs/suite/) or YAML path, instead of --scenario")
    target.add_argument(
        "--benchmark",
        choices=["euro2022"],
        help="a benchmark of the field instead: euro2022 (EURO-NeurIPS'22)",
    )
    parser.add_argument(
        "--policies",
        help="comma-separated policies: heuristic names (options after colons: reopt:time=0.5, "
        "reopt:iterations=200), learned (the shipped best learned policy), model .zip paths, "
        f"dispatch+reopt, dispatch+routing, wave policies ({','.join(WAVE_HEURISTICS)}; wave:NAME; "
        "options: urgent_routes:slack=20:safety=10:iterations=25), learned_epoch[:same options] "
        f"(default: all heuristics: {','.join(HEURISTICS)}; for a benchmark: all wave policies; "
        "there also learned_epoch, the shipped learned wave policy, or a wave model .pt)",
    )
    parser.add_argument("--episodes", type=int, default=20, help="episodes per policy (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="episode k uses seed + k (default: 0)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--reference",
        help="policy the others are compared to, episode by episode (default: insertion if evaluated, "
        "else the first policy)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--hindsight-iterations",
        type=int,
        metavar="N",
        help="PyVRP iterations per day for the hindsight bound (default: 250, the same numbers on any "
        "machine and worker count); 0 skips the gap to hindsight",
    )
    budget.add_argument(
        "--hindsight-time-limit",
        type=float,
        metavar="S",
        help="wall-clock solver seconds per day for the hindsight bound instead (depends on the machine's "
        "speed and load); 0 skips the gap to hindsight",
    )
    parser.add_argument(
        "--record",
        type=int,
        default=0,
        metavar="N",
        help="record each policy's first N days as replays under OUT/replays/ (lastmile replay; default: 0)",
    )
    bench = parser.add_argument_group("benchmark (--benchmark euro2022)")
    bench.add_argument("--instances", type=Path, help="folder of instance files (default: the shipped ones)")
    bench.add_argument(
        "--configs", type=Path, help="the runs, a JSON list (default: the shipped final_configs.json)"
    )
    bench.add_argument(
        "--variant", choices=["dynamic", "static"], default="dynamic", help="(default: dynamic)"
    )
    bench.add_argument(
        "--solver-iterations", type=int, help=f"PyVRP iterations per wave (default: {WAVE_ITERATIONS})"
    )
    bench.add_argument(
        "--solver-time-limit",
        type=float,
        metavar="S",
        help="wall-clock seconds per wave instead of iterations (results then depend on the machine)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: runs/eval/<scenario or suite>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--ray", action="store_true", help="run the episodes as Ray tasks (pip install 'lastmile[ray]')"
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to use (auto, HOST:PORT, ray://HOST:10001); implies --ray",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("overrides", nargs="*", help="scenario overrides, e.g. env.fleet.size=30")
    return parser


def check_inputs(
    scenarios: Sequence[str], policies: Sequence[str], overrides: dict[str, object], out: Path | None
) -> None:
    """Fail now, in one line, on what would otherwise fail inside a worker process: every scenario's map
    file and order log, every model zip (a dispatch model where a dispatch policy goes, a routing
    model after the '+'), and ``--out`` (a folder, or nothing yet)."""
    from lastmile_env.config import load_scenario
    from lastmile_env.generators import default_generator
    from lastmile_env.sim.world import world_for

    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder (the report is a folder of files)")
    for scenario in scenarios:
        config = load_scenario(scenario, overrides)
        if config.graph.kind not in ("grid", "geometric", "clustered") or config.orders.log is not None:
            default_generator(world_for(config))  # reads the map, reads and checks the order log
    for spec in policies:
        dispatch, _, routing = spec.partition("+")
        if dispatch.endswith(".zip") and Path(dispatch).is_file():
            from agents.learned.policy import LearnedPolicy

            LearnedPolicy.load(dispatch)
        if routing.endswith(".zip") and Path(routing).is_file():
            from agents.learned.routing_policy import LearnedRoutingPolicy

            LearnedRoutingPolicy.load(routing)


def training_config(model_zip: Path) -> dict[str, Any] | None:
    """The experiment config a model zip was trained with, where it can be found: ``<name>.config.yaml``
    beside it (shipped models), a checkpoint's JSON state, or its run folder's ``config.yaml``."""
    import json

    import yaml

    run_dir = model_zip.parent.parent if model_zip.parent.name == "checkpoints" else model_zip.parent
    beside = (model_zip.with_suffix(".config.yaml"), model_zip.with_suffix(".json"))
    for candidate in (*beside, run_dir / "config.yaml"):
        if not candidate.is_file():
            continue
        try:
            text = candidate.read_text()
            data = json.loads(text).get("config") if candidate.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(data, dict) and "scenario" in data:
            return data
    return None


def scenario_warnings(
    scenarios: Sequence[str], policies: Sequence[str], overrides: dict[str, Any]
) -> list[str]:
    """A line per (model zip, scenario) where the model meets a scenario unlike its training one."""
    from lastmile_env.config import load_scenario, training_scenario_warning

    lines = []
    for spec in policies:
        for part in spec.split("+"):
            config = training_config(Path(part)) if part.endswith(".zip") and Path(part).is_file() else None
            for scenario in scenarios if config is not None else ():
                warning = training_scenario_warning({"config": config}, load_scenario(scenario, overrides))
                if warning:
                    lines.append(f"warning: {part}: {warning}")
    return lines


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run_cli(lambda args: _main(args, prog), argv, prog or "evaluate.py")


def _main(argv: Sequence[str], prog: str | None) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.benchmark is not None:
        if args.record:
            print(
                "error: --record records the days of --scenario or --suite, not of --benchmark",
                file=sys.stderr,
            )
            return 2
        return _benchmark(args)
    policies = [p.strip() for p in (args.policies or ",".join(HEURISTICS)).split(",") if p.strip()]
    reference = args.reference or (
        "insertion" if "insertion" in policies else policies[0] if policies else None
    )
    started = time.perf_counter()
    overrides = scenario_overrides(args.overrides)
    scenarios = load_suite(args.suite).scenarios if args.suite is not None else (args.scenario,)
    check_inputs(scenarios, policies, overrides, args.out)
    warnings = scenario_warnings(scenarios, policies, overrides)
    for line in warnings:
        print(line, file=sys.stderr)
    common = {
        "episodes": args.episodes,
        "seed": args.seed,
        "workers": args.workers,
        "reference": reference,
        "hindsight_time_limit_s": args.hindsight_time_limit,
        "hindsight_iterations": args.hindsight_iterations,
        "overrides": overrides,
        "progress": not args.no_progress,
        "ray": args.ray_address or args.ray,
        "record": args.record,
    }
    if args.suite is not None:
        suite = evaluate_suite(args.suite, policies, **common)
        out = args.out or Path("runs/eval") / suite.suite.name
        suite.write(out)
        report = suite.markdown() + "\n" + "\n".join(r.markdown(heading="###") for r in suite.results)
    else:
        result = evaluate(args.scenario, policies, **common)
        out = args.out or Path("runs/eval") / result.scenario
        result.write(out)
        report = result.markdown()
    if warnings:  # in the printed report and at the top of the written one
        notes = "\n".join(f"> {line}" for line in warnings) + "\n\n"
        report = notes + report
        summary = out / ("suite.md" if args.suite is not None else "summary.md")
        if summary.is_file():
            summary.write_text(notes + summary.read_text())
    print(report)
    print(f"wrote {out}/ in {time.perf_counter() - started:.1f} s")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    """``--benchmark euro2022``: every run of the configs, each wave policy, results.csv and summary.md."""
    from agents.evaluation.euro2022 import DATA_DIR, benchmark

    started = time.perf_counter()
    policies = [p.strip() for p in (args.policies or ",".join(WAVE_HEURISTICS)).split(",") if p.strip()]
    out = args.out or Path("runs/eval") / f"euro2022-{args.variant}"
    budget = SolverBudget.of(args.solver_iterations, args.solver_time_limit, WAVE_ITERATIONS)
    benchmark(
        policies,
        out,
        instances=args.instances or DATA_DIR / "instances",
        configs=args.configs or DATA_DIR / "final_configs.json",
        static=args.variant == "static",
        budget=budget,
        hindsight=0 not in (args.hindsight_time_limit, args.hindsight_iterations),
        workers=args.workers,
        progress=not args.no_progress,
    )
    print((out / "summary.md").read_text())
    print(f"wrote {out}/ in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
