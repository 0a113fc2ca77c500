"""Order logs: exact replay, row errors with line and column, seeded bootstrap, a replayed day end to end."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from agents.base import run_episode
from agents.heuristics.rules import InsertionPolicy
from lastmile_env.config import load_scenario
from lastmile_env.sim import Order, OrderStatus, Simulator, World, world_for
from lastmile_env.sources.order_log import (
    OrderLog,
    OrderLogError,
    OrderLogGenerator,
    RowError,
    write_order_log,
)

LOGS = Path(__file__).resolve().parent.parent / "lastmile_env" / "data" / "order_logs"
HEADER = "order_id,created_at,node,size,deadline,window_start,window_end\n"


@pytest.fixture(scope="module")
def small() -> World:
    return world_for(load_scenario("small"))


def _fields(o: Order) -> tuple:
    return dataclasses.astuple(o)


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


def _errors(path: Path, world: World) -> set[tuple[int, str]]:
    with pytest.raises(OrderLogError) as info:
        OrderLog.from_csv(path, world)
    return {(e.line, e.column) for e in info.value.errors}


def test_valid_log_replays_exactly(small: World, tmp_path: Path) -> None:
    day = Simulator(small, 7).orders
    path = write_order_log(tmp_path / "day.csv", day, small)
    sim = Simulator(small, 123, generator=OrderLogGenerator(OrderLog.from_csv(path, small)))
    assert [_fields(o) for o in sim.orders] == [_fields(o) for o in day]


def test_timestamps_and_shift_start(small: World, tmp_path: Path) -> None:
    day = Simulator(small, 7).orders
    start = datetime(2024, 5, 6, 8, 0)
    path = write_order_log(tmp_path / "day.csv", day, small, shift_start=start)
    replayed = OrderLog.from_csv(path, small).replay()  # default: 08:00 (shift_start_hour) of the row's day
    assert [o.loc for o in replayed] == [o.loc for o in day]
    assert np.allclose([o.due_min for o in replayed], [o.due_min for o in day])
    later = OrderLog.from_csv(path, small, shift_start=datetime(2024, 5, 6, 7, 0)).replay()
    assert np.allclose([o.arrival_min for o in later], [o.arrival_min + 60 for o in day])


def test_defaults_and_aliases(small: World, tmp_path: Path) -> None:
    path = _log(tmp_path, "ID,Created_At,Node_Id,Size\na,5,11,2\nb,1.5,22,1\n")
    orders = OrderLog.from_csv(path, small).replay()
    assert [o.arrival_min for o in orders] == [1.5, 5.0]  # sorted by arrival
    cfg = small.config.orders
    assert orders[0].due_min == 1.5 + cfg.deadline_min
    assert orders[0].ready_min == 1.5 + (cfg.prep_min.low + cfg.prep_min.high) / 2
    assert all(o.center == small.nearest_depot[o.loc] for o in orders)


def test_bad_rows_are_reported_with_line_and_column(small: World, tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        HEADER
        + "a,10,11,1,100,,\n"  # line 2: fine
        + "b,ten o'clock,11,1,100,,\n"  # line 3: unparsable time
        + "c,10,11,-2,100,,\n"  # line 4: negative size
        + "d,10,999,1,100,,\n"  # line 5: unknown node
        + "e,10,11,1,,90,60\n"  # line 6: window end before start
        + "a,12,11,1,100,,\n"  # line 7: duplicate id
        + "f,10,11,1,5,,\n"  # line 8: deadline before creation
        + "g,10,11,1\n",  # line 9: too few fields
    )
    found = _errors(path, small)
    assert found == {
        (3, "created_at"),
        (4, "size"),
        (5, "node"),
        (6, "window_end"),
        (7, "order_id"),
        (8, "deadline"),
        (9, "*"),
    }
    with pytest.raises(OrderLogError, match=r"line 5, column 'node': node '999' is not on the map"):
        OrderLog.from_csv(path, small)


def test_missing_and_unknown_columns(small: World, tmp_path: Path) -> None:
    assert _errors(_log(tmp_path, "order_id,created_at,node\na,1,11\n"), small) == {(1, "size")}
    assert _errors(_log(tmp_path, "order_id,created_at,size\na,1,1\n"), small) == {(1, "node")}
    assert _errors(_log(tmp_path, "order_id,created_at,node,size,deadine\na,1,11,1,5\n"), small) == {
        (1, "deadine")
    }


def test_error_message_is_capped_but_all_errors_kept(small: World, tmp_path: Path) -> None:
    path = _log(tmp_path, HEADER + "".join(f"o{i},x,11,1,,,\n" for i in range(30)))
    with pytest.raises(OrderLogError, match=r"\.\.\. and 25 more") as info:
        OrderLog.from_csv(path, small, max_errors=5)
    assert info.value.errors[0] == RowError(2, "created_at", info.value.errors[0].message)
    assert len(info.value.errors) == 30


def test_synthetic_map_needs_node_ids(small: World, tmp_path: Path) -> None:
    path = _log(tmp_path, "order_id,created_at,latitude,longitude,size\na,1,21.87,-102.27,1\n")
    with pytest.raises(OrderLogError, match="synthetic"):
        OrderLog.from_csv(path, small)


def test_depot_is_not_an_address_and_center_must_be_a_depot(small: World, tmp_path: Path) -> None:
    depot = small.matrix.nodes[0]
    path = _log(tmp_path, f"order_id,created_at,node,size,center\na,1,{depot},1,\nb,1,11,1,11\n")
    assert _errors(path, small) == {(2, "node"), (3, "center")}


def test_bootstrap_is_seeded_and_scales_volume(small: World) -> None:
    log = OrderLog.from_csv(LOGS / "small_day.csv", small)
    gen = OrderLogGenerator(log, resample="bootstrap", volume=2.0)
    a, b = gen(small, np.random.default_rng(1)), gen(small, np.random.default_rng(1))
    c = gen(small, np.random.default_rng(2))
    assert [_fields(o) for o in a] == [_fields(o) for o in b]
    assert [_fields(o) for o in a] != [_fields(o) for o in c]
    assert len(a) == 2 * len(log)
    assert [o.id for o in a] == list(range(len(a)))
    assert all(x.arrival_min <= y.arrival_min for x, y in itertools.pairwise(a))
    logged = {_fields(o.to_order(0))[1:] for o in log.orders}
    assert all(_fields(o)[1:] in logged for o in a)
    assert len(OrderLogGenerator(log, "bootstrap", volume=0.5)(small, np.random.default_rng(0))) == 15
    with pytest.raises(ValueError, match="bootstrap"):
        OrderLogGenerator(log, volume=2.0)


@pytest.mark.parametrize("resample", ["none", "bootstrap"])
def test_replayed_day_runs_with_invariants(small: World, resample: str) -> None:
    gen = OrderLogGenerator(OrderLog.from_csv(LOGS / "small_day.csv", small), resample)  # type: ignore[arg-type]
    sim = run_episode(Simulator(small, 0, generator=gen, debug=True), InsertionPolicy())
    assert sim.done
    assert all(o.status in (OrderStatus.DELIVERED, OrderStatus.REJECTED) for o in sim.orders)
    assert sum(o.status == OrderStatus.DELIVERED for o in sim.orders) > 0


def test_aguascalientes_log_snaps_coordinates() -> None:
    world = world_for(load_scenario("aguascalientes"))
    log = OrderLog.from_csv(LOGS / "aguascalientes_morning.csv", world)
    assert len(log) == 30
    assert max(o.snap_km for o in log.orders) < 0.01
    day = Simulator(world, 0).orders[:30]
    assert [o.loc for o in log.replay()] == [o.loc for o in day]
