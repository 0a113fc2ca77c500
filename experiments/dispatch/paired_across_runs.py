"""Paired comparison of policies evaluated in two evaluate.py runs on the same days (the same scenarios,
seeds and solver budgets), e.g. a new model against the standard suite's `reopt` and `learned` rows, so
that the costly re-optimizing policies are not played again.

The runs must really be the same days: every policy evaluated in both runs (here `insertion`, which is
deterministic) must have identical per-episode costs, or the script stops. Prints one Markdown table:
per scenario and policy, on-time rate and cost per delivered (mean ± 95% CI half-width), and the paired
per-day difference in cost per delivered against each reference [95% CI] with the days cheaper.

    python experiments/dispatch/paired_across_runs.py experiments/dispatch/eval_robust_heldout \\
        experiments/baselines/standard_heldout --policy experiments/dispatch/model_robust_16k.zip+reopt \\
        --references reopt,learned
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from agents.evaluation.stats import mean_ci

Rows = dict[tuple[str, str], dict[int, dict[str, float]]]  # (scenario, policy) -> seed -> metrics


def read_rows(folder: Path) -> Rows:
    """Every ``episodes.csv`` under ``folder`` (a suite's subfolders or one run)."""
    rows: Rows = defaultdict(dict)
    files = sorted(folder.rglob("episodes.csv"))
    if not files:
        sys.exit(f"error: no episodes.csv under {folder}")
    for path in files:
        with path.open() as f:
            for r in csv.DictReader(f):
                rows[(r["scenario"], r["policy"])][int(r["seed"])] = {
                    k: float(r[k]) for k in ("cost", "cost_per_delivered", "on_time_rate")
                }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path, help="the evaluate.py output folder of the new policy")
    parser.add_argument("old", type=Path, help="an evaluate.py output folder with the references")
    parser.add_argument("--policy", required=True, help="the new policy's name in the new run")
    parser.add_argument("--references", required=True, help="comma-separated policies of the old run")
    args = parser.parse_args()
    new, old = read_rows(args.new), read_rows(args.old)
    shared = sorted(set(new) & set(old))
    for key in shared:  # the same days: the policies in both runs agree to the last digit
        if new[key] != old[key]:
            sys.exit(f"error: {key[1]} on {key[0]} differs between the runs: not the same days or budgets")
    references = args.references.split(",")
    print(f"Same days checked on: {', '.join(sorted({f'{s}/{p}' for s, p in shared}))}\n")
    print(
        "| scenario | policy | on-time (%) | cost/delivered | "
        + " | ".join(f"Δ cost/delivered vs `{r}` [95% CI], days cheaper" for r in references)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(references))
    for scenario in sorted({s for s, p in new if p == args.policy}):
        mine = new[(scenario, args.policy)]
        for name, rows in [(r, old.get((scenario, r))) for r in references] + [(args.policy, mine)]:
            if rows is None:
                sys.exit(f"error: {name} is not in {args.old} for {scenario}")
            seeds = sorted(rows)
            on_time = mean_ci(100 * rows[s]["on_time_rate"] for s in seeds)
            cpd = mean_ci(rows[s]["cost_per_delivered"] for s in seeds)
            cells = []
            for ref in references:
                base = old[(scenario, ref)]
                paired = sorted(set(seeds) & set(base) & set(mine))
                if name != args.policy:
                    cells.append("")
                    continue
                diff = [mine[s]["cost_per_delivered"] - base[s]["cost_per_delivered"] for s in paired]
                ci = mean_ci(diff)
                ref_mean = sum(base[s]["cost_per_delivered"] for s in paired) / len(paired)
                cheaper = sum(d < 0 for d in diff)
                cells.append(
                    f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}] ({ci.mean / ref_mean:+.1%}), "
                    f"{cheaper}/{len(paired)}"
                )
            print(
                f"| {scenario} | `{name}` | {on_time.mean:.1f} ± {on_time.half_width:.1f} | "
                f"{cpd.mean:.2f} ± {cpd.half_width:.2f} | " + " | ".join(cells) + " |"
            )


if __name__ == "__main__":
    main()
