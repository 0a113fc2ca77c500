"""The interactive replay page in a real browser: Debian's headless Chromium opens the self-contained file
with the network cut off, the test drags nothing but clicks the slider's rail like a user, and checks that
the vehicles' markers are where the record says at the chosen minute (in plotly's state and in the
screenshot's pixels), that clicking a vehicle and an order shows their plan and times, and that the page
logged no error."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agents.base import run_episode
from agents.heuristics import make_heuristic
from lastmile_env.config import load_scenario
from lastmile_env.replay import ReplayError, Timeline, load_record, record_episode, save_record
from lastmile_env.replay_page import INFO_ID, PAGE_ID, build_figure, write_page
from lastmile_env.sim import Simulator
from lastmile_env.sim.world import build_world
from tests.browser import Browser, chromium_path

SHORT = {"orders.last_arrival_min": 150, "fleet.shift_end_min": 300}
WIDTH, HEIGHT = 1400, 800
SLIDER_SHARE = 0.4  # where on the slider's rail the test clicks

_READY = """new Promise((resolve, reject) => {
  const gd = document.getElementById('PAGE_ID'), started = Date.now();
  (function wait() {
    if (gd && gd._fullLayout && gd._transitionData && gd._transitionData._frames.length) resolve(true);
    else if (Date.now() - started > 30000) reject(new Error('the plot did not load'));
    else setTimeout(wait, 50);
  })();
})""".replace("PAGE_ID", PAGE_ID)

# The slider's position and the markers as plotly holds them (its decoded arrays), with their page pixels.
_STATE = """(() => {
  const gd = document.getElementById('PAGE_ID'), fl = gd._fullLayout, box = gd.getBoundingClientRect();
  const active = fl.sliders[0].active, panels = [];
  for (let p = 0; p < 2; p++) {
    const xa = fl['xaxis' + (p ? p + 1 : '')], ya = fl['yaxis' + (p ? p + 1 : '')];
    const cars = gd._fullData[4 * p + 3], orders = gd._fullData[4 * p + 2];
    const px = v => box.left + xa._offset + xa.l2p(v), py = v => box.top + ya._offset + ya.l2p(v);
    panels.push({x: Array.from(cars.x), y: Array.from(cars.y), colors: Array.from(cars.marker.color),
      px: Array.from(cars.x).map(px), py: Array.from(cars.y).map(py),
      orders_px: Array.from(orders.x).map(px), orders_py: Array.from(orders.y).map(py),
      order_colors: Array.from(orders.marker.color)});
  }
  const step = fl.sliders[0].steps[active];
  return {active: active, frame: step.args[0][0], label: step.label, headline: fl.annotations[0].text,
          panels: panels};
})()""".replace("PAGE_ID", PAGE_ID)

_RAIL = """(() => {
  const r = document.querySelector('#PAGE_ID .slider-rail-touch-rect').getBoundingClientRect();
  return [r.left, r.top, r.width, r.height]; })()""".replace("PAGE_ID", PAGE_ID)


def _settled(browser: Browser) -> dict[str, Any]:
    """The page's state once the plot has stopped moving (two reads 300 ms apart agree)."""
    state = browser.evaluate(_STATE)
    for _ in range(20):
        browser.evaluate("new Promise(r => setTimeout(r, 300))")
        again = browser.evaluate(_STATE)
        if again == state:
            return state
        state = again
    raise AssertionError("the plot kept moving")


@pytest.fixture(scope="module")
def two_records(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two policies on the same short day of the default city."""
    world = build_world(load_scenario("default", SHORT))
    folder = tmp_path_factory.mktemp("page")
    paths = []
    for policy in ("insertion", "nearest"):
        sim = run_episode(Simulator(world, 11), make_heuristic(policy), 11)
        paths.append(save_record(record_episode(sim, policy, 11), folder / f"{policy}.replay.json.gz"))
    return paths


@pytest.fixture(scope="module")
def page(two_records: list[Path]) -> Path:
    return write_page([load_record(p) for p in two_records], two_records[0].parent / "day.html")


def test_the_page_is_self_contained(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert re.search(r"<script[^>]*\ssrc=", html) is None  # plotly.js is inline, nothing is fetched
    assert re.search(r"<link[^>]*href=[\"']https?:", html) is None
    assert "Plotly.newPlot" in html and "Plotly.addFrames" in html


def test_two_records_must_be_the_same_day(two_records: list[Path]) -> None:
    a, b = (load_record(p) for p in two_records)
    b["seed"] = 12
    with pytest.raises(ReplayError, match="not the same day"):
        build_figure([a, b])


def _expected_xy(record: dict[str, Any], vid: int, t_min: float) -> tuple[np.ndarray, np.ndarray | None]:
    """From the record's legs alone: the vehicle's node at ``t_min`` (between legs), or the road path it is
    on (driving)."""
    legs, m = record["legs"], record["map"]
    node_xy = np.asarray(m["node_xy_km"])
    key_xy = node_xy[m["key_nodes"]]
    mine = [k for k, v in enumerate(legs["vehicle"]) if v == vid and legs["depart_min"][k] <= t_min]
    if not mine:
        return key_xy[record["vehicles"]["home"][vid]], None
    k = mine[-1]
    if t_min >= legs["arrive_min"][k]:
        return key_xy[legs["dst"][k]], None
    return key_xy[legs["dst"][k]], node_xy[record["paths"][legs["path"][k]]]


def _on_path(p: np.ndarray, path: np.ndarray) -> bool:
    for a, b in itertools.pairwise(path):
        ab = b - a
        share = 0.0 if not ab.any() else float(np.clip(np.dot(p - a, ab) / np.dot(ab, ab), 0.0, 1.0))
        if np.linalg.norm(p - (a + share * ab)) < 1e-9:
            return True
    return False


def _rgb(css: str) -> np.ndarray:
    return np.array([int(c) for c in re.findall(r"\d+", css)[:3]])


@pytest.mark.skipif(
    chromium_path() is None,
    reason="chromium is not installed (apt-get install chromium; `make test` installs it when run as root)",
)
def test_slider_moves_the_vehicles_where_the_record_says(page: Path, two_records: list[Path]) -> None:
    records = [load_record(p) for p in two_records]
    with Browser(WIDTH, HEIGHT) as browser:
        browser.open(page.as_uri())
        browser.evaluate(_READY)
        left, top, width, height = browser.evaluate(_RAIL)
        browser.click(left + SLIDER_SHARE * width, top + height / 2)  # a user's click on the slider
        state = _settled(browser)
        shot = np.asarray(Image.open(io.BytesIO(browser.screenshot_png())).convert("RGB")).astype(int)

        assert state["active"] > 0, "the click did not move the slider"
        t_min = float(state["frame"])
        assert 0.25 < t_min / Timeline(records[0]).end_min < 0.55  # about where the rail was clicked
        assert state["label"] in state["headline"]  # the headline's clock follows the slider
        for record, panel in zip(records, state["panels"], strict=True):
            timeline = Timeline(record)
            shown = np.column_stack([panel["x"], panel["y"]])
            assert np.allclose(shown, timeline.vehicle_xy(t_min), atol=1e-9)
            for vid, xy in enumerate(shown):  # and from the legs themselves
                at, path = _expected_xy(record, vid, t_min)
                assert np.allclose(xy, at, atol=1e-9) if path is None else _on_path(xy, path), vid
            # The screenshot: each marker's centre pixel has its vehicle's colour (or that of a vehicle
            # drawn over it at the same place).
            px, py = np.array(panel["px"]), np.array(panel["py"])
            colours = [_rgb(c) for c in panel["colors"]]
            for vid in range(len(px)):
                pixel = shot[round(py[vid]), round(px[vid])]
                near = [w for w in range(len(px)) if abs(px[w] - px[vid]) < 8 and abs(py[w] - py[vid]) < 8]
                assert any(np.abs(pixel - colours[w]).max() <= 12 for w in near), (vid, pixel)
        moving = sum(
            _expected_xy(r, v, t_min)[1] is not None
            for r in records
            for v in range(len(r["vehicles"]["home"]))
        )
        assert moving > 0  # some vehicles are mid-leg at that minute, so interpolation was checked

        # Click a vehicle standing apart from the others, then a served order: their texts show.
        panel = state["panels"][0]
        px, py = np.array(panel["px"]), np.array(panel["py"])
        apart = [v for v in range(len(px)) if np.sort(np.hypot(px - px[v], py - py[v]))[1] > 20]
        assert apart, "no vehicle stands apart to click"
        browser.click(float(px[apart[0]]), float(py[apart[0]]))
        info = browser.evaluate(f"document.getElementById('{INFO_ID}').textContent")
        assert info.startswith(f"vehicle {apart[0]} ") and "plan:" in info, info
        panel = _settled(browser)["panels"][0]  # where the markers are now (the page may have reflowed)
        px, py = np.array(panel["px"]), np.array(panel["py"])
        served = [o for o, c in enumerate(panel["order_colors"]) if c in ("#2ca02c", "#9467bd")]
        ox = np.array(panel["orders_px"], dtype=float)  # not arrived: no position (nan)
        oy = np.array(panel["orders_py"], dtype=float)
        alone = [o for o in served if np.sort(np.hypot(ox - ox[o], oy - oy[o]))[1] > 12]
        alone = [o for o in alone if np.hypot(px - ox[o], py - oy[o]).min() > 15]
        assert alone, "no served order stands apart to click"
        browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 1, "y": 1})  # the vehicle's
        # hover box goes (not to cover the order), and two clicks within 300 ms would be a double click
        # (plotly resets the axes on one)
        browser.evaluate("new Promise(r => setTimeout(r, 600))")
        browser.click(float(ox[alone[0]]), float(oy[alone[0]]))
        info = browser.evaluate(f"document.getElementById('{INFO_ID}').textContent")
        assert info.startswith(f"order {alone[0]} ") and "promised" in info and "served" in info, info
        assert browser.console_errors == []


def test_a_real_map_is_drawn_in_longitude_and_latitude(tmp_path: Path) -> None:
    """West Oakland (OSM): the page's axes are longitude/latitude, the vehicles where the record puts them
    once projected back, and one km spans the same pixels on both axes."""
    world = build_world(load_scenario("west_oakland", SHORT))
    sim = run_episode(Simulator(world, 2), make_heuristic("insertion"), 2)
    record = load_record(save_record(record_episode(sim, "insertion", 2), tmp_path / "wo.replay.json.gz"))
    fig = build_figure([record], step_min=10.0)
    assert fig.layout.xaxis.title.text == "longitude" and fig.layout.yaxis.title.text == "latitude"
    projection = record["map"]["lonlat_projection"]
    frame = fig.frames[len(fig.frames) // 2]
    lon, lat = np.array(frame.data[1].x), np.array(frame.data[1].y)
    assert np.all((lon > -122.4) & (lon < -122.2)) and np.all((lat > 37.7) & (lat < 37.9))  # Oakland
    km = Timeline(record).vehicle_xy(float(frame.name))
    assert np.allclose((lon - projection["lon0"]) * projection["km_per_deg_lon"], km[:, 0])
    assert np.allclose((lat - projection["lat0"]) * projection["km_per_deg_lat"], km[:, 1])
    ratio = projection["km_per_deg_lat"] / projection["km_per_deg_lon"]
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == pytest.approx(ratio)
