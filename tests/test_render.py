"""The rgb_array renderer: frame shape and content, determinism, no leaks from one frame into the next."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("lastmile_env.graph")

import lastmile_env  # noqa: F401  (registers the env id)
from lastmile_env.config import load_scenario
from lastmile_env.render import Renderer, _clock
from lastmile_env.sim import Simulator, world_for

PENDING_RED = np.array([214, 39, 40])


def _n_colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def _has_colour(img: np.ndarray, rgb: np.ndarray, tol: int = 6) -> bool:
    return bool((np.abs(img.astype(int) - rgb).max(axis=-1) <= tol).any())


def _play(sim: Simulator, n_steps: int) -> None:
    """Give each pending order to the first feasible vehicle (reject when none) for ``n_steps`` decisions."""
    for _ in range(n_steps):
        feasible = [v for v, ok in enumerate(sim.feasible_vehicles()) if ok]
        if feasible:
            sim.assign(feasible[0])
        else:
            sim.reject()
        if sim.advance() is None:
            return


def test_env_render_rgb_array() -> None:
    env = gym.make("LastMile-Dispatch-v0", scenario="small", render_mode="rgb_array")
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(6):
        mask = env.unwrapped.action_masks()  # type: ignore[attr-defined]
        _, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated or truncated:
            break
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (800, 800, 3)
    assert frame.dtype == np.uint8
    assert _n_colours(frame) >= 8, "the frame looks blank"
    assert (frame == 0).all(axis=-1).any(), "no black (centers) drawn"
    again = env.render()
    assert isinstance(again, np.ndarray)
    np.testing.assert_array_equal(frame, again)
    env.close()
    env.close()  # closing twice is fine


def test_renderer_size_pending_order_and_close() -> None:
    world = world_for(load_scenario("small"))
    sim = Simulator(world, seed=0)
    assert sim.advance() is not None  # the first order is pending
    renderer = Renderer(world, size_px=(320, 240))
    frame = renderer.rgb_array(sim)
    assert frame.shape == (240, 320, 3)
    assert frame.dtype == np.uint8
    assert _has_colour(frame, PENDING_RED), "the pending order is not drawn"
    renderer.close()
    renderer.close()
    with pytest.raises(RuntimeError, match="closed"):
        renderer.rgb_array(sim)


def test_frames_do_not_leak_between_states() -> None:
    """The cached background is restored each frame: drawing another state in between changes nothing."""
    world = world_for(load_scenario("small"))
    busy = Simulator(world, seed=1)
    busy.advance()
    _play(busy, 8)
    fresh = Simulator(world, seed=2)
    fresh.advance()
    renderer = Renderer(world, size_px=(400, 400))
    try:
        first = renderer.rgb_array(busy)
        other = renderer.rgb_array(fresh)
        second = renderer.rgb_array(busy)
    finally:
        renderer.close()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    ("start_hour", "now_min", "text"), [(8, 0.0, "08:00"), (8, 79.6, "09:20"), (23.5, 45.0, "00:15")]
)
def test_clock(start_hour: float, now_min: float, text: str) -> None:
    assert _clock(start_hour, now_min) == text


def test_each_mode_is_drawn_on_its_own_paths() -> None:
    """A mixed fleet: vans and bikes along their own fastest road paths, drones in straight dashed lines,
    one legend entry per mode."""
    from tests.test_vehicle_modes import MIXED

    world = world_for(load_scenario("small", MIXED))
    modes = [v.mode_name for v in world.vehicles]
    bike = world.vehicles[modes.index("cargo_bike")]
    assert world.mode_paths[bike.mode] is not world.matrix  # the bikes' own road graph
    renderer = Renderer(world)
    sim = Simulator(world, 4)
    sim.advance()
    for mode in ("drone", "cargo_bike", "van"):  # each takes an order; its plan is drawn at once
        v = sim.vehicles[modes.index(mode)]
        sim.assign(v.id)
        keys = [v.node, *(s.loc for s in ([v.current] if v.current else []) + v.route), v.home]
        keys = [k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]
        route = renderer._route_xy(v)
        if mode == "drone":  # straight from stop to stop
            assert np.allclose(route, np.repeat(world.xy_km[keys], [1] + [2] * (len(keys) - 2) + [1], axis=0))
        else:
            paths = world.mode_paths[v.mode]
            assert paths is not None
            assert world.path_nodes(keys[0], keys[1], v.mode) == paths.path(keys[0], keys[1])
            assert np.allclose(route[0], world.xy_km[keys[0]]) and np.allclose(route[-1], world.xy_km[v.home])
        assert len(keys) >= 2 and sim.advance() is not None
    img = renderer.rgb_array(sim)
    assert img.shape == (800, 800, 3) and _n_colours(img) > 10
    texts = [t.get_text() for t in renderer._fig.legends[0].get_texts()]  # type: ignore[union-attr]
    assert {"van", "cargo bike", "drone (flies straight)"} <= set(texts) and "vehicle" not in texts
    renderer.close()
