"""The ``lastmile`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from lastmile_env.config import ConfigError, load_scenario, parse_overrides


def _scenario_overrides(items: Sequence[str]) -> dict[str, object]:
    """CLI overrides address the scenario as ``env.<field>``: ``env.fleet.size=30``."""
    parsed = parse_overrides(items)
    out = {}
    for key, value in parsed.items():
        if not key.startswith("env."):
            raise ConfigError(
                f"override {key!r}: scenario overrides start with 'env.' (e.g. env.fleet.size=30)"
            )
        out[key.removeprefix("env.")] = value
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    """Run episodes of a scenario with a random masked policy and print on-time rate and cost."""
    import gymnasium as gym

    config = load_scenario(args.scenario, _scenario_overrides(args.overrides))
    env = gym.make("LastMile-Dispatch-v0", scenario=config)
    rng = np.random.default_rng(args.seed)
    print(f"scenario {config.name}: {config.description}")
    for episode in range(args.episodes):
        started = time.perf_counter()
        env.reset(seed=args.seed + episode)
        steps, done = 0, False
        while not done:
            valid = np.flatnonzero(env.unwrapped.action_masks())  # type: ignore[attr-defined]
            _, _, terminated, truncated, _ = env.step(int(rng.choice(valid)))
            steps += 1
            done = terminated or truncated
        elapsed = time.perf_counter() - started
        s = env.unwrapped.sim.summary()  # type: ignore[attr-defined]
        print(
            f"episode {episode} (seed {args.seed + episode}, random masked policy): {s['orders']} orders, "
            f"on-time rate {s['on_time_rate']:.1%}, cost {s['cost']:.1f} "
            f"(distance {s['cost_distance']:.1f}, driver time {s['cost_driver_time']:.1f}, "
            f"lateness {s['cost_lateness']:.1f}, rejection {s['cost_rejection']:.1f}), "
            f"{s['rejected']} rejected, {s['distance_km']:.0f} km; {steps / elapsed:.0f} decisions/s"
        )
    env.close()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the repository's ``evaluate.py`` on the arguments after ``evaluate``: one implementation behind
    ``python evaluate.py ...`` and ``lastmile evaluate ...``."""
    import importlib.util

    from lastmile_env.config import REPO_ROOT

    script = REPO_ROOT / "evaluate.py"
    spec = importlib.util.spec_from_file_location("lastmile_evaluate", script)
    if not script.is_file() or spec is None or spec.loader is None:
        print(
            f"lastmile evaluate: {script} not found (run from a checkout of the repository)", file=sys.stderr
        )
        return 2
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(args.argv, prog="lastmile evaluate"))


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
        manifest = export_onnx(args.checkpoint, args.out, args.manifest, tolerance=args.tolerance)
    except (ExportError, ValueError) as exc:
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
        f"{worst:.1e} on {checks['random']['observations']} random and {checks['recorded']['observations']} "
        "recorded observations"
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
        )
    except ManifestError as exc:
        print(f"lastmile serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _not_yet(issue: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"lastmile {args.command}: not available yet (tracked in {issue})", file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lastmile", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run episodes with a random masked policy; print on-time rate and cost"
    )
    demo.add_argument("--scenario", default="default", help="scenario name or YAML path")
    demo.add_argument("--episodes", type=int, default=1)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("overrides", nargs="*", help="scenario overrides, e.g. env.fleet.size=30")
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
        "--tolerance", type=float, default=1e-5, help="largest |onnxruntime - torch| accepted (default: 1e-5)"
    )
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
    serve.set_defaults(func=cmd_serve)

    for name, issue in (("bench", "the benchmark issue"),):
        stub = sub.add_parser(name, help=f"(not available yet: {issue})")
        stub.set_defaults(func=_not_yet(issue))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
