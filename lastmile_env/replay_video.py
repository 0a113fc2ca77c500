"""A recorded day as an animation (GIF or MP4): the ``env.render()`` frame over time.

Each frame is drawn by :class:`~lastmile_env.render.MapCanvas` (the renderer of ``env.render()``) from a
:class:`~lastmile_env.replay.Timeline`: vehicles move along the roads of their legs, orders are coloured
by status, and the title shows the clock, the running on-time rate and the cost committed so far. The
frames go through matplotlib's animation writers: Pillow for a GIF (no ffmpeg needed), ffmpeg for an MP4.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import animation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lastmile_env.render import Frame, MapCanvas
from lastmile_env.replay import ReplayError, Timeline

VIDEO_SUFFIXES = (".gif", ".mp4")
_DPI = 100


def frame_times(timeline: Timeline, step_min: float) -> list[float]:
    """The minutes drawn: every ``step_min`` from the start of the shift to the end of the day."""
    if not step_min > 0:
        raise ReplayError(f"the frame step must be a positive number of minutes, got {step_min}")
    n = math.floor(timeline.end_min / step_min + 1e-9) + 1
    times = [i * step_min for i in range(n)]
    if times[-1] < timeline.end_min:
        times.append(timeline.end_min)
    return times


def replay_canvas(timeline: Timeline, size_px: tuple[int, int]) -> MapCanvas:
    """The map of a recorded day (its roads and centers) ready to draw its frames."""
    xy = timeline.node_xy
    roads = [xy[[i, j]] for i, j in timeline.record["map"]["roads"]]
    return MapCanvas(roads, timeline.key_xy[: timeline.n_centers], timeline.modes, size_px)


def replay_frame(timeline: Timeline, t_min: float, label: str = "") -> Frame:
    """The frame of minute ``t_min``: routes ahead, orders by state, vehicles, clock and running totals."""
    states = timeline.order_states(t_min)
    groups: dict[str, list[int]] = {}
    for o, state in enumerate(states):
        if state is not None:  # a failed order (brought back) is drawn as lost, like a rejected one
            groups.setdefault("rejected" if state == "failed" else state, []).append(o)
    totals = timeline.totals(t_min)
    rate = totals["on_time_rate"]
    rate_text = "  -  " if math.isnan(rate) else f"{100 * rate:5.1f}%"
    delivered = totals["on_time"] + totals["late"]
    title = (
        f"{label + '   ' if label else ''}{timeline.clock(t_min)}   orders {totals['arrived']:.0f}   "
        f"delivered {delivered:.0f}   on time {rate_text}   cost {totals['cost']:,.1f}"
    )
    return Frame(
        routes=[timeline.route_xy(v, t_min) for v in range(timeline.n_vehicles)],
        orders={key: timeline.address_xy[ids] for key, ids in groups.items()},
        vehicles_xy=timeline.vehicle_xy(t_min),
        title=title,
    )


def write_animation(
    record: dict[str, Any],
    out: str | Path,
    step_min: float = 5.0,
    fps: int = 10,
    size_px: tuple[int, int] = (640, 640),
) -> Path:
    """Write the day as ``out`` (``.gif`` with Pillow, ``.mp4`` with ffmpeg), one frame per ``step_min``.

    ReplayError when the suffix is neither or ffmpeg is missing for an MP4 (checked before drawing)."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ReplayError(f"cannot write an animation as {path.name!r}: use .gif or .mp4")
    if not fps > 0:
        raise ReplayError(f"fps must be positive, got {fps}")
    writer: animation.AbstractMovieWriter
    if suffix == ".mp4":
        if not animation.writers.is_available("ffmpeg"):
            raise ReplayError(
                "ffmpeg not found: install it (apt-get install ffmpeg) to write .mp4, or use .gif"
            )
        writer = animation.FFMpegWriter(fps=fps)
    else:
        writer = animation.PillowWriter(fps=fps)
    timeline = Timeline(record)
    times = frame_times(timeline, step_min)
    label = str(record.get("policy") or "")
    canvas = replay_canvas(timeline, size_px)
    try:
        first = canvas.draw(replay_frame(timeline, times[0], label))
        height, width = first.shape[:2]
        # The writers grab a figure: one that shows each drawn frame pixel for pixel.
        fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        FigureCanvasAgg(fig)
        image = fig.figimage(first, resize=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        with writer.saving(fig, str(path), _DPI):
            writer.grab_frame()
            for t in times[1:]:
                image.set_data(canvas.draw(replay_frame(timeline, t, label)))
                writer.grab_frame()
    finally:
        canvas.close()
    return path


def frame_png(
    record: dict[str, Any], t_min: float | None, out: str | Path, size_px: tuple[int, int] = (640, 640)
) -> Path:
    """One frame of the day (minute ``t_min``; None: the middle of the day) as a PNG, e.g. for a README."""
    from PIL import Image

    timeline = Timeline(record)
    if t_min is None:
        t_min = timeline.end_min / 2.0
    if not 0.0 <= t_min <= timeline.end_min:
        raise ReplayError(f"--at {t_min:g} is outside the day (0 to {timeline.end_min:.0f} min)")
    canvas = replay_canvas(timeline, size_px)
    try:
        pixels = canvas.draw(replay_frame(timeline, t_min, str(record.get("policy") or "")))
    finally:
        canvas.close()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)
    return path
