"""Episode replays (docs/replay.md): the record round-trips to the episode's summary, the timeline puts each
vehicle on its legs, bad records and options are one clear line, and the animation is written."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.base import run_episode
from agents.heuristics import make_heuristic
from agents.routing import GreedyRepriceRoute
from lastmile_cli import main
from lastmile_env.config import load_scenario
from lastmile_env.replay import (
    ReplayError,
    Timeline,
    load_record,
    record_episode,
    save_record,
    summary_from_record,
)
from lastmile_env.replay_video import write_animation
from lastmile_env.sim import Simulator, world_for
from lastmile_env.sim.world import build_world

# The numbers the round trip must reproduce, and the ones it recomputes.
EXACT = ("on_time", "late", "rejected", "failed", "delivered", "cost", "cost_distance", "cost_driver_time")
EXACT += ("cost_lateness", "cost_rejection", "cost_failures", "distance_km")
SHORT = {"orders.last_arrival_min": 150, "fleet.shift_end_min": 300}


def _day(scenario: str, seed: int, overrides: dict | None = None, policy: str = "insertion") -> Simulator:
    world = build_world(load_scenario(scenario, {**SHORT, **(overrides or {})}))
    return run_episode(Simulator(world, seed), make_heuristic(policy), seed)


@pytest.fixture(scope="module")
def realistic_day() -> Simulator:
    """Travel noise, live ETAs, absent customers (lockers, redeliveries, failures), returns, vans + cargo
    bikes + drones: every kind of leg and event."""
    return _day("realistic", 3)


@pytest.fixture(scope="module")
def realistic_record(realistic_day: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_record(
        record_episode(realistic_day, "insertion", 3), tmp_path_factory.mktemp("rec") / "day.replay.json.gz"
    )


def test_round_trip_reproduces_the_summary_exactly(realistic_day: Simulator, realistic_record: Path) -> None:
    summary = realistic_day.summary()
    record = load_record(realistic_record)
    again = summary_from_record(record)
    assert {k: again[k] for k in EXACT} == {k: summary[k] for k in EXACT}  # bit for bit
    # the day has what the round trip must get right: failures, lockers, returns, late and rejected orders
    assert summary["failed"] > 0 and summary["failed_attempts"] > 0 and summary["returns"] > 0
    assert summary["late"] > 0 and summary["delivered_drone"] > 0
    assert json.loads(json.dumps(record["summary"]))["on_time"] == summary["on_time"]


@pytest.mark.parametrize(("scenario", "seed"), [("small", 0), ("default", 1), ("hetero_fleet", 2)])
def test_round_trip_on_other_scenarios(scenario: str, seed: int, tmp_path: Path) -> None:
    sim = _day(scenario, seed)
    record = load_record(save_record(record_episode(sim, "insertion", seed), tmp_path / "r.replay.json.gz"))
    summary = sim.summary()
    assert {k: summary_from_record(record)[k] for k in EXACT} == {k: summary[k] for k in EXACT}


def test_round_trip_in_routing_mode_with_waits(tmp_path: Path) -> None:
    """A routing-mode wait is charged in pieces by the simulator and in one piece by the round trip."""
    world = build_world(load_scenario("small", SHORT))
    sim = Simulator(world, 4, routing=True)
    run_episode(sim, make_heuristic("insertion"), 4, router=GreedyRepriceRoute())
    assert any(e.kind == "wait" for e in sim.events)
    record = load_record(save_record(record_episode(sim), tmp_path / "r.replay.json.gz"))
    again, summary = summary_from_record(record), sim.summary()
    for key in EXACT:
        assert again[key] == pytest.approx(summary[key], rel=1e-12, abs=1e-9), key


def test_the_record_breaks_if_a_leg_is_lost(realistic_day: Simulator, tmp_path: Path) -> None:
    """The round trip is a real check: a record missing one driven leg no longer matches."""
    record = record_episode(realistic_day)
    for column in record["legs"].values():
        del column[len(column) // 2]
    assert summary_from_record(record)["cost"] != realistic_day.summary()["cost"]


def test_recording_is_deterministic(realistic_record: Path, tmp_path: Path) -> None:
    sim = _day("realistic", 3)
    again = save_record(record_episode(sim, "insertion", 3), tmp_path / "again.replay.json.gz")
    assert again.read_bytes() == realistic_record.read_bytes()


def test_an_unfinished_day_is_refused() -> None:
    world = world_for(load_scenario("small"))
    sim = Simulator(world, 0)
    sim.advance()
    with pytest.raises(ReplayError, match="not finished"):
        record_episode(sim)


def test_bad_files_are_one_clear_error(tmp_path: Path, realistic_record: Path) -> None:
    with pytest.raises(ReplayError, match="not found"):
        load_record(tmp_path / "missing.replay.json.gz")
    (tmp_path / "text.gz").write_text("hello")
    with pytest.raises(ReplayError, match="not a replay record"):
        load_record(tmp_path / "text.gz")
    (tmp_path / "other.gz").write_bytes(gzip.compress(b'{"format": "something"}'))
    with pytest.raises(ReplayError, match="not a replay record"):
        load_record(tmp_path / "other.gz")
    record = json.loads(gzip.decompress(realistic_record.read_bytes()))
    del record["legs"]["free_min"]
    (tmp_path / "cut.gz").write_bytes(gzip.compress(json.dumps(record).encode()))
    with pytest.raises(ReplayError, match="'legs' lacks the column"):
        load_record(tmp_path / "cut.gz")
    record = json.loads(gzip.decompress(realistic_record.read_bytes()))
    record["version"] = 99
    (tmp_path / "new.gz").write_bytes(gzip.compress(json.dumps(record).encode()))
    with pytest.raises(ReplayError, match="version 99"):
        load_record(tmp_path / "new.gz")


def test_timeline_puts_vehicles_on_their_legs(realistic_day: Simulator, realistic_record: Path) -> None:
    """At a leg's end each vehicle is at the leg's destination; midway it is on the leg's road path; the
    orders' states at the end of the day are their final statuses; the running cost ends at the cost."""
    timeline = Timeline(load_record(realistic_record))
    world = realistic_day.world
    for vid, src, dst, depart, arrive, _ in realistic_day.legs[::7]:
        assert np.allclose(timeline.vehicle_xy(arrive)[vid], world.xy_km[dst])
        if arrive - depart > 1.0:
            mode = realistic_day.vehicles[vid].mode
            path = (
                np.array([world.graph.nodes[n]["x"] for n in world.path_nodes(src, dst, mode)]),
                np.array([world.graph.nodes[n]["y"] for n in world.path_nodes(src, dst, mode)]),
            )
            xy = timeline.vehicle_xy((depart + arrive) / 2)[vid]
            assert _distance_to_polyline(xy, np.column_stack(path)) < 1e-9
    end = timeline.order_states(timeline.end_min)
    final = [o.status.name.lower() for o in realistic_day.arrived_orders]
    for state, status, order in zip(end, final, realistic_day.arrived_orders, strict=True):
        expected = ("on_time" if order.on_time else "late") if status == "delivered" else status
        assert state == expected
    assert timeline.totals(timeline.end_min)["cost"] == pytest.approx(realistic_day.summary()["cost"])
    assert timeline.order_states(-1.0) == [None] * timeline.n_orders


def _distance_to_polyline(p: np.ndarray, line: np.ndarray) -> float:
    best = math.inf
    for a, b in itertools.pairwise(line):
        ab = b - a
        share = 0.0 if not ab.any() else float(np.clip(np.dot(p - a, ab) / np.dot(ab, ab), 0.0, 1.0))
        best = min(best, float(np.linalg.norm(p - (a + share * ab))))
    return best


def test_animation_gif_without_ffmpeg(realistic_record: Path, tmp_path: Path) -> None:
    record = load_record(realistic_record)
    out = write_animation(record, tmp_path / "day.gif", step_min=30.0, size_px=(240, 240))
    with Image.open(out) as gif:
        n_frames = gif.n_frames
        assert gif.size == (240, 240)
        gif.seek(n_frames - 1)
        last = np.asarray(gif.convert("RGB"))
    assert n_frames == len(range(0, math.floor(Timeline(record).end_min / 30.0) + 1)) + 1
    assert len(np.unique(last.reshape(-1, 3), axis=0)) > 8  # a drawn map, not a blank frame


def test_cli_replay(realistic_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(realistic_record), "--out", str(tmp_path / "d.gif"), "--step-min", "60"]) == 0
    assert (tmp_path / "d.gif").stat().st_size > 0
    assert main(["replay", str(realistic_record), "--out", str(tmp_path / "f.png"), "--size", "200"]) == 0
    with Image.open(tmp_path / "f.png") as png:
        assert png.size == (200, 200)
    capsys.readouterr()
    for argv, message in [
        ([str(tmp_path / "none.gz"), "--out", "x.gif"], "replay record not found"),
        ([str(realistic_record), "--out", str(tmp_path / "d.avi")], "use .gif, .mp4, .png or .html"),
        ([str(realistic_record), "--out", str(tmp_path / "f.png"), "--at", "9999"], "outside the day"),
        ([str(realistic_record), str(realistic_record), "--out", "x.gif"], "an animation shows one record"),
        ([str(realistic_record), "--out", str(tmp_path / "d.gif"), "--step-min", "0"], "positive number"),
    ]:
        assert main(["replay", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_mp4_needs_ffmpeg(realistic_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from matplotlib import animation

    code = main(["replay", str(realistic_record), "--out", str(tmp_path / "d.mp4"), "--step-min", "60"])
    if animation.writers.is_available("ffmpeg"):
        assert code == 0 and (tmp_path / "d.mp4").stat().st_size > 0
    else:
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lastmile replay: ffmpeg not found") and len(err.splitlines()) == 1


def test_evaluate_records_the_first_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate.py --record N: each policy's first N days under OUT/replays/, linked from summary.md, and
    each record round-trips to its row of episodes.csv."""
    import csv

    out = tmp_path / "eval"
    argv = ["evaluate", "--scenario", "small", "--policies", "nearest,insertion,greedy", "--episodes", "2"]
    argv += [
        "--record",
        "1",
        "--workers",
        "1",
        "--hindsight-time-limit",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    summary_md = (out / "summary.md").read_text()
    with (out / "episodes.csv").open() as f:
        rows = {(r["policy"], int(r["episode"])): r for r in csv.DictReader(f)}
    for policy in ("nearest", "insertion", "greedy"):  # greedy: a wave policy, the day in wave mode
        name = f"replays/{policy}__day0.replay.json.gz"
        assert f"]({name})" in summary_md
        record = load_record(out / name)
        assert record["policy"] == policy and record["seed"] == 0
        again = summary_from_record(record)
        row = rows[policy, 0]
        assert (again["delivered"], again["rejected"]) == (int(row["delivered"]), int(row["rejected"]))
        assert again["cost"] == pytest.approx(float(row["cost"]), rel=1e-12)
        assert again["distance_km"] == pytest.approx(float(row["distance_km"]), rel=1e-12)
    assert sorted(p.name for p in (out / "replays").iterdir()) == [
        "greedy__day0.replay.json.gz",
        "insertion__day0.replay.json.gz",
        "nearest__day0.replay.json.gz",
    ]
    capsys.readouterr()
    assert main([*argv[:-2], "--record", "3", "--out", str(out)]) == 2
    assert "record must be between 0 and the 2 episodes, got 3" in capsys.readouterr().err
    assert main(["evaluate", "--benchmark", "euro2022", "--record", "1"]) == 2
    assert "--record records the days of --scenario or --suite" in capsys.readouterr().err
