"""The EURO Meets NeurIPS 2022 dynamic VRPTW: the competition's sampler, must-dispatch rule and validator
(golden values on the shipped final-phase instances), days played on the simulator, and the benchmark CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import vrplib

from agents.base import run_episode
from agents.evaluation import EvaluationError
from agents.evaluation.euro2022 import RESULT_COLUMNS, benchmark, load_runs, published_costs
from agents.heuristics.waves import GreedyWave, LazyWave, RandomWave
from lastmile_env.config import REPO_ROOT
from lastmile_env.sim import Simulator, world_for
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.sources import euro2022 as E

INSTANCES = E.DATA_DIR / "instances"
N201 = INSTANCES / "ORTEC-VRPTW-ASYM-6a265c9a-d1-n201-k13.txt"
FINAL_RUNS = {  # final-phase dynamic runs of the shipped instances: (file, instance_seed)
    "6a265c9a": ("ORTEC-VRPTW-ASYM-6a265c9a-d1-n201-k13.txt", 630),
    "cc05bba4": ("ORTEC-VRPTW-ASYM-cc05bba4-d1-n200-k15.txt", 818),
    "852a6910": ("ORTEC-VRPTW-ASYM-852a6910-d1-n202-k20.txt", 86),
}


@pytest.fixture(scope="module")
def n201() -> E.Instance:
    return E.read_instance(N201)


def play(inst: E.Instance, path: Path, requests: E.Requests, policy: object) -> Simulator:
    world = world_for(E.scenario(inst, path, static=requests.static))
    return run_episode(Simulator(world, 0, generator=E.RequestStream(requests)), policy)  # type: ignore[arg-type]


def test_an_instance_reads_as_the_competition_gives_it(n201: E.Instance) -> None:
    assert n201.n_customers == 201 and n201.capacity == 125
    assert n201.duration_s.shape == (202, 202) and n201.duration_s[0, 1] == 1142
    assert n201.window_s[0].tolist() == [0, 41340]
    assert list(n201.epochs) == [2, 3, 4, 5, 6]


def test_the_sampler_draws_the_competitions_requests(n201: E.Instance) -> None:
    """Golden values: these requests are identical, request for request, to the competition's own
    environment (quickstart commit 77a1a24) for the final-phase seeds of the three shipped instances."""
    r = E.sample_requests(n201, 630)
    first = r.epoch == 2
    assert first.sum() == 100
    assert r.customer[first][:8].tolist() == [70, 114, 67, 2, 71, 22, 36, 151]
    assert r.window_s[first][:3].tolist() == [[15600, 23100], [19200, 26700], [17400, 33300]]
    assert r.demand[first][:8].tolist() == [7, 3, 5, 6, 3, 4, 3, 7]
    assert r.service_s[first][:8].tolist() == [660, 660, 480, 360, 360, 660, 240, 480]
    assert np.bincount(r.epoch)[2:].tolist() == [100, 100, 90, 66, 54]
    assert r.release_s[:1].tolist() == [2 * 3600 + 3600]
    counts = {
        k: len(E.sample_requests(E.read_instance(INSTANCES / f), s)) for k, (f, s) in FINAL_RUNS.items()
    }
    assert counts == {"6a265c9a": 410, "cc05bba4": 517, "852a6910": 533}


def test_the_simulator_uses_the_competitions_must_dispatch_rule(n201: E.Instance) -> None:
    requests = E.sample_requests(n201, 630)
    world = world_for(E.scenario(n201, N201))
    sim = Simulator(world, 0, generator=E.RequestStream(requests))
    budget, waves = SolverBudget(max_iterations=100), 0
    rng = np.random.default_rng(0)
    while sim.next_decision() is not None:
        epoch = round(sim.now) // 60
        pool = [o.id for o in sim.pool]
        assert (sim.must_dispatch() == E.must_dispatch(n201, requests, epoch, pool)).all()
        from lastmile_env.wave_routing import dispatch_wave

        dispatch_wave(sim, [i for i in pool if rng.uniform() < 0.3], budget)
        waves += 1
    assert waves == 5


def test_the_validator_accepts_the_best_known_solution_at_its_cost(n201: E.Instance) -> None:
    sol = vrplib.read_solution(str(N201.with_suffix(".sol")))
    day = E.validate_day(n201, E.static_requests(n201), {0: [[c - 1 for c in r] for r in sol["routes"]]})
    assert day.valid and day.cost == sol["cost"] == 126521


def test_the_validator_rejects_what_the_competition_rejects(n201: E.Instance) -> None:
    r = E.sample_requests(n201, 630)
    first = [int(i) for i in np.flatnonzero(r.epoch == 2)]
    # capacity: every first-epoch request on one route
    assert any("capacity" in p for p in E.check_route(n201, r, first, 3 * 3600))
    # a window: a request whose window closes before the route can reach it
    late = next(
        i for i in range(len(r)) if r.window_s[i, 1] < 5 * 3600 + 3600 + n201.duration_s[0, r.customer[i]]
    )
    assert any("after its window" in p for p in E.check_route(n201, r, [late], 5 * 3600 + 3600))
    # the depot's closing: leaving at the end of the day
    assert any("back at the depot" in p for p in E.check_route(n201, r, [first[0]], n201.day_end_s))
    # a day: a request dispatched before it arrived, and must-dispatch requests left behind
    future = int(np.flatnonzero(r.epoch == 3)[0])
    day = E.validate_day(n201, r, {2: [[future]]})
    assert not day.valid and day.first_bad_epoch == 2
    assert any("had not arrived" in p for p in day.problems)
    assert any("must-dispatch" in p for p in day.problems)
    assert day.cost >= E.INVALID_EPOCH_COST  # counted as the competition counts a failed episode


def test_a_dynamic_day_on_the_simulator_is_valid_and_priced_as_the_competition_prices_it(
    n201: E.Instance,
) -> None:
    requests = E.sample_requests(n201, 630)
    sim = play(n201, N201, requests, GreedyWave(SolverBudget(max_iterations=200)))
    day = E.validate_day(n201, requests, E.dispatched_routes(sim))
    assert day.valid, day.problems[:3]
    assert day.cost == sim.cost().total == sum(v.dist_km for v in sim.vehicles)  # driving seconds, exactly
    assert sim.n_on_time == len(requests)


def test_lazy_and_random_are_the_competitions_rules(n201: E.Instance) -> None:
    requests = E.sample_requests(n201, 630)
    budget = SolverBudget(max_iterations=100)
    lazy = play(n201, N201, requests, LazyWave(budget))
    sent = E.dispatched_routes(lazy)
    assert E.validate_day(n201, requests, sent).valid
    for epoch, routes in sent.items():  # lazy sends a request no earlier than its last feasible epoch
        for i in (i for route in routes for i in route):
            if epoch < n201.epochs[-1]:
                assert E.must_dispatch(n201, requests, epoch, [i])[0]
    a = E.dispatched_routes(play(n201, N201, requests, RandomWave(budget)))
    b = E.dispatched_routes(play(n201, N201, requests, RandomWave(budget)))
    assert {e: sorted(map(sorted, r)) for e, r in a.items()} == {
        e: sorted(map(sorted, r)) for e, r in b.items()
    }


def test_static_and_hindsight_solutions_are_valid(n201: E.Instance) -> None:
    cost, routes = E.solve_static(n201, SolverBudget(max_iterations=300))
    assert E.validate_day(n201, E.static_requests(n201), {0: routes}).cost == cost
    assert cost < 1.25 * 126521
    requests = E.sample_requests(n201, 630)
    hind, _ = E.solve_hindsight(n201, requests, SolverBudget(max_iterations=300))
    assert 0 < hind < 1.2 * 364208  # below or near the published greedy day


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("NAME : broken\nTYPE : VRPTW\nEDGE_WEIGHT_SECTION\n1 x\n", "not a VRPLIB instance"),
        (
            "NAME : c\nTYPE : CVRP\nDIMENSION : 2\nCAPACITY : 5\nEDGE_WEIGHT_TYPE : EXPLICIT\n"
            "EDGE_WEIGHT_FORMAT : FULL_MATRIX\nEDGE_WEIGHT_SECTION\n0 1\n1 0\nDEMAND_SECTION\n1 0\n2 1\n"
            "DEPOT_SECTION\n1\n-1\nEOF\n",
            "not a VRPTW instance",
        ),
    ],
)
def test_bad_instances_fail_with_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(E.Euro2022Error, match=problem) as err:
        E.read_instance(path)
    assert "\n" not in str(err.value) and "bad.txt" in str(err.value)
    with pytest.raises(E.Euro2022Error, match="not found"):
        E.read_instance(tmp_path / "missing.txt")


def write_configs(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_the_benchmark_writes_rows_as_it_goes_skips_missing_instances_and_resumes(tmp_path: Path) -> None:
    configs = write_configs(
        tmp_path / "configs.json",
        [
            {"instance": N201.name, "instance_seed": 630, "static": False, "epoch_tlim": 120},
            {"instance": "ORTEC-missing.txt", "instance_seed": 1, "static": False, "epoch_tlim": 120},
            {"instance": N201.name, "instance_seed": 0, "static": True, "epoch_tlim": 300},
        ],
    )
    runs, skipped = load_runs(configs, INSTANCES, static=False)
    assert [(r.instance, r.instance_seed) for r in runs] == [(N201.name, 630)] and skipped == [
        "ORTEC-missing.txt"
    ]
    out = tmp_path / "out"
    budget = SolverBudget(max_iterations=50)
    benchmark(["greedy", "lazy"], out, configs=configs, budget=budget, hindsight=False)
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == RESULT_COLUMNS
    assert [(r["policy"], r["status"]) for r in rows] == [("greedy", "ok"), ("lazy", "ok")]
    summary = (out / "summary.md").read_text()
    assert "ORTEC-missing.txt" in summary and "364,208" in summary  # published greedy of the same run
    benchmark(["greedy", "lazy", "random"], out, configs=configs, budget=budget, hindsight=False)
    with (out / "results.csv").open() as f:
        again = list(csv.DictReader(f))
    assert again[:2] == rows and [r["policy"] for r in again[2:]] == ["random"]  # nothing recomputed or lost
    benchmark(["greedy"], out, configs=configs, budget=budget, hindsight=False)  # all done: the report only
    assert (out / "results.csv").read_text().count("\n") == 4
    text = (out / "results.csv").read_text()  # a run that failed (say, a bug since fixed) is run again
    (out / "results.csv").write_text(text.replace(",ok\n", ",error: RuntimeError: boom\n", 1))
    benchmark(["greedy"], out, configs=configs, budget=budget, hindsight=False)
    with (out / "results.csv").open() as f:
        final = list(csv.DictReader(f))
    assert len(final) == 3 and all(r["status"] == "ok" for r in final)


def test_the_static_variant_runs_every_customer_in_one_wave(tmp_path: Path) -> None:
    configs = write_configs(
        tmp_path / "configs.json",
        [{"instance": N201.name, "instance_seed": 0, "static": True, "epoch_tlim": 300}],
    )
    out = benchmark(
        ["greedy"], tmp_path / "out", configs=configs, static=True, budget=SolverBudget(max_iterations=50)
    )
    with (out / "results.csv").open() as f:
        rows = {r["policy"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"greedy", "hindsight"} and all(r["status"] == "ok" for r in rows.values())
    assert 126521 <= int(rows["greedy"]["cost"]) < 1.5 * 126521  # the .sol is the best known


def test_the_benchmark_refuses_bad_input_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="not found"):
        benchmark(["greedy"], tmp_path / "o", configs=tmp_path / "none.json")
    with pytest.raises(EvaluationError, match="no dynamic run"):
        benchmark(["greedy"], tmp_path / "o", configs=write_configs(tmp_path / "c.json", []))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EvaluationError, match="not JSON"):
        benchmark(["greedy"], tmp_path / "o", configs=tmp_path / "bad.json")
    with pytest.raises(EvaluationError, match="unknown wave policy"):
        benchmark(["nearest"], tmp_path / "o")
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(EvaluationError, match="not a results file"):
        benchmark(["greedy"], other, budget=SolverBudget(max_iterations=10))
    assert (other / "results.csv").read_text() == "a,b\n1,2\n"  # nothing lost


def test_the_benchmark_cli_reports_a_malformed_instance_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "instances"
    folder.mkdir()
    (folder / "ORTEC-bad.txt").write_text("NAME : x\nGARBAGE\n")
    configs = write_configs(
        tmp_path / "c.json", [{"instance": "ORTEC-bad.txt", "instance_seed": 1, "static": False}]
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "evaluate.py"),
            "--benchmark",
            "euro2022",
            "--instances",
            str(folder),
            "--configs",
            str(configs),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "ORTEC-bad.txt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_published_costs_are_the_competitions() -> None:
    rows = published_costs()
    greedy = {
        r["instance_seed"]: int(r["cost"])
        for r in rows
        if r["team"] == "baseline_greedy" and r["variant"] == "dynamic"
    }
    assert greedy == {"630": 364208, "818": 437154, "86": 337584}


@pytest.mark.slow
@pytest.mark.parametrize("key", list(FINAL_RUNS))
def test_golden_baselines_within_3_percent_of_the_published_costs(key: str) -> None:
    """greedy, lazy and random at the final-phase seeds within 3% of the competition's published per-run
    costs (HGS, 120 s per epoch), with 5000 PyVRP iterations per epoch."""
    file, seed = FINAL_RUNS[key]
    path = INSTANCES / file
    inst, requests = E.read_instance(path), E.sample_requests(E.read_instance(path), seed)
    published = {
        r["team"]: int(r["cost"])
        for r in published_costs()
        if r["instance"] == file and r["variant"] == "dynamic"
    }
    budget = SolverBudget(max_iterations=5000)
    for policy, team in (
        (GreedyWave(budget), "baseline_greedy"),
        (LazyWave(budget), "baseline_lazy"),
        (RandomWave(budget), "baseline_random"),
    ):
        day = E.validate_day(inst, requests, E.dispatched_routes(play(inst, path, requests, policy)))
        assert day.valid
        assert day.cost <= 1.03 * published[team], (policy.name, day.cost, published[team])


@pytest.mark.slow
@pytest.mark.parametrize("file", [f for f, _ in FINAL_RUNS.values()])
def test_golden_static_within_3_percent_of_the_best_known(file: str) -> None:
    inst = E.read_instance(INSTANCES / file)
    best = vrplib.read_solution(str((INSTANCES / file).with_suffix(".sol")))["cost"]
    cost, _ = E.solve_static(inst)
    assert cost <= 1.03 * best
