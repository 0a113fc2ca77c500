"""Decision steps per second of the dispatch env next to CartPole-v1: the ``speed`` section of the benchmark
suite (``benchmarks/suite.py``, same options; ``--sections all`` runs the whole suite). ``lastmile bench``
runs this script.

    python benchmarks/env_speed.py [--repeats 5] [--steps 2000] [--scenarios small,default,large]
                                   [--orgym auto|build|no] [--sections speed] [--out FILE]

OR-Gym's VehicleRouting-v0 is measured when its venv (``benchmarks/.orgym-venv``) has been built
(``--orgym build``, or a run of ``benchmarks/suite.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    path = Path(__file__).with_name("suite.py")
    spec = importlib.util.spec_from_file_location("lastmile_bench_suite", path)
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = suite  # its dataclasses look their module up
    spec.loader.exec_module(suite)
    return int(
        suite.main(
            argv,
            prog=prog,
            default_sections="speed",
            orgym_default="auto",
            command="python benchmarks/env_speed.py",
            out_default="benchmarks/results/env_speed.md",
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
