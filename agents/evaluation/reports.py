"""Results and their reports: EvaluationResult (one scenario) and SuiteResult, as Markdown tables, JSON
summaries and the episodes CSV."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation.common import CONFIDENCE, EPISODE_COLUMNS
from agents.evaluation.plots import _plot_metrics, _plot_route_map
from agents.evaluation.stats import summarize
from agents.evaluation.suites import Suite
from lastmile_env.config import ScenarioConfig
from lastmile_env.jsonable import jsonable
from lastmile_env.replay import SUFFIX as REPLAY_SUFFIX
from lastmile_env.replay import save_record
from lastmile_env.sim.types import MODES


def _file_safe(name: str) -> str:
    """A policy spec (a name, or a model's path) as a file name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "policy"


def _fmt(stat: Mapping[str, Any], spec: str = ".1f", scale: float = 1.0, unit: str = "") -> str:
    """``mean ± half-width`` of a summary entry (``–`` when there is no value)."""
    if stat["n"] == 0 or not math.isfinite(stat["mean"]):
        return "–"
    text = f"{stat['mean'] * scale:{spec}}{unit}"
    if math.isfinite(stat["half_width"]):
        text += f" ± {stat['half_width'] * scale:{spec}}"
    return text


def _fmt_delta(vs: Mapping[str, Any] | None, metric: str, spec: str = "+.1f", scale: float = 1.0) -> str:
    """``mean [low, high]`` of a paired difference (and the relative cost change for ``cost``)."""
    if vs is None:
        return "(reference)"
    stat = vs[metric]
    if stat["n"] == 0:
        return "–"
    text = f"{stat['mean'] * scale:{spec}}"
    if math.isfinite(stat["half_width"]):
        text += f" [{stat['ci_low'] * scale:{spec}}, {stat['ci_high'] * scale:{spec}}]"
    if metric == "cost" and vs["cost_rel_pct"]["n"]:
        text += f" ({vs['cost_rel_pct']['mean']:+.1f}%)"
    return text


@dataclass
class EvaluationResult:
    """The outcome of evaluating policies on one scenario: one row per (policy, episode) and the summary."""

    config: ScenarioConfig
    policies: list[str]
    episodes: int
    seed: int
    reference: str | None
    hindsight_budget: str | None  # the hindsight solver's budget, e.g. "250 iterations" (None: not run)
    hindsight_note: str | None  # why the hindsight gap is missing, or which days failed (None: all fine)
    rows: list[dict[str, Any]]
    solver_budgets: dict[str, str] = field(default_factory=dict)  # policy -> its solvers' budgets
    route_map: np.ndarray | None = None
    route_map_policy: str | None = None
    wall_s: float = math.nan  # of the whole run (all scenarios of a suite)
    # evaluate --record N: the replay record (lastmile_env.replay) of each policy's first N days
    replays: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.rows, self.policies, self.reference)

    @property
    def scenario(self) -> str:
        return self.config.name

    @property
    def hindsight_computed(self) -> bool:
        """Whether the hindsight bound is known for at least one day."""
        return any(math.isfinite(r["hindsight_gap"]) for r in self.rows)

    def best_policy(self) -> str:
        """The policy with the lowest mean cost (the first one on ties)."""
        costs = [self.summary[p]["metrics"]["cost"]["mean"] for p in self.policies]
        finite = [(c, i) for i, c in enumerate(costs) if math.isfinite(c)]
        return self.policies[min(finite)[1]] if finite else self.policies[0]

    def to_json(self) -> dict[str, Any]:
        """Everything but the rows: the run's settings, the hindsight status and the summary."""
        return jsonable(
            {
                "scenario": self.scenario,
                "description": self.config.description,
                "policies": self.policies,
                "episodes": self.episodes,
                "seeds": [self.seed + k for k in range(self.episodes)],
                "reference": self.reference,
                "confidence": CONFIDENCE,
                "hindsight": {
                    "computed": self.hindsight_computed,
                    "budget": self.hindsight_budget,
                    "note": self.hindsight_note,
                },
                "solver_budgets": self.solver_budgets,
                "best_policy": self.best_policy(),
                "route_map_policy": self.route_map_policy,
                "run_wall_s": self.wall_s,
                "summary": self.summary,
                "config": self.config.model_dump(mode="json"),
            }
        )

    def markdown(self, heading: str = "##") -> str:
        """A readable report: the settings, then one table row per policy."""
        k, ref = self.episodes, self.reference
        notes = [
            f"{k} episode{'s' * (k != 1)} per policy (seeds {self.seed}–{self.seed + k - 1}), paired: every "
            "policy plays the same days. `±` is the half-width of the 95% Student-t confidence interval."
        ]
        if ref is not None:
            notes.append(
                f"Δcost: the paired per-episode cost difference to `{ref}` [95% CI] (mean relative change)."
            )
        if self.hindsight_computed:
            notes.append(
                "Gap to hindsight: (cost − hindsight) / hindsight, where hindsight is the cost of an "
                "offline plan of the day with every order known in advance "
                f"(PyVRP budget per day: {self.hindsight_budget})."
                + (
                    " It plans with expected travel times and every customer at home, so the gap here also "
                    "holds the cost of the travel surprises and failed attempts that no policy can foresee."
                    if self.config.travel.noise.kind != "none" or self.config.attempts.enabled
                    else ""
                )
                + (f" Note: {self.hindsight_note}." if self.hindsight_note else "")
            )
        else:
            notes.append(f"Gap to hindsight: not computed ({self.hindsight_note}).")
        if self.solver_budgets:
            budgets = "; ".join(f"`{p}`: {b}" for p, b in self.solver_budgets.items())
            notes.append(f"Solver budgets (PyVRP, per solve): {budgets}.")
        live_eta = self.config.travel.live_eta
        if live_eta:
            notes.append(
                "ETA error: mean |actual − ETA| in minutes, for the ETA promised at dispatch and for the "
                "live ETA in force 30 min before the delivery (orders dispatched later than that left out)."
            )
        by_option = self.config.orders.express_share > 0
        if by_option:
            notes.append("On-time by option: the on-time rate among same-day / window / express orders.")
        prices = self.config.orders.prices
        priced = prices.same_day > 0 or prices.window > 0 or prices.express > 0
        if priced:
            notes.append(
                f"Profit: revenue (per delivered order: same-day {prices.same_day:g}, window "
                f"{prices.window:g}, express {prices.express:g}) minus cost."
            )
        absences = self.config.attempts.enabled
        if absences:
            notes.append(
                "Attempts: failed attempts (customer absent) / orders left at a pickup point / orders failed "
                "(brought back), per day."
            )
        returns = self.config.orders.returns_share > 0
        if returns:
            notes.append("Returns on time: share of returns collected within their window.")
        modes = any(t.mode != "van" for t in self.config.fleet.types)
        if modes:
            notes.append("By mode: deliveries / km per day of the vans, cargo bikes and drones.")
        lines = [f"{heading} Evaluation: {self.scenario}", ""]
        if self.config.description:
            lines += [self.config.description, ""]
        lines += [
            " ".join(notes),
            "",
            "| policy | on-time rate (%) | cost | cost/delivered | km | rejected | gap to hindsight (%) "
            f"| Δcost vs {ref or '–'} |"
            + (" ETA error promised / live (min) |" if live_eta else "")
            + (" on-time by option (%) |" if by_option else "")
            + (" profit |" if priced else "")
            + (" attempts failed / pickup point / failed |" if absences else "")
            + (" returns on time (%) |" if returns else "")
            + (" by mode: van / bike / drone deliveries; km |" if modes else "")
            + " s/episode |",
            "|---|---|---|---|---|---|---|---|"
            + "---|" * (live_eta + by_option + priced + absences + returns + modes)
            + "---|",
        ]
        for policy in self.policies:
            m = self.summary[policy]["metrics"]
            vs = self.summary[policy]["vs_reference"]
            cells = [
                f"`{policy}`",
                _fmt(m["on_time_rate"], scale=100.0),
                _fmt(m["cost"]),
                _fmt(m["cost_per_delivered"], ".2f"),
                _fmt(m["distance_km"], ".0f"),
                _fmt(m["rejected"]),
                _fmt(m["hindsight_gap"], scale=100.0) if self.hindsight_computed else "n/c",
                _fmt_delta(vs, "cost") if ref is not None else "–",
                *(
                    [f"{_fmt(m['eta_abs_error_min']).split(' ±')[0]} / {_fmt(m['eta_live_abs_error_min'])}"]
                    if live_eta
                    else []
                ),
                *(
                    [
                        " / ".join(
                            _fmt(m[f"on_time_rate_{o}"], ".0f", scale=100.0).split(" ±")[0]
                            for o in ("same_day", "window", "express")
                        )
                    ]
                    if by_option
                    else []
                ),
                *([_fmt(m["profit"], ".0f")] if priced else []),
                *(
                    [
                        " / ".join(
                            _fmt(m[k]).split(" ±")[0]
                            for k in ("failed_attempts", "delivered_pickup_point", "failed")
                        )
                    ]
                    if absences
                    else []
                ),
                *([_fmt(m["on_time_rate_return"], scale=100.0)] if returns else []),
                *(
                    [
                        "; ".join(
                            " / ".join(_fmt(m[f"{what}_{mode}"], ".0f").split(" ±")[0] for mode in MODES)
                            for what in ("delivered", "km")
                        )
                    ]
                    if modes
                    else []
                ),
                _fmt(m["wall_s"], ".2f").split(" ±")[0],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n" + self._replays_markdown(heading)

    def replay_files(self) -> dict[tuple[str, int], str]:
        """Where ``write`` puts each replay record, relative to its folder."""
        return {
            (policy, k): f"replays/{_file_safe(policy)}__day{k}{REPLAY_SUFFIX}"
            for policy, k in sorted(self.replays)
        }

    def _replays_markdown(self, heading: str) -> str:
        """The section that links the recorded days and says how to watch them."""
        if not self.replays:
            return ""
        files = self.replay_files()
        days = sorted({k for _, k in self.replays})
        lines = [
            "",
            f"{heading} Replays",
            "",
            "Recorded days (docs/replay.md). Watch one: `lastmile replay RECORD --out day.gif` (or `.mp4`); "
            "compare two policies on the same day: `lastmile replay RECORD1 RECORD2 --out day.html`.",
            "",
            "| day (seed) | " + " | ".join(f"`{p}`" for p in self.policies) + " |",
            "|---|" + "---|" * len(self.policies),
        ]
        for k in days:
            cells = [
                f"[{Path(files[p, k]).name}]({files[p, k]})" if (p, k) in files else "–"
                for p in self.policies
            ]
            lines.append(f"| {k} ({self.seed + k}) | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write episodes.csv, summary.json, summary.md, metrics.png and route_map.png; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in ("episodes.csv", "summary.json", "summary.md", "metrics.png")}
        with paths["episodes.csv"].open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        paths["summary.json"].write_text(json.dumps(self.to_json(), indent=2) + "\n")
        paths["summary.md"].write_text(self.markdown())
        for (policy, k), name in self.replay_files().items():
            paths[name] = save_record(self.replays[policy, k], out / name)
        _plot_metrics(self, paths["metrics.png"])
        if self.route_map is not None:
            paths["route_map.png"] = out / "route_map.png"
            _plot_route_map(self, paths["route_map.png"])
        return paths


@dataclass
class SuiteResult:
    """The outcome of a suite: one EvaluationResult per scenario."""

    suite: Suite
    results: list[EvaluationResult]
    wall_s: float = math.nan

    def markdown(self) -> str:
        """One table over scenario × policy: on-time rate, cost per delivery, Δcost vs the reference."""
        refs = {r.reference for r in self.results}
        ref = refs.pop() if len(refs) == 1 else None
        lines = [
            f"# Suite: {self.suite.name}",
            "",
            *([self.suite.description, ""] if self.suite.description else []),
            "Mean ± 95% CI half-width over paired episodes; Δcost: per-episode difference to "
            f"`{ref}` [95% CI] (mean relative change). Per-scenario reports are in the subfolders.",
            "",
            f"| scenario | policy | on-time rate (%) | cost/delivered | Δcost vs {ref or 'reference'} |",
            "|---|---|---|---|---|",
        ]
        for result in self.results:
            for policy in result.policies:
                entry = result.summary[policy]
                m = entry["metrics"]
                delta = _fmt_delta(entry["vs_reference"], "cost") if result.reference is not None else "–"
                lines.append(
                    f"| {result.scenario} | `{policy}` | {_fmt(m['on_time_rate'], scale=100.0)} | "
                    f"{_fmt(m['cost_per_delivered'], '.2f')} | {delta} |"
                )
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Each scenario's outputs in ``out_dir/<scenario>/``, plus ``suite.md`` and ``suite.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for result in self.results:
            result.write(out / result.scenario)
        paths = {"suite.md": out / "suite.md", "suite.json": out / "suite.json"}
        paths["suite.md"].write_text(self.markdown())
        combined = {
            "suite": self.suite.name,
            "description": self.suite.description,
            "wall_s": self.wall_s,
            "scenarios": {r.scenario: r.to_json() for r in self.results},
        }
        paths["suite.json"].write_text(json.dumps(jsonable(combined), indent=2) + "\n")
        return paths
