"""The ``lastmile`` command: one entry point, a subcommand per job.

It sits on top of the house (it imports the env package, the agents and the server; none of them imports
it) and runs every subcommand behind the one error path of ``lastmile_env.cli_errors``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from lastmile_env.cli_errors import DEBUG_HELP, run_cli
from lastmile_env.config import scenario_overrides


def cmd_demo(args: argparse.Namespace) -> int:
    """The shipped best learned policy against the heuristics on a few paired days (no training here)."""
    from agents.evaluation import evaluate
    from agents.learned.shipped import SHIPPED_FILE, shipped_learned

    shipped = shipped_learned()
    print(
        f"Evaluating the SHIPPED learned policy {shipped.listed} ({shipped.description}; listed in "
        f"{SHIPPED_FILE.name}; not retrained here) against nearest and insertion on {args.episodes} "
        f"paired days of '{args.scenario}' (seeds {args.seed}..{args.seed + args.episodes - 1}).",
        flush=True,
    )
    started = time.perf_counter()
    result = evaluate(
        args.scenario,
        ["nearest", "insertion", "learned"],
        episodes=args.episodes,
        seed=args.seed,
        workers=args.workers,
        overrides=scenario_overrides(args.overrides),
        hindsight_time_limit_s=0.0,
        progress=False,
    )
    print(result.markdown())
    took = time.perf_counter() - started
    if args.scenario == "default":
        print(f"{took:.0f} s. Full results (100 days, reopt, hindsight): experiments/dispatch/")
    else:  # the shipped full results are the default scenario's, not this one's
        print(
            f"{took:.0f} s. For more days, reopt and the hindsight gap on '{args.scenario}': "
            f"python evaluate.py --scenario {args.scenario} --policies nearest,insertion,learned,reopt "
            "--episodes 20"
        )
    return 0


def _run_script(relative: str, argv: Sequence[str], prog: str) -> int:
    """Run a repository script's ``main(argv, prog=...)``: one implementation behind ``python SCRIPT ...``
    and its ``lastmile`` subcommand."""
    import importlib.util

    from lastmile_env.config import REPO_ROOT

    script = REPO_ROOT / relative
    spec = importlib.util.spec_from_file_location(f"lastmile_{script.stem}", script)
    if not script.is_file() or spec is None or spec.loader is None:
        print(f"{prog}: {script} not found (run from a checkout of the repository)", file=sys.stderr)
        return 2
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return int(module.main(argv, prog=prog) or 0)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``python evaluate.py`` on the arguments after ``evaluate``."""
    return _run_script("evaluate.py", args.argv, "lastmile evaluate")


def cmd_bench(args: argparse.Namespace) -> int:
    """``python benchmarks/suite.py`` (the benchmark suite) on the arguments after ``bench``."""
    return _run_script("benchmarks/suite.py", args.argv, "lastmile bench")


def cmd_train(args: argparse.Namespace) -> int:
    """Train a dispatch policy: the same code and options as ``python train.py``."""
    from agents.learned.cli import run_train

    return run_train(args)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint's network to ONNX plus its manifest; fails unless onnxruntime matches torch."""
    from pathlib import Path

    from serving.export import ExportError, export_onnx
    from serving.manifest import default_manifest_path

    if not Path(args.checkpoint).is_file():
        print(f"lastmile export: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    try:
        manifest = export_onnx(
            args.checkpoint, args.out, args.manifest, tolerance=args.tolerance, rtol=args.rtol
        )
    except ValueError as exc:  # not a dispatch model zip
        print(f"lastmile export: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"lastmile export: {exc}", file=sys.stderr)
        return 1
    checks = manifest.verification
    worst = max(
        checks[name][key]
        for name in ("random", "recorded")
        for key in ("max_abs_diff_logits", "max_abs_diff_value")
    )
    print(
        f"exported {args.checkpoint} -> {args.out} (opset {manifest.opset}, "
        f"sha256 {manifest.model_sha256[:16]}); "
        f"manifest {args.manifest or default_manifest_path(args.out)}; onnxruntime matches torch within "
        f"{worst:.1e} (relative {max(checks[n]['max_rel_diff'] for n in ('random', 'recorded')):.1e}) "
        f"and picks the same action on {checks['random']['observations']} random and "
        f"{checks['recorded']['observations']} recorded observations"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an exported policy over HTTP until interrupted."""
    from serving.app import serve
    from serving.manifest import ManifestError

    try:
        serve(
            args.model,
            args.scenario,
            host=args.host,
            port=args.port,
            token=args.token,
            manifest=args.manifest,
            max_body_bytes=args.max_body_bytes,
            log_level=args.log_level,
            workers=args.workers,
            header_timeout_s=args.header_timeout,
            reoptimize_every_min=args.reoptimize_every,
            reopt_iterations=args.reopt_iterations,
        )
    except (ManifestError, ValueError) as exc:
        print(f"lastmile serve: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lastmile", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="the shipped trained policy against nearest and insertion on a few paired days"
    )
    demo.add_argument("--scenario", default="default", help="scenario name or YAML path")
    demo.add_argument("--episodes", type=int, default=6)
    demo.add_argument("--seed", type=int, default=40000, help="day k is seed + k (days unseen in training)")
    demo.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    demo.add_argument("overrides", nargs="*", help="scenario overrides, e.g. env.fleet.size=30")
    demo.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    demo.set_defaults(func=cmd_demo)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate policies on paired episodes and write a report (python evaluate.py; see -h)",
        add_help=False,
        prefix_chars="\0",  # no options of its own: every argument, -h included, goes on to evaluate.py
    )
    evaluate.add_argument("argv", nargs="*", help="the arguments of evaluate.py")
    evaluate.set_defaults(func=cmd_evaluate)

    from agents.learned.cli import add_train_arguments

    train = sub.add_parser("train", help="train a dispatch policy (MaskablePPO by default); see train.py")
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)

    export = sub.add_parser(
        "export", help="export a trained policy to ONNX + a JSON manifest, checked against torch"
    )
    export.add_argument("checkpoint", help="a training zip: runs/<run>/final.zip or checkpoints/step_<N>.zip")
    export.add_argument("--out", default="policy.onnx", help="the ONNX file to write (default: policy.onnx)")
    export.add_argument("--manifest", default=None, help="the manifest to write (default: <out>.json)")
    export.add_argument(
        "--tolerance",
        type=float,
        default=1e-5,
        help="absolute part of the accepted |onnxruntime - torch| (default: 1e-5)",
    )
    export.add_argument(
        "--rtol",
        type=float,
        default=1e-5,
        help="relative part: accepted |onnxruntime - torch| <= tolerance + rtol * |torch| (default: 1e-5)",
    )
    export.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    export.set_defaults(func=cmd_export)

    serve = sub.add_parser("serve", help="serve an exported policy over HTTP (POST /v1/dispatch; see /docs)")
    serve.add_argument("--model", required=True, help="the .onnx file written by lastmile export")
    serve.add_argument("--manifest", default=None, help="its manifest (default: <model>.json)")
    serve.add_argument("--scenario", default="default", help="the live system's scenario: name or YAML path")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' on /v1 (default: $LASTMILE_TOKEN; unset: no auth)",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413 (default: 1 MiB)"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes behind the socket; a decision uses one core (default: 1)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="close a connection whose request headers take longer than this (default: 10 s)",
    )
    serve.add_argument(
        "--reoptimize-every",
        type=float,
        default=None,
        metavar="MIN",
        help="the served policy re-plans the fleet this often (POST /v1/reoptimize; the shipped `learned` "
        "is its network plus PyVRP every 30 min): GET /v1/model tells clients (default: the network alone)",
    )
    serve.add_argument(
        "--reopt-iterations",
        type=int,
        default=None,
        metavar="N",
        help="PyVRP iterations per POST /v1/reoptimize (default: reopt's 50; deterministic)",
    )
    serve.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    serve.set_defaults(func=cmd_serve)

    bench = sub.add_parser(
        "bench",
        help="the benchmark suite (five sections, ~15 min; --sections speed: env speed alone; see -h)",
        add_help=False,
        prefix_chars="\0",
    )
    bench.add_argument("argv", nargs="*", help="the arguments of benchmarks/suite.py")
    bench.set_defaults(func=cmd_bench)

    from lastmile_env.replay_cli import add_replay_parser

    add_replay_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand behind the one error path (``lastmile_env.cli_errors``): exit code 2 and one line
    for a user's mistake, ``--debug`` for the traceback."""

    def run(args: list[str]) -> int:
        parsed = build_parser().parse_args(args)
        return int(parsed.func(parsed))

    return run_cli(run, argv, "lastmile")


if __name__ == "__main__":
    raise SystemExit(main())
