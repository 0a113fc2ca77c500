"""Where a served decision's CPU goes: the ``default`` episode's recorded snapshots, parsed and decided
in-process by ``serving.runtime.Dispatcher`` (no HTTP), CPU time per request (the least over ``--rounds``
passes: the machine's other work only adds), then a cProfile of the decisions (cumulative, top 25).

    python benchmarks/decision_profile.py --model policy.onnx [--rounds 5] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

from agents.heuristics.rules import InsertionPolicy
from lastmile_env.sim import Simulator
from serving.runtime import Dispatcher
from serving.schema import DispatchRequest
from serving.snapshot import record_requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="an exported policy.onnx (its manifest beside it)")
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the snapshots (the least counts)")
    parser.add_argument("--no-profile", action="store_true", help="CPU times only")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    dispatcher = Dispatcher(args.model, args.scenario)
    dispatcher.warm_up()
    raws = [
        json.dumps(r).encode() for r in record_requests(Simulator(dispatcher.world, 0), InsertionPolicy())
    ]
    parse_ms = decide_ms = float("inf")
    for _ in range(args.rounds):
        started = time.process_time()
        parsed = [DispatchRequest.model_validate_json(raw) for raw in raws]
        parse_ms = min(parse_ms, (time.process_time() - started) / len(raws) * 1e3)
        started = time.process_time()
        for request in parsed:
            dispatcher.decide(request, log_decision=False)
        decide_ms = min(decide_ms, (time.process_time() - started) / len(parsed) * 1e3)
    print(
        f"{len(raws)} snapshots, least of {args.rounds} passes: parse + validate {parse_ms:.2f} ms CPU, "
        f"decide {decide_ms:.2f} ms CPU each"
    )
    if args.no_profile:
        return
    profile = cProfile.Profile()
    profile.enable()
    for request in parsed:
        dispatcher.decide(request, log_decision=False)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())


if __name__ == "__main__":
    main()
